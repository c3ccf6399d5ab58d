#!/usr/bin/env bash
# What motion detection costs a pass-through camera (H.264 recorded without re-encoding, as
# from an RTSP camera): one server, two `file:` cameras playing the same H.264 file side by
# side, one with `motion = true`, one with `motion = false`; the CPU of each capture child
# (utime + stime from /proc) over WINDOW seconds, ROUNDS times. The difference is the analysis.
#
# The file (made once with ffmpeg) is ffmpeg's moving test picture with sensor-like noise,
# x264 at a constant bitrate with filler (BITRATE kbit/s): the camera stays on `decode`
# (every frame decoded), the costly path. The `keyframes` path is not measured here (it
# needs a variable-bitrate stream with still periods; it decodes one frame per GOP).
# Prints % of one core per camera; BENCHMARKS.md quotes the medians.
#   bench/motion-decode-cost.sh [WIDTHxHEIGHT] [BITRATE] [ROUNDS] [WINDOW]
set -euo pipefail
size=${1:-1280x720}
kbps=${2:-2000}
rounds=${3:-5}
window=${4:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vigil-motion-decode.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null && wait $pid 2>/dev/null; rm -rf "$work"' EXIT
ffmpeg -v error -f lavfi -i "testsrc2=s=${size}:r=30:d=60,noise=alls=5:allf=t" \
  -pix_fmt yuv420p -c:v libx264 -preset veryfast -profile:v baseline -g 60 -bf 0 \
  -b:v "${kbps}k" -minrate "${kbps}k" -maxrate "${kbps}k" -bufsize "$((kbps / 2))k" -x264-params nal-hrd=cbr \
  -f mpegts "$work/scene.ts"
port=18093
cat >"$work/vigil.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
data_dir = "$work/data"
[[cameras]]
name = "on"
source = "file:$work/scene.ts"
motion = true
[[cameras]]
name = "off"
source = "file:$work/scene.ts"
motion = false
TOML
"$root/target/release/vigil" serve --config "$work/vigil.toml" --webrtc-udp-ports "" >"$work/server.log" 2>&1 &
pid=$!
path() { curl -s --noproxy '*' "http://127.0.0.1:$port/api/cameras" | python3 -c 'import json,sys; print({c["name"]: c.get("motion_path") for c in json.load(sys.stdin)}["on"])'; }
sleep 8
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
on=$(pgrep -f "capture --camera on " | head -1)
off=$(pgrep -f "capture --camera off " | head -1)
echo "${size} 30 fps H.264 at $kbps kbit/s CBR, ${window} s windows; % of one core per capture process; path: $(path)"
for r in $(seq "$rounds"); do
  a0=$(ticks "$on"); b0=$(ticks "$off")
  sleep "$window"
  a1=$(ticks "$on"); b1=$(ticks "$off")
  awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v hz="$hz" -v t="$window" -v r="$r" -v p="$(path)" \
    'BEGIN { on = 100 * a / hz / t; off = 100 * b / hz / t; printf "round %d: motion on %.1f %%, off %.1f %%, analysis %.1f %% (%s)\n", r, on, off, on - off, p }'
done
