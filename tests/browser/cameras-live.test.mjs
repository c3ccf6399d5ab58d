// The live page and the kiosk with four cameras in groups (issue 12, slice C3), in a real
// headless Chromium against the real server:
// - the live page shows each camera under its title, grouped by `group`; "Snapshot" saves a
//   JPEG of what is on screen (ffprobe reads it at the camera's size); an admin's record
//   and stop/start buttons change the camera (the API says so) and the tile follows;
// - /kiosk?cameras=... plays the four full screen in a 2×2 grid with no chrome and no cursor,
//   and comes back by itself after the server restarts.
//
// Run: cd tests/browser && npm ci && node --test cameras-live.test.mjs
// Leaves tests/artifacts/live-groups.png, kiosk.png, kiosk-snapshot.jpg and, on failure,
// cameras-live-server.log.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, BIN, CHROMIUM, CHROMIUM_ARGS, VigilServer, freePort, sleep, waitFor } from './harness.mjs';

const cam = (name, extra) => `[[cameras]]\nname = "${name}"\nwidth = 320\nheight = 240\nfps = 10\nbitrate_kbps = 200\nsegment_seconds = 4\n${extra}\n`;
const CONFIG = [
  cam('front', 'title = "Front door"\ngroup = "outside"'),
  cam('drive', 'title = "Driveway"\ngroup = "outside"'),
  cam('hall', 'title = "Hall"\ngroup = "inside"'),
  cam('desk', ''),
].join('\n');
const NAMES = ['front', 'drive', 'hall', 'desk'];

let dir;
let port;
let config;
let browser;
const servers = [];
const pageLog = [];

async function newServer(label) {
  const s = new VigilServer(port, path.join(dir, 'data'), label, ['--config', config]);
  servers.push(s);
  s.start();
  await s.waitHealthy();
  return s;
}
const base = () => servers[servers.length - 1].base;

async function api(name) {
  const cams = await (await fetch(`${base()}/api/cameras`)).json();
  return cams.find((c) => c.name === name);
}

async function withDiagnostics(fn) {
  try {
    await fn();
  } catch (err) {
    const file = path.join(ARTIFACTS, 'cameras-live-server.log');
    const text = servers.map((s) => `===== ${s.label} =====\n${s.log}`).join('\n') + `\n===== browser =====\n${pageLog.join('\n')}\n`;
    fs.writeFileSync(file, text);
    console.error(`${err.stack}\n--- server output in ${file} ---\n${text.slice(-10_000)}`);
    throw err;
  }
}

before(async () => {
  if (!fs.existsSync(BIN)) throw new Error(`server binary ${BIN} not found: run \`cargo build --release\` or set VIGIL_BIN`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-cameras-live-'));
  config = path.join(dir, 'vigil.toml');
  fs.writeFileSync(config, CONFIG);
  port = await freePort();
  await newServer('server #1');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const s of servers) await s.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const allLive = (names) => names.every((n) => window.vigilStats[n] && window.vigilStats[n].connected && window.vigilStats[n].framesDecoded > 10);

test('live page: titles, groups, snapshot, record and start/stop', { timeout: 120_000 }, async () => {
  await withDiagnostics(async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
    page.on('console', (m) => pageLog.push(`[live ${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`[live pageerror] ${e.message}`));
    await page.goto(`${base()}/`);
    await page.waitForFunction(allLive, NAMES, { timeout: 45_000, polling: 250 });

    // Grouped, under their titles; the ungrouped camera first, with its name.
    const layout = await page.evaluate(() => [...document.querySelectorAll('section.group')].map((s) => ({
      group: s.dataset.group,
      heading: s.querySelector('.group-name').hidden ? null : s.querySelector('.group-name').textContent,
      tiles: [...s.querySelectorAll('[data-camera]')].map((t) => [t.dataset.camera, t.querySelector('.cam-name').textContent]),
    })));
    assert.deepEqual(layout, [
      { group: '', heading: null, tiles: [['desk', 'desk']] },
      { group: 'outside', heading: 'outside', tiles: [['front', 'Front door'], ['drive', 'Driveway']] },
      { group: 'inside', heading: 'inside', tiles: [['hall', 'Hall']] },
    ]);
    await page.screenshot({ path: path.join(ARTIFACTS, 'live-groups.png'), fullPage: true });

    // Snapshot: a JPEG of the picture on screen, at the camera's size.
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 10_000 }),
      page.click('[data-camera="front"] .act-snapshot'),
    ]);
    assert.match(download.suggestedFilename(), /^front-\d{4}-\d\d-\d\dT.*\.jpg$/);
    const jpg = path.join(ARTIFACTS, 'kiosk-snapshot.jpg');
    await download.saveAs(jpg);
    const probed = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'csv=p=0', jpg]).toString().trim();
    assert.equal(probed, 'mjpeg,320,240', `ffprobe of the snapshot: ${probed}`);

    // Record off: the camera is live only, and says so; on again.
    await page.click('[data-camera="hall"] .act-record');
    await waitFor('hall record=false in the API', 10_000, async () => (await api('hall')).record === false);
    assert.equal(await page.textContent('[data-camera="hall"] .act-record'), 'Not recording');
    await page.waitForFunction(() => window.vigilStats.hall && window.vigilStats.hall.connected, null, { timeout: 20_000 });
    await page.click('[data-camera="hall"] .act-record');
    await waitFor('hall record=true in the API', 10_000, async () => (await api('hall')).record === true);

    // Stop: nothing runs, the tile waits; start: live again.
    await page.click('[data-camera="desk"] .act-enable');
    await waitFor('desk stopped', 10_000, async () => (await api('desk')).state === 'stopped');
    await page.waitForFunction(() => window.vigilStats.desk && !window.vigilStats.desk.connected && window.vigilStats.desk.state === 'stopped', null, { timeout: 15_000 });
    assert.equal(await page.textContent('[data-camera="desk"] .act-enable'), 'Start');
    const sessions = await page.evaluate(() => window.vigilStats.desk.sessions);
    await page.click('[data-camera="desk"] .act-enable');
    await page.waitForFunction((n) => window.vigilStats.desk.connected && window.vigilStats.desk.sessions > n, sessions, { timeout: 30_000, polling: 250 });
    await page.close();
  });
});

test('kiosk: four cameras full screen in a 2x2 grid, back by itself after a server restart', { timeout: 150_000 }, async () => {
  await withDiagnostics(async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.on('console', (m) => pageLog.push(`[kiosk ${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`[kiosk pageerror] ${e.message}`));
    await page.goto(`${base()}/kiosk?cameras=${NAMES.join(',')}`);
    await page.waitForFunction(allLive, NAMES, { timeout: 45_000, polling: 250 });
    const shape = await page.evaluate(() => ({
      tiles: [...document.querySelectorAll('.kiosk-tile')].map((t) => {
        const r = t.getBoundingClientRect();
        return { cam: t.dataset.camera, x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width), h: Math.round(r.height) };
      }),
      chrome: !!document.querySelector('.topbar, nav, button'),
      cursor: getComputedStyle(document.body).cursor,
      scroll: document.documentElement.scrollHeight > window.innerHeight,
    }));
    assert.deepEqual(shape.tiles.map((t) => t.cam), NAMES, 'the requested order');
    const xs = new Set(shape.tiles.map((t) => t.x));
    const ys = new Set(shape.tiles.map((t) => t.y));
    assert.equal(xs.size, 2, `two columns: ${JSON.stringify(shape.tiles)}`);
    assert.equal(ys.size, 2, `two rows: ${JSON.stringify(shape.tiles)}`);
    assert.ok(shape.tiles.every((t) => t.w > 600 && t.h > 340), `tiles fill the screen: ${JSON.stringify(shape.tiles)}`);
    assert.equal(shape.chrome, false, 'no menus or buttons');
    assert.equal(shape.cursor, 'none', 'no cursor');
    assert.equal(shape.scroll, false, 'nothing to scroll');
    await page.screenshot({ path: path.join(ARTIFACTS, 'kiosk.png') });

    // The server goes away and comes back: every tile plays again, no reload.
    const before = await page.evaluate(() => Object.fromEntries(Object.entries(window.vigilStats).map(([k, v]) => [k, v.sessions])));
    await page.evaluate(() => { window.__kioskNoReload = true; });
    await servers[servers.length - 1].stop();
    await sleep(3000);
    await newServer('server #2');
    await page.waitForFunction((b) => Object.keys(b).every((n) => {
      const s = window.vigilStats[n];
      return s && s.connected && s.sessions > b[n];
    }), before, { timeout: 60_000, polling: 250 });
    assert.equal(await page.evaluate(() => window.__kioskNoReload), true, 'the page was not reloaded');
    await page.close();
  });
});
