#!/usr/bin/env bash
# What motion detection costs a camera vigil encodes: one server, two identical test-pattern
# cameras side by side, one with `motion = true`, one with `motion = false`; the CPU of each
# capture child (utime + stime from /proc) over WINDOW seconds, ROUNDS times. The difference
# is the analysis (tee branch, 5 pictures/s scaled to 160 px, the detector). Prints % of one
# core per camera; BENCHMARKS.md quotes the medians.
# SOURCE=test (default) is the test pattern, whose clocks are drawn after the tee (a copy of
# each frame, as the motion branch holds a reference); SOURCE=raw is the same picture from a
# `pipeline:` source without clocks, as from a V4L2 or Pi camera.
#   [SOURCE=raw] bench/motion-cost.sh [WIDTHxHEIGHT] [ROUNDS] [WINDOW]
set -euo pipefail
size=${1:-1280x720}
rounds=${2:-5}
window=${3:-20}
w=${size%x*}
h=${size#*x}
root=$(cd "$(dirname "$0")/.." && pwd)
case ${SOURCE:-test} in
  test) source=test ;;
  raw) source="pipeline:videotestsrc is-live=true pattern=smpte ! video/x-raw,format=YUY2,width=$w,height=$h,framerate=30/1" ;;
  *) echo "SOURCE: test or raw" >&2; exit 2 ;;
esac
work=$(mktemp -d /tmp/vigil-motion-cost.XXXXXX)
trap 'kill $pid 2>/dev/null && wait $pid 2>/dev/null; rm -rf "$work"' EXIT
cat >"$work/vigil.toml" <<TOML
[server]
listen = "127.0.0.1:18091"
data_dir = "$work/data"
[[cameras]]
name = "on"
source = "$source"
width = $w
height = $h
fps = 30
motion = true
[[cameras]]
name = "off"
source = "$source"
width = $w
height = $h
fps = 30
motion = false
TOML
"$root/target/release/vigil" serve --config "$work/vigil.toml" --webrtc-udp-ports "" >"$work/server.log" 2>&1 &
pid=$!
sleep 8
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
on=$(pgrep -f "capture --camera on " | head -1)
off=$(pgrep -f "capture --camera off " | head -1)
echo "${size} 30 fps, source ${SOURCE:-test}, ${window} s windows; % of one core per capture process"
for r in $(seq "$rounds"); do
  a0=$(ticks "$on"); b0=$(ticks "$off")
  sleep "$window"
  a1=$(ticks "$on"); b1=$(ticks "$off")
  awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v hz="$hz" -v t="$window" -v r="$r" \
    'BEGIN { on = 100 * a / hz / t; off = 100 * b / hz / t; printf "round %d: motion on %.1f %%, off %.1f %%, analysis %.1f %%\n", r, on, off, on - off }'
done
