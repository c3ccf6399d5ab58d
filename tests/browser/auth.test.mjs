// End-to-end test of logging in (docs/auth.md) in a real headless Chromium.
//
// Starts the real vigil server with `[auth] required = true`, one test-pattern camera
// `front`, and a user made with the real `vigil user add --password-stdin`. Chromium opens
// `/`, is sent to the login page, is refused with a wrong password (the reason shown in the
// page), logs in, lands back on the live page and sees the camera play; the session cookie
// is invisible to scripts (HttpOnly). On the history page it shares an export link, which a
// browser without a session opens; logging out sends it back to the login page.
//
// Run:   cd tests/browser && npm ci && node --test auth.test.mjs
// Env:   VIGIL_BIN, CHROMIUM as in live.test.mjs
// Leaves tests/artifacts/auth-login.png, auth-live.png, auth-share.png and, on failure,
// auth-server.log.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, BIN, CHROMIUM, CHROMIUM_ARGS, freePort, sleep } from './harness.mjs';

const CAMERA = 'front';
const USER = 'alice';
const PASSWORD = 'a-long-test-password';

const CONFIG = `
[auth]
required = true

[[cameras]]
name = "${CAMERA}"
width = 640
height = 360
fps = 15
bitrate_kbps = 600
`;

let dir;
let proc;
let exited = null;
let serverLog = '';
let browser;
let page;
let base;
const pageLog = [];

function dumpDiagnostics(err) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const text = `===== server (exit ${JSON.stringify(exited)}) =====\n${serverLog}\n===== browser console =====\n${pageLog.join('\n')}\n`;
  const file = path.join(ARTIFACTS, 'auth-server.log');
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

async function waitHealthy(timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (exited) throw new Error(`server exited before it was healthy: ${JSON.stringify(exited)}`);
    try {
      const res = await fetch(`${base}/livez`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e.cause ? e.cause.code || e.cause.message : e.message;
    }
    await sleep(200);
  }
  throw new Error(`GET /livez not 200 within ${timeoutMs} ms (last: ${last})`);
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `server binary ${BIN} not found: run \`cargo build --release\` or set VIGIL_BIN`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: run deploy/install-deps.sh --test`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.rmSync(path.join(ARTIFACTS, 'auth-server.log'), { force: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-browser-auth-'));
  const config = path.join(dir, 'vigil.toml');
  fs.writeFileSync(config, CONFIG);
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' };
  delete env.VIGIL_CONFIG;
  const add = spawnSync(BIN, ['user', 'add', USER, '--role', 'admin', '--password-stdin', '--config', config], {
    input: `${PASSWORD}\n`, env, encoding: 'utf8',
  });
  assert.equal(add.status, 0, `vigil user add failed: ${add.stderr}`);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  proc = spawn(BIN, ['serve', '--config', config, '--listen', `127.0.0.1:${port}`, '--webrtc-udp-ports', String(port),
    '--webrtc-tcp-port', '0',
    '--data-dir', path.join(dir, 'data')], {
    env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  const keep = (chunk) => {
    serverLog += chunk.toString();
    if (serverLog.length > 400_000) serverLog = serverLog.slice(-300_000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  await withDiagnostics(async () => {
    await waitHealthy(30_000);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('console', (m) => pageLog.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`[pageerror] ${e.message}`));
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (proc && !exited) {
    try { process.kill(proc.pid, 'SIGTERM'); } catch (_) { /* gone */ }
    for (let i = 0; i < 50 && !exited; i++) await sleep(100);
  }
  // Capture children live in the server's process group.
  if (proc) { try { process.kill(-proc.pid, 'SIGKILL'); } catch (_) { /* none left */ } }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a browser logs in through the page and watches live video', { timeout: 120_000 }, async () => {
  await withDiagnostics(async () => {
    // Not logged in: the live page sends the browser to the login page.
    await page.goto(`${base}/`);
    assert.equal(new URL(page.url()).pathname, '/login', `landed on ${page.url()}`);
    assert.equal(new URL(page.url()).searchParams.get('next'), '/');
    await page.waitForSelector('#login input[name="password"]');
    await page.screenshot({ path: path.join(ARTIFACTS, 'auth-login.png') });

    // A wrong password: the reason in the page, still on the login page.
    await page.fill('#user', USER);
    await page.fill('#password', 'not-the-password');
    await page.click('#submit');
    await page.waitForFunction(() => { const e = document.getElementById('error'); return e && !e.hidden && e.textContent.length > 0; }, null, { timeout: 15_000 });
    const reason = await page.$eval('#error', (e) => e.textContent.trim());
    assert.match(reason, /wrong user name or password/);
    assert.equal(new URL(page.url()).pathname, '/login');

    // The right one: back to the live page, the camera plays.
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForURL(`${base}/`, { timeout: 15_000 }), page.click('#submit')]);
    await page.waitForSelector(`[data-camera="${CAMERA}"] video`, { timeout: 15_000 });
    await page.waitForFunction((cam) => {
      const v = document.querySelector(`[data-camera="${cam}"] video`);
      return v && v.getVideoPlaybackQuality().totalVideoFrames > 30 && !v.paused;
    }, CAMERA, { timeout: 40_000, polling: 250 });
    const size = await page.$eval(`[data-camera="${CAMERA}"] video`, (v) => [v.videoWidth, v.videoHeight]);
    assert.deepEqual(size, [640, 360]);
    await page.waitForFunction(() => { const s = document.getElementById('session'); return s && !s.hidden; }, null, { timeout: 10_000 });
    const who = await page.$eval('#session .session-user', (e) => e.textContent.trim());
    assert.equal(who, `${USER} · admin`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'auth-live.png') });

    // The session cookie is HttpOnly (scripts cannot read it) and SameSite=Strict.
    assert.ok(!(await page.evaluate(() => document.cookie)).includes('vigil_session'), 'session cookie visible to scripts');
    const cookies = await page.context().cookies(base);
    const c = cookies.find((k) => k.name === 'vigil_session');
    assert.ok(c, `no session cookie: ${JSON.stringify(cookies)}`);
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    assert.ok(c.expires > Date.now() / 1000, 'the cookie has an expiry');

  });
});

test('the history page shares an export link that opens without logging in; logout closes the pages', { timeout: 120_000 }, async () => {
  await withDiagnostics(async () => {
    await page.goto(`${base}/history?camera=${CAMERA}`);
    assert.equal(new URL(page.url()).pathname, '/history', `landed on ${page.url()}`);
    // A few seconds recorded, then play from there and mark a range.
    await page.waitForFunction(async () => {
      const h = window.vigilHistory;
      if (!h) return false;
      const r = h.runs[h.runs.length - 1];
      return r && r.end_ms - r.start_ms > 4000;
    }, null, { timeout: 40_000, polling: 500 });
    const run = await page.evaluate(() => { const r = window.vigilHistory.runs; return r[r.length - 1]; });
    await page.evaluate((t) => window.vigilHistory.seek(t), run.start_ms + 500);
    await page.waitForFunction(() => window.vigilHistory.state === 'playing', null, { timeout: 15_000, polling: 100 });
    await page.click('#markin');
    await sleep(1500);
    await page.click('#markout');
    const href = await page.$eval('#export-link', (a) => a.getAttribute('href'));

    // "Copy share link": a signed URL for exactly that export, copied to the clipboard where
    // the browser allows it and shown in the page either way.
    await page.selectOption('#share-ttl', '1h');
    await page.click('#share-link');
    await page.waitForFunction(() => { const i = document.getElementById('share-url'); return i && !i.hidden && i.value; }, null, { timeout: 10_000 });
    const url = await page.$eval('#share-url', (i) => i.value);
    assert.ok(url.startsWith(`${base}${href}&exp=`) && /&sig=[0-9a-f]{64}$/.test(url), `shared link ${url} for ${href}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'auth-share.png') });

    // Someone without an account (a fresh browser context, no cookie) opens it.
    const stranger = await browser.newContext();
    try {
      const res = await stranger.request.get(url);
      assert.equal(res.status(), 200, `shared link: HTTP ${res.status()} ${await res.text()}`);
      assert.equal(res.headers()['content-type'], 'video/mp4');
      const body = await res.body();
      assert.equal(body.subarray(4, 8).toString('latin1'), 'ftyp');
      const plain = await stranger.request.get(`${base}${href}`, { maxRedirects: 0 });
      assert.equal(plain.status(), 401, 'the same export without the signature');
      const tampered = await stranger.request.get(url.replace(/end=(\d+)/, (_, e) => `end=${Number(e) + 1000}`));
      assert.equal(tampered.status(), 403, 'a changed range');
    } finally {
      await stranger.close();
    }

    // Log out: back to the login page, and the pages are closed again.
    await Promise.all([page.waitForURL(/\/login/, { timeout: 15_000 }), page.click('#session button')]);
    await page.goto(`${base}/`);
    assert.equal(new URL(page.url()).pathname, '/login', `after logout landed on ${page.url()}`);
  });
});
