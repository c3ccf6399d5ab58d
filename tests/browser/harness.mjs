// Shared pieces of the browser tests: the real vigil server as a child process, a free
// loopback port, and headless Chromium's flags (STACK.md pitfalls 8 and 9).
//
// Env: VIGIL_BIN  server binary (default: <repo>/target/release/vigil)
//      CHROMIUM   browser binary (default: /usr/bin/chromium)

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const BIN = process.env.VIGIL_BIN ? path.resolve(process.env.VIGIL_BIN) : path.join(ROOT, 'target', 'release', 'vigil');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts');

// Headless Chromium as root; ICE on loopback with plain addresses (no mDNS names).
// playwright-core's launch() gives Chromium a fresh temporary --user-data-dir.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Polls `fn` every 200 ms until it returns a truthy value; throws `what` after `ms`.
export async function waitFor(what, ms, fn) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

// One run of `vigil serve` (extra `args`, e.g. ['--config', file]). Output is kept
// (bounded) to print on failure.
export class VigilServer {
  constructor(port, dataDir, label, args = []) {
    this.port = port;
    this.dataDir = dataDir;
    this.label = label;
    this.args = args;
    this.log = '';
    this.proc = null;
    this.exit = null;
  }

  get base() { return `http://127.0.0.1:${this.port}`; }

  start() {
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' };
    delete env.VIGIL_CONFIG;
    // WebRTC on one UDP port (the default), numbered like the HTTP port so that servers
    // running side by side do not share it; ICE-TCP off (its port would be another number to
    // find, and Chromium here has UDP).
    const argv = ['serve', '--listen', `127.0.0.1:${this.port}`, '--webrtc-udp-ports', String(this.port),
      '--webrtc-tcp-port', '0',
      '--data-dir', this.dataDir, ...this.args];
    this.proc = spawn(BIN, argv, {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // own process group, so leftovers (capture children) can be cleaned up
    });
    const keep = (chunk) => {
      this.log += chunk.toString();
      if (this.log.length > 400_000) this.log = this.log.slice(-300_000);
    };
    this.proc.stdout.on('data', keep);
    this.proc.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => { this.exit = { code, signal }; resolve(this.exit); });
      this.proc.on('error', (err) => { this.exit = { error: err.message }; keep(`spawn error: ${err.message}\n`); resolve(this.exit); });
    });
  }

  async waitHealthy(timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (this.exit) throw new Error(`${this.label} exited before it was healthy: ${JSON.stringify(this.exit)}`);
      try {
        const res = await fetch(`${this.base}/livez`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (e) {
        last = e.cause ? e.cause.code || e.cause.message : e.message;
      }
      await sleep(200);
    }
    throw new Error(`${this.label}: GET /livez not 200 within ${timeoutMs} ms (last: ${last})`);
  }

  // SIGTERM, then SIGKILL after 5 s; then make sure nothing of its process group is left.
  async stop() {
    if (!this.proc) return;
    const pgid = this.proc.pid;
    if (!this.exit) {
      try { process.kill(pgid, 'SIGTERM'); } catch (_) { /* gone */ }
      const done = await Promise.race([this.exited, sleep(5000).then(() => null)]);
      if (!done) {
        this.log += '\n[test] server did not exit within 5 s of SIGTERM: SIGKILL\n';
        try { process.kill(pgid, 'SIGKILL'); } catch (_) { /* gone */ }
        await this.exited;
      }
    }
    try { process.kill(-pgid, 'SIGKILL'); } catch (_) { /* none left */ }
  }
}

// A server with one WHIP camera `camera` (publish token `token`, 2 s segments) in a fresh
// temporary directory, and a headless Chromium with a fake camera and microphone. For the
// tests that publish from the browser. Undo with closeWhipSetup().
export async function whipSetup(prefix, camera, token) {
  if (!fs.existsSync(BIN)) throw new Error(`server binary ${BIN} not found: run \`cargo build --release\` or set VIGIL_BIN`);
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run deploy/install-deps.sh --test`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const config = path.join(dir, 'vigil.toml');
  fs.writeFileSync(config, `[server]\nmin_free_bytes = 0\n\n[[cameras]]\nname = "${camera}"\nsource = "whip"\npublish_token = "${token}"\nsegment_seconds = 2\n`);
  const server = new VigilServer(await freePort(), path.join(dir, 'data'), 'server', ['--config', config]);
  server.start();
  await server.waitHealthy();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
    headless: true,
  });
  return { dir, server, browser };
}

// Closes the browser, stops the server, removes the directory.
export async function closeWhipSetup(setup) {
  if (!setup) return;
  await setup.browser.close().catch(() => {});
  await setup.server.stop();
  fs.rmSync(setup.dir, { recursive: true, force: true });
}

// An ICE restart the way a browser WHIP/WHEP client does it (RFC 9725 §4.4.2), in `page`:
// on the peer connection kept as window[session] = {pc, answer, location, etag}, restartIce(),
// PATCH the new credentials as an sdpfrag (If-Match, and the bearer `token` if given), then
// apply the server's new credentials and candidates to the answer. Returns what the PATCH
// said ({status, body} when it was not 200) and the ufrags on both sides.
export function restartIceInPage(page, session, token) {
  return page.evaluate(async ({ session, token }) => {
    const { pc, answer, location, etag } = window[session];
    pc.restartIce();
    await pc.setLocalDescription(await pc.createOffer());
    const sdp = pc.localDescription.sdp;
    const attr = (text, name) => (new RegExp(`^a=${name}:(.*)$`, 'm').exec(text) || [])[1]?.trim();
    const mid = attr(sdp, 'mid');
    const frag = `a=ice-ufrag:${attr(sdp, 'ice-ufrag')}\r\na=ice-pwd:${attr(sdp, 'ice-pwd')}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:${mid}\r\n`;
    const headers = { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': etag };
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(location, { method: 'PATCH', headers, body: frag });
    const body = await r.text();
    if (r.status !== 200) return { status: r.status, body };
    const ufrag = attr(body, 'ice-ufrag');
    const pwd = attr(body, 'ice-pwd');
    const candidates = [...body.matchAll(/^a=(candidate:.*)$/gm)].map((m) => m[1].trim());
    const updated = answer
      .replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${ufrag}`)
      .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${pwd}`)
      .replace(/^a=candidate:.*\r?\n/gm, '')
      .replace(/^a=end-of-candidates\r?\n/gm, '');
    await pc.setRemoteDescription({ type: 'answer', sdp: updated });
    for (const candidate of candidates) await pc.addIceCandidate({ candidate, sdpMid: mid });
    return {
      status: r.status,
      etag: r.headers.get('ETag'),
      contentType: r.headers.get('Content-Type'),
      frag,
      localUfrag: attr(sdp, 'ice-ufrag'),
      serverUfrag: ufrag,
      oldServerUfrag: attr(answer, 'ice-ufrag'),
      candidates: candidates.length,
    };
  }, { session, token });
}
