# vigil: two commands.
#   make run    install what is missing, build (release), serve the test camera on http://127.0.0.1:8080
#   make test   install build + test packages, build once, run every test
# Everything builds once, in release mode, into one target/ shared by the workspace.

CARGO ?= cargo
ARGS ?=
BIN := target/release/vigil

.PHONY: run build deps test-deps test test-rust test-browser lint bench clean-data

deps:
	@deploy/install-deps.sh

test-deps:
	@deploy/install-deps.sh --test

build: deps
	$(CARGO) build --release --bin vigil

run: build
	$(BIN) serve $(ARGS)

test: test-deps
	$(CARGO) build --release --workspace --all-targets
	$(MAKE) test-rust test-browser

test-rust:
	$(CARGO) test --release --workspace

test-browser:
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	cd tests/browser && VIGIL_BIN=$(CURDIR)/$(BIN) node --test

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

bench: build
	$(CARGO) build --release -p vigil-bench
	@echo "start a server (make run), then: target/release/vigil-bench --help"
