#!/bin/sh
# Runs vigil's fuzz targets one after another, each for a while. Not part of CI: CI replays
# the kept corpora instead (tests/fuzz_corpus.rs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 600 s each, every target
#   FUZZ_ARGS="-use_value_profile=1" fuzz/run.sh ...   extra libFuzzer flags
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). One fuzzing process
# at a time (-fork=1: a crash is saved and fuzzing goes on, so every run gets its full time),
# no sanitizer (vigil forbids unsafe code; the bugs sought are panics, overflows, hangs and
# runaway memory), debug assertions and overflow checks on. New corpus entries land in
# fuzz/corpus/<target>/, crashes in fuzz/artifacts/<target>/. Afterwards, keep the corpus
# small with `cargo +nightly fuzz cmin -s none <target>` and commit it; a crash gets a fix, a
# unit test, and its file stays in artifacts/ for the regression test.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-sdp_offer whep_offer whip_offer sdpfrag annexb idx mp4 http_params}

cargo +nightly fuzz build -s none
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    case $t in
        sdp_offer | whep_offer | whip_offer | sdpfrag) extra="-max_len=16384 -dict=fuzz/sdp.dict" ;;
        mp4) extra="-max_len=8192" ;;
        *) extra="-max_len=4096" ;;
    esac
    echo "== $t: ${secs}s"
    # shellcheck disable=SC2086
    cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" -- \
        -fork=1 -ignore_crashes=1 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 $extra ${FUZZ_ARGS:-} ||
        echo "== $t stopped with a crash: see fuzz/artifacts/$t/"
done
