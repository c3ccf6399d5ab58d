#!/usr/bin/env python3
"""Detection latency: motion on glass -> `activity_start` event on GET /api/events.

One server, one `pipeline:` camera playing a raw 320x180 10 fps file at its frame rate (a
still scene with noise; a square crosses from 8 s to 14 s; 20 s long). Each time the file
ends the capture restarts and plays it again: one run. Per run the truth is the capture time
of the file's first frame (the start of the run's first segment) + 8 s; the latency is the
wall-clock time the `activity_start` event arrived minus the truth. Prints each run and the
median and maximum (the p95 of a few runs).

    bench/motion-latency.py [RUNS]
"""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

W, H, FPS, FRAMES, MOTION = 320, 180, 10, 200, range(80, 140)
PORT = 18095
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_scene(path):
    rnd = random.Random(7)
    base = bytes(70 + (x * 60 // W) + (20 if (x // 40 + y // 45) % 2 == 0 else 0) for y in range(H) for x in range(W))
    chroma = bytes([128]) * (W * H // 2)
    with open(path, "wb") as f:
        for i in range(FRAMES):
            pic = bytearray(base)
            for k in range(0, W * H, 7):  # noise on every 7th pixel, +-4 levels
                pic[k] = max(0, min(255, pic[k] + rnd.randint(-4, 4)))
            if i in MOTION:
                x0 = (i - MOTION.start) * (W - 40) // len(MOTION)
                for y in range(70, 110):
                    pic[y * W + x0 : y * W + x0 + 40] = bytes([225]) * 40
            f.write(pic)
            f.write(chroma)


def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as r:
        return json.load(r)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    work = tempfile.mkdtemp(prefix="vigil-motion-latency.")
    scene = os.path.join(work, "scene.yuv")
    write_scene(scene)
    with open(os.path.join(work, "vigil.toml"), "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{PORT}"
data_dir = "{work}/data"
[[cameras]]
name = "yard"
source = "pipeline:filesrc location={scene} ! rawvideoparse width={W} height={H} format=i420 framerate={FPS}/1 ! identity sync=true"
width = {W}
height = {H}
fps = {FPS}
bitrate_kbps = 400
segment_seconds = 60
""")
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        [f"{ROOT}/target/release/vigil", "serve", "--config", f"{work}/vigil.toml", "--webrtc-udp-ports", ""],
        stdout=log, stderr=log)
    arrivals = []
    try:
        for _ in range(50):
            try:
                get("/api/cameras")
                break
            except OSError:
                time.sleep(0.2)

        def listen():
            s = socket.create_connection(("127.0.0.1", PORT))
            s.sendall(b"GET /api/events?types=activity_start&camera=yard HTTP/1.0\r\nHost: x\r\n\r\n")
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                now_ms = time.time() * 1000
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    for line in event.decode(errors="replace").splitlines():
                        if line.startswith("data: "):
                            arrivals.append((now_ms, json.loads(line[6:])["start_ms"]))

        threading.Thread(target=listen, daemon=True).start()
        deadline = time.time() + runs * (FRAMES / FPS + 4) + 20
        while len(arrivals) < runs and time.time() < deadline:
            time.sleep(1)
        segs = get("/api/cameras/yard/recordings?segments=true&start=0")["segments"]
        starts = sorted(s["start_ms"] for s in segs)
        lat = []
        for arrived_ms, start_ms in arrivals[:runs]:
            run_start = max((s for s in starts if s <= start_ms), default=None)
            if run_start is None:
                continue
            truth = run_start + MOTION.start * 1000 // FPS
            lat.append(arrived_ms - truth)
            print(f"run {len(lat)}: event {arrived_ms - truth:.0f} ms after the motion "
                  f"(range start {start_ms - truth:+d} ms)")
        lat.sort()
        if lat:
            print(f"{len(lat)} runs: median {lat[len(lat) // 2]:.0f} ms, max {lat[-1]:.0f} ms")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
