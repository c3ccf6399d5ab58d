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
//        VIGIL_WEB_FROM_DISK=1  serve /, /live/*.js, /style.css from web/ instead of the
//                   copies embedded in the binary (to work on the page without a rebuild)
// Leaves tests/artifacts/live.png, live-reconnected.png and, on failure,
// live-server.log (the server's output) behind.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, BIN, CHROMIUM, CHROMIUM_ARGS, ROOT, VigilServer, freePort, sleep } from './harness.mjs';

const CAMERA = 'test';

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
      const assets = { '/': ['index.html', 'text/html'], '/style.css': ['style.css', 'text/css'] };
      for (const m of ['latency', 'view', 'page']) assets[`/live/${m}.js`] = [`live/${m}.js`, 'text/javascript'];
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
    for (const [url, file] of [['/', 'index.html'], ['/live/page.js', 'live/page.js'], ['/live/view.js', 'live/view.js'], ['/style.css', 'style.css']]) {
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
