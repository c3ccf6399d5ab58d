#!/usr/bin/env bash
# Side by side on one machine: the same vigil binary with every WebRTC session on one UDP port
# (webrtc_udp_ports = "8189", the default) against one port per session from a range, N
# webrtc-rs viewers (vigil-bench), 30 s windows, alternating ROUNDS times. Default camera
# (1280x720 test pattern). Prints the figures BENCHMARKS.md quotes.
#   bench/one-port.sh [VIEWERS] [ROUNDS]
set -euo pipefail
viewers=${1:-50}
rounds=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vigil-one-port.XXXXXX)
cp "$root/target/release/vigil" "$work/vigil-srv" # a rebuild during the runs changes nothing
port=18090
for round in $(seq "$rounds"); do
  for mode in 8189 40000-40100; do
    rm -rf "$work/data"
    "$work/vigil-srv" serve --listen 127.0.0.1:$port --data-dir "$work/data" --webrtc-udp-ports "$mode" \
      >"$work/server.log" 2>&1 &
    pid=$!
    sleep 5
    echo "== round $round webrtc_udp_ports=$mode"
    "$root/target/release/vigil-bench" --url http://127.0.0.1:$port --viewers "$viewers" --duration 30s \
      --pid $pid --data-dir "$work/data" 2>/dev/null |
      grep -E 'server CPU|first keyframe|segment→receive|delivered|lost packets|server RSS'
    kill $pid
    wait $pid 2>/dev/null || true
  done
done
rm -rf "$work"
