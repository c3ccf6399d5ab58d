// End-to-end test of the live page in a real headless Chromium.
//
// Starts the real vigil server (default config: one 1280x720 30 fps test-pattern
// camera named `test`) on a free loopback port with a fresh data dir, opens `/`
// in Chromium (driven by playwright-core, system /usr/bin/chromium), and checks
// what a user sees: video decoding at 1280x720, a glass-to-glass latency shown,
// and the page recovering on its own after the server is restarted.
//
// Run:   cd tests/browser && npm ci && node --test
// Env:   VIGIL_BIN  server binary (default: <repo>/target/release/vigil)
//        CHROMIUM   browser binary (default: /usr/bin/chromium)
//        VIGIL_WEB_FROM_DISK=1  serve /, /live.js, /style.css from web/ instead of the
//                   copies embedded in the binary (to work on the page without a rebuild)
// Leaves tests/artifacts/live.png, live-reconnected.png and, on failure,
// live-server.log (the server's output) behind.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const BIN = process.env.VIGIL_BIN ? path.resolve(process.env.VIGIL_BIN) : path.join(ROOT, 'target', 'release', 'vigil');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts');
const CAMERA = 'test';

// STACK.md pitfall 8 (headless Chromium as root) and 9 (keep ICE on loopback:
// let Chromium gather 127.0.0.1 candidates and send plain addresses instead of
// multicast-DNS names, so no mDNS traffic goes out on a real interface).
// playwright-core's launch() always gives Chromium a fresh temporary
// --user-data-dir and deletes it on close.
const CHROMIUM_ARGS = [
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
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

// One run of `vigil serve`. Output is kept (bounded) to print on failure.
class VigilServer {
  constructor(port, dataDir, label) {
    this.port = port;
    this.dataDir = dataDir;
    this.label = label;
    this.log = '';
    this.proc = null;
    this.exit = null;
  }

  get base() { return `http://127.0.0.1:${this.port}`; }

  start() {
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' };
    delete env.VIGIL_CONFIG; // the default config: one test-pattern camera `test`
    this.proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir], {
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
        const res = await fetch(`${this.base}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (e) {
        last = e.cause ? e.cause.code || e.cause.message : e.message;
      }
      await sleep(200);
    }
    throw new Error(`${this.label}: GET /healthz not 200 within ${timeoutMs} ms (last: ${last})`);
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
    // Capture children the server started live in its process group.
    try { process.kill(-pgid, 'SIGKILL'); } catch (_) { /* none left */ }
  }
}

let dataDir;
let browser;
let page;
let servers = [];
let port;
const pageLog = [];

function dumpDiagnostics(err) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const text = servers.map((s) => `===== ${s.label} (port ${s.port}, exit ${JSON.stringify(s.exit)}) =====\n${s.log}`).join('\n') +
    `\n===== browser console =====\n${pageLog.join('\n')}\n`;
  const file = path.join(ARTIFACTS, 'live-server.log');
  fs.writeFileSync(file, text);
  console.error(`\n${err && err.stack ? err.stack : err}\n--- server output (also in ${file}) ---\n${text.slice(-20_000)}`);
}

async function withDiagnostics(fn) {
  try {
    await fn();
  } catch (err) {
    dumpDiagnostics(err);
    throw err;
  }
}

async function newServer(label) {
  const s = new VigilServer(port, dataDir, label);
  servers.push(s);
  s.start();
  await s.waitHealthy(30_000);
  return s;
}

const stats = () => page.evaluate((cam) => (window.vigilStats && window.vigilStats[cam]) || null, CAMERA);
const videoInfo = () => page.evaluate((cam) => {
  const v = document.querySelector(`[data-camera="${cam}"] video`);
  if (!v) return null;
  const q = v.getVideoPlaybackQuality();
  return { w: v.videoWidth, h: v.videoHeight, frames: q.totalVideoFrames, readyState: v.readyState, paused: v.paused };
}, CAMERA);

before(async () => {
  assert.ok(fs.existsSync(BIN), `server binary ${BIN} not found: run \`cargo build --release\` or set VIGIL_BIN`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: run deploy/install-deps.sh --test`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.rmSync(path.join(ARTIFACTS, 'live-server.log'), { force: true });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-browser-test-'));
  port = await freePort();
  await withDiagnostics(async () => {
    await newServer('server #1');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('console', (m) => pageLog.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`[pageerror] ${e.message}`));
    if (process.env.VIGIL_WEB_FROM_DISK) {
      const assets = { '/': ['index.html', 'text/html'], '/live.js': ['live.js', 'text/javascript'], '/style.css': ['style.css', 'text/css'] };
      await page.route((u) => new URL(u).pathname in assets, (route) => {
        const [file, type] = assets[new URL(route.request().url()).pathname];
        route.fulfill({ status: 200, contentType: type, body: fs.readFileSync(path.join(ROOT, 'web', file)) });
      });
    }
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  for (const s of servers) await s.stop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

test('live page plays the test camera over WHEP with latency shown', { timeout: 120_000 }, async () => {
  await withDiagnostics(async () => {
    const base = servers[0].base;
    const res = await page.goto(`${base}/`);
    assert.equal(res.status(), 200, 'GET / status');

    // The binary embeds web/ at build time: say so if it serves an older page.
    for (const [url, file] of [['/', 'index.html'], ['/live.js', 'live.js'], ['/style.css', 'style.css']]) {
      const served = await (await fetch(base + url)).text();
      const onDisk = fs.readFileSync(path.join(ROOT, 'web', file), 'utf8');
      if (served !== onDisk && !process.env.VIGIL_WEB_FROM_DISK) console.error(`note: ${url} served by ${BIN} differs from web/${file}: rebuild the server to test the current page`);
    }

    // A user sees the camera's tile with moving video.
    await page.waitForSelector(`[data-camera="${CAMERA}"] video`, { timeout: 15_000 });
    await page.waitForFunction((cam) => {
      const v = document.querySelector(`[data-camera="${cam}"] video`);
      return v && v.getVideoPlaybackQuality().totalVideoFrames > 30;
    }, CAMERA, { timeout: 30_000, polling: 250 });

    const v = await videoInfo();
    assert.equal(v.w, 1280, 'videoWidth');
    assert.equal(v.h, 720, 'videoHeight');
    assert.equal(v.paused, false, 'video playing');

    // Glass-to-glass latency, as shown in the tile (and in window.vigilStats).
    await page.waitForFunction((cam) => {
      const dd = document.querySelector(`[data-camera="${cam}"] .v-latency`);
      return dd && /^\d+ ms$/.test(dd.textContent.trim());
    }, CAMERA, { timeout: 15_000, polling: 250 });
    // The first second includes the GOP a new viewer is started with (older frames
    // sent at once); let the shown value settle before logging it.
    await sleep(2000);
    const shown = await page.$eval(`[data-camera="${CAMERA}"] .v-latency`, (dd) => dd.textContent.trim());
    const latencyMs = Number(shown.replace(' ms', ''));
    const s = await stats();
    console.log(`latency shown: ${shown}; vigilStats.${CAMERA} = ${JSON.stringify(s)}`);
    assert.ok(latencyMs > 0 && latencyMs < 5000, `latency shown ${shown} not within (0, 5000) ms`);
    assert.ok(s && s.latencyMs > 0 && s.latencyMs < 5000, `vigilStats latencyMs ${s && s.latencyMs}`);

    // What the tile says about itself.
    assert.equal(s.connected, true, 'vigilStats connected');
    assert.equal(s.state, 'running', 'camera state');
    assert.ok(s.framesDecoded > 0, `vigilStats framesDecoded ${s.framesDecoded}`);
    const status = await page.$eval(`[data-camera="${CAMERA}"] .status-text`, (e) => e.textContent.trim());
    assert.equal(status, 'live', 'status line');
    const res720 = await page.$eval(`[data-camera="${CAMERA}"] .v-res`, (e) => e.textContent.trim());
    assert.equal(res720, '1280×720', 'resolution shown');
    assert.ok(await page.$('a[href="/history"]'), 'link to /history');

    await page.screenshot({ path: path.join(ARTIFACTS, 'live.png') });
  });
});

test('live page recovers by itself after the server restarts', { timeout: 120_000 }, async () => {
  await withDiagnostics(async () => {
    await page.evaluate(() => { window.__vigilNoReload = true; });
    const before = await stats();
    assert.ok(before && before.connected, 'page live before the restart');

    // Kill the server; start a new process on the same port and data dir.
    await servers[servers.length - 1].stop();
    const stoppedAt = Date.now();
    const seen = new Set();
    const restarted = await newServer('server #2');
    const healthyAt = Date.now();
    console.log(`server restarted: healthy ${healthyAt - stoppedAt} ms after the old one exited`);

    // The page must notice and come back without a reload: a new session, and
    // decoded frames rising again, within 15 s.
    let after = null;
    let framesAtReconnect = null;
    const deadline = healthyAt + 15_000;
    while (Date.now() < deadline) {
      after = await stats();
      if (after) seen.add(after.status);
      if (after && after.sessions > before.sessions && after.connected) {
        if (framesAtReconnect === null) framesAtReconnect = after.framesDecoded;
        if (after.framesDecoded > framesAtReconnect + 30) break;
      }
      await sleep(250);
    }
    const elapsed = Date.now() - healthyAt;
    console.log(`statuses seen: ${[...seen].join(', ')}; after ${elapsed} ms: ${JSON.stringify(after)}`);
    assert.equal(await page.evaluate(() => window.__vigilNoReload === true), true, 'page was not reloaded');
    assert.ok(after.sessions > before.sessions, `no new WHEP session within 15 s (sessions ${before.sessions} -> ${after.sessions}, status "${after.status}: ${after.reason}")`);
    assert.ok(framesAtReconnect !== null && after.framesDecoded > framesAtReconnect + 30,
      `decoded frames did not rise again within 15 s (${before.framesDecoded} before, ${framesAtReconnect} at reconnect, ${after.framesDecoded} now)`);
    assert.ok(seen.has('reconnecting') || seen.has('waiting'), `status line never showed the outage (saw: ${[...seen].join(', ')})`);

    // The video element itself is playing again.
    const v1 = await videoInfo();
    await sleep(1000);
    const v2 = await videoInfo();
    assert.ok(v2.frames > v1.frames, `video element frames not rising (${v1.frames} -> ${v2.frames})`);
    assert.equal(v2.w, 1280, 'videoWidth after reconnect');
    assert.equal(v2.h, 720, 'videoHeight after reconnect');
    assert.ok(restarted.exit === null, 'new server still running');

    await page.screenshot({ path: path.join(ARTIFACTS, 'live-reconnected.png') });
  });
});
