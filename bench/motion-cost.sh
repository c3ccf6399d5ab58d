#!/usr/bin/env bash
# What motion detection costs a camera vigil encodes: one server, two identical test-pattern
# cameras side by side, one with `motion = true`, one with `motion = false`; the CPU of each
# capture child (utime + stime from /proc) over WINDOW seconds, ROUNDS times. The difference
# is the analysis (tee branch, 5 pictures/s scaled to 160 px, the detector). Prints % of one
# core per camera; BENCHMARKS.md quotes the medians.
#   bench/motion-cost.sh [WIDTHxHEIGHT] [ROUNDS] [WINDOW]
set -euo pipefail
size=${1:-1280x720}
rounds=${2:-5}
window=${3:-20}
w=${size%x*}
h=${size#*x}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vigil-motion-cost.XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/vigil.toml" <<TOML
[server]
listen = "127.0.0.1:18091"
data_dir = "$work/data"
[[cameras]]
name = "on"
width = $w
height = $h
fps = 30
motion = true
[[cameras]]
name = "off"
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
echo "${size} 30 fps, ${window} s windows; % of one core per capture process"
for r in $(seq "$rounds"); do
  a0=$(ticks "$on"); b0=$(ticks "$off")
  sleep "$window"
  a1=$(ticks "$on"); b1=$(ticks "$off")
  awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v hz="$hz" -v t="$window" -v r="$r" \
    'BEGIN { on = 100 * a / hz / t; off = 100 * b / hz / t; printf "round %d: motion on %.1f %%, off %.1f %%, analysis %.1f %%\n", r, on, off, on - off }'
done
