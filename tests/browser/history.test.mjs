// End-to-end test of the history page in a real headless Chromium.
//
// Records two runs with a gap between them (server started, ~5 s recorded, SIGTERM,
// 3 s pause, started again on the same data dir, ~5 s more), then opens
// /history?camera=test, seeks to the start of the first run, checks the video plays
// (currentTime advances) and that playback at 2x crosses the gap into the second run.
//
// Run:   cd tests/browser && npm ci && node --test history.test.mjs
// Env:   VIGIL_BIN, CHROMIUM as in live.test.mjs; VIGIL_WEB_FROM_DISK=1 serves /history,
//        /history.js, /style.css from web/ instead of the copies embedded in the binary.
// Leaves tests/artifacts/history.png and, on failure, history-server.log behind.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, BIN, CHROMIUM, CHROMIUM_ARGS, ROOT, VigilServer, freePort, sleep } from './harness.mjs';

const CAMERA = 'test';

const CONFIG = `[server]
min_free_bytes = 0

[[cameras]]
name = "test"
source = "test"
width = 640
height = 360
segment_seconds = 2
`;

let dataDir;
let browser;
let page;
let port;
const servers = [];
const pageLog = [];

function dumpDiagnostics(err) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const text = servers.map((s) => `===== ${s.label} (port ${s.port}, exit ${JSON.stringify(s.exit)}) =====\n${s.log}`).join('\n') +
    `\n===== browser console =====\n${pageLog.join('\n')}\n`;
  const file = path.join(ARTIFACTS, 'history-server.log');
  fs.writeFileSync(file, text);
  console.error(`\n${err && err.stack ? err.stack : err}\n--- output (also in ${file}) ---\n${text.slice(-20_000)}`);
}

async function withDiagnostics(fn) {
  try { await fn(); } catch (err) {
    if (page) {
      const h = await page.evaluate(() => window.vigilHistory && { state: window.vigilHistory.state, log: window.vigilHistory.log }).catch(() => null);
      if (h) pageLog.push(`[vigilHistory] state=${h.state}\n  ${h.log.join('\n  ')}`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'history-failed.png') }).catch(() => {});
    }
    dumpDiagnostics(err);
    throw err;
  }
}

async function newServer(label) {
  const s = new VigilServer(port, dataDir, label, ['--config', path.join(dataDir, 'vigil.toml')]);
  servers.push(s);
  s.start();
  await s.waitHealthy(30_000);
  return s;
}

async function runs(base) {
  const res = await fetch(`${base}/api/cameras/${CAMERA}/recordings`);
  if (res.status !== 200) return [];
  const j = await res.json();
  return Array.isArray(j) ? j : j.runs;
}

// Waits until the newest run holds at least `ms` of recording.
async function waitRecorded(s, ms, count) {
  const deadline = Date.now() + 40_000;
  let r = [];
  while (Date.now() < deadline) {
    r = await runs(s.base).catch(() => []);
    if (r.length >= count && r[r.length - 1].end_ms - r[r.length - 1].start_ms >= ms) return r;
    await sleep(250);
  }
  throw new Error(`${s.label}: ${ms} ms not recorded in run #${count} within 40 s: ${JSON.stringify(r)}`);
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `server binary ${BIN} not found: run \`cargo build --release\` or set VIGIL_BIN`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: run deploy/install-deps.sh --test`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.rmSync(path.join(ARTIFACTS, 'history-server.log'), { force: true });
  fs.rmSync(path.join(ARTIFACTS, 'history-failed.png'), { force: true });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-history-test-'));
  fs.writeFileSync(path.join(dataDir, 'vigil.toml'), CONFIG);
  port = await freePort();
  await withDiagnostics(async () => {
    // Run 1, then a gap of ~3 s, then run 2 (still recording while the page plays).
    const s1 = await newServer('server #1');
    await waitRecorded(s1, 6000, 1);
    await s1.stop();
    await sleep(3000);
    const s2 = await newServer('server #2');
    await waitRecorded(s2, 5000, 2);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => pageLog.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`[pageerror] ${e.message}`));
    if (process.env.VIGIL_WEB_FROM_DISK) {
      const assets = { '/history': ['history.html', 'text/html'], '/history.js': ['history.js', 'text/javascript'], '/style.css': ['style.css', 'text/css'] };
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

test('history page plays a recorded run and crosses the gap into the next', { timeout: 120_000 }, async () => {
  await withDiagnostics(async () => {
    const base = servers[servers.length - 1].base;
    const r = await runs(base);
    assert.ok(r.length >= 2, `two runs recorded: ${JSON.stringify(r)}`);
    const [run1, run2] = r;
    assert.ok(run2.start_ms - run1.end_ms >= 1500, `a gap between the runs: ${JSON.stringify(r)}`);
    console.log(`runs: ${JSON.stringify(r.map((x) => [x.start_ms, x.end_ms]))}, gap ${run2.start_ms - run1.end_ms} ms`);

    for (const [url, file] of [['/history', 'history.html'], ['/history.js', 'history.js']]) {
      const served = await (await fetch(base + url)).text();
      const onDisk = fs.readFileSync(path.join(ROOT, 'web', file), 'utf8');
      if (served !== onDisk && !process.env.VIGIL_WEB_FROM_DISK) console.error(`note: ${url} served by ${BIN} differs from web/${file}: rebuild the server to test the current page`);
    }

    const res = await page.goto(`${base}/history?camera=${CAMERA}`);
    assert.equal(res.status(), 200, 'GET /history status');
    await page.waitForFunction(() => window.vigilHistory && window.vigilHistory.runs.length >= 2, null, { timeout: 15_000, polling: 250 });
    assert.equal(await page.evaluate(() => window.vigilHistory.mse), true, 'MSE available in Chromium');
    assert.ok(await page.$('a[href="/"]'), 'link back to live');

    // 2x, then seek to the start of the first run.
    await page.click('[data-speed="2"]');
    await page.evaluate((t) => window.vigilHistory.seek(t), run1.start_ms);
    await page.waitForFunction(() => window.vigilHistory.state === 'playing', null, { timeout: 15_000, polling: 100 });
    const t0 = await page.evaluate(() => ({ ct: document.getElementById('video').currentTime, wall: window.vigilHistory.currentWallMs }));
    assert.ok(Math.abs(t0.wall - run1.start_ms) < 1500, `playhead near run 1 start: ${t0.wall} vs ${run1.start_ms}`);
    await sleep(1000);
    const t1 = await page.evaluate(() => ({ ct: document.getElementById('video').currentTime, rate: document.getElementById('video').playbackRate }));
    assert.ok(t1.ct > t0.ct + 0.5, `currentTime advances: ${t0.ct} -> ${t1.ct}`);
    assert.equal(t1.rate, 2, 'playbackRate 2');

    // Crosses the gap into run 2 within 20 s.
    await page.waitForFunction((s2) => window.vigilHistory.currentWallMs > s2 + 500, run2.start_ms, { timeout: 20_000, polling: 100 });
    const v = await page.evaluate(() => {
      const el = document.getElementById('video');
      return { w: el.videoWidth, h: el.videoHeight, paused: el.paused, frames: el.getVideoPlaybackQuality().totalVideoFrames };
    });
    assert.equal(v.w, 640, 'videoWidth');
    assert.equal(v.h, 360, 'videoHeight');
    assert.equal(v.paused, false, 'still playing after the gap');
    const log = await page.evaluate(() => window.vigilHistory.log);
    const ranges = await page.evaluate(() => { const b = document.getElementById('video').buffered; const out = []; for (let i = 0; i < b.length; i++) out.push([b.start(i), b.end(i)]); return { base: window.vigilHistory.base, out }; });
    console.log(`buffered (media s, base ${ranges.base}): ${JSON.stringify(ranges.out)}; gap jump logged: ${log.some((l) => /gap jump/.test(l))}`);

    // Export: mark in/out gives a download link.
    await page.click('#markin');
    await sleep(1200);
    await page.click('#markout');
    const href = await page.$eval('#export-link', (a) => a.getAttribute('href'));
    assert.match(href, new RegExp(`^/api/cameras/${CAMERA}/video\\.mp4\\?start=\\d+&end=\\d+$`), 'export link');

    // Zoom to 5 minutes around the playhead and hover it: tooltip with a thumbnail.
    await page.click('[data-span="300000"]');
    await sleep(300);
    const box = await page.$eval('#timeline', (c) => { const r = c.getBoundingClientRect(); return { x: r.left, y: r.top, w: r.width, h: r.height }; });
    await page.mouse.move(box.x + box.w * 0.5, box.y + box.h * 0.5);
    await page.waitForFunction(() => { const i = document.getElementById('tipimg'); return i && !i.hidden && i.complete && i.naturalWidth > 0; }, null, { timeout: 5000, polling: 100 });
    await page.screenshot({ path: path.join(ARTIFACTS, 'history.png') });
  });
});

test('without MediaSource the page falls back to progressive MP4', { timeout: 60_000 }, async () => {
  await withDiagnostics(async () => {
    const base = servers[servers.length - 1].base;
    const [run1] = await runs(base);
    await page.goto(`${base}/history?camera=${CAMERA}&mse=0`);
    await page.waitForFunction(() => window.vigilHistory && window.vigilHistory.runs.length >= 2, null, { timeout: 15_000, polling: 250 });
    assert.equal(await page.evaluate(() => window.vigilHistory.mse), false, 'MSE off');
    await page.evaluate((t) => window.vigilHistory.seek(t), run1.start_ms);
    const src = await page.$eval('#video', (v) => v.getAttribute('src'));
    assert.match(src, new RegExp(`^/api/cameras/${CAMERA}/video\\.mp4\\?start=\\d+&end=\\d+$`), 'progressive src');
    await page.waitForFunction(() => document.getElementById('video').currentTime > 1, null, { timeout: 15_000, polling: 100 });
    const wall = await page.evaluate(() => window.vigilHistory.currentWallMs);
    assert.ok(wall > run1.start_ms && wall < run1.end_ms + 5000, `progressive playhead in run 1: ${wall}`);
  });
});

test('a fragment gone (404, as after retention) is skipped: the page re-queries and carries on', { timeout: 90_000 }, async () => {
  await withDiagnostics(async () => {
    const base = servers[servers.length - 1].base;
    const [run1, run2] = await runs(base);
    let refused = null;
    // The first fragment asked for in run 2 answers 404, as if retention deleted it.
    const isMedia = (u) => new URL(u).pathname.endsWith('/fmp4/media.m4s');
    await page.route(isMedia, (route) => {
      const start = Number(new URL(route.request().url()).searchParams.get('start'));
      if (refused === null && start >= run2.start_ms) {
        refused = start;
        return route.fulfill({ status: 404, contentType: 'text/plain', body: 'nothing recorded\n' });
      }
      return route.continue();
    });
    try {
      await page.goto(`${base}/history?camera=${CAMERA}`);
      await page.waitForFunction(() => window.vigilHistory && window.vigilHistory.runs.length >= 2, null, { timeout: 15_000, polling: 250 });
      await page.click('[data-speed="4"]');
      await page.evaluate((t) => window.vigilHistory.seek(t), run1.start_ms);
      await page.waitForFunction((s2) => window.vigilHistory.currentWallMs > s2 + 500, run2.start_ms, { timeout: 30_000, polling: 100 });
      assert.ok(refused !== null, 'a fragment was refused');
      const log = await page.evaluate(() => window.vigilHistory.log);
      assert.ok(log.some((l) => /404/.test(l)), `404 logged: ${log.join(' | ')}`);
      const c0 = await page.evaluate(() => document.getElementById('video').currentTime);
      await sleep(1000);
      const c1 = await page.evaluate(() => document.getElementById('video').currentTime);
      assert.ok(c1 > c0, `still playing after the 404: ${c0} -> ${c1}`);
      assert.notEqual(await page.evaluate(() => window.vigilHistory.state), 'error');
    } finally {
      await page.unroute(isMedia);
    }
  });
});
