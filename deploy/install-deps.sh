#!/usr/bin/env bash
# Installs the system packages vigil needs, and only those that are missing.
#   deploy/install-deps.sh          build + run (GStreamer, pkg-config, CA certificates)
#   deploy/install-deps.sh --test   also what the tests need (webrtcbin dev files, libnice,
#                                   pebble, ffmpeg/ffprobe, chromium, node/npm for playwright-core,
#                                   PostgreSQL, coturn as a TURN server)
# Idempotent: a second run with everything present does nothing and needs no network.
set -euo pipefail

RUN_PKGS=(
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  gstreamer1.0-x fonts-dejavu-core
  pkg-config ca-certificates build-essential
)
TEST_PKGS=(
  libgstreamer-plugins-bad1.0-dev gstreamer1.0-nice
  pebble ffmpeg chromium openssl nodejs npm postgresql coturn
)

want=("${RUN_PKGS[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${TEST_PKGS[@]}")
fi

missing=()
for p in "${want[@]}"; do
  # nodejs/npm may come from outside Debian (e.g. a preinstalled node): accept the command.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
