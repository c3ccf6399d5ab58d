// A WHEP ICE restart (RFC 9725 §4.4.2) the way a browser viewer does it after a network
// change, against the real server: Chromium watches a test-pattern camera over WHEP, calls
// restartIce(), PATCHes its new ICE credentials as an sdpfrag (with If-Match), applies the
// server's new credentials and candidates, and must reconnect on the new ICE session with
// the same WHEP session, frames decoding on.
//
// Run: cd tests/browser && npm ci && node --test whep-restart.test.mjs
// On failure: tests/artifacts/whep-restart-server.log.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, BIN, CHROMIUM, CHROMIUM_ARGS, VigilServer, freePort, restartIceInPage, sleep, waitFor } from './harness.mjs';

const CAMERA = 'cam';

let dir;
let server;
let browser;
const pageLog = [];

before(async () => {
  if (!fs.existsSync(BIN)) throw new Error(`server binary ${BIN} not found: run \`cargo build --release\` or set VIGIL_BIN`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-whep-restart-'));
  const config = path.join(dir, 'vigil.toml');
  fs.writeFileSync(config, `[[cameras]]\nname = "${CAMERA}"\nwidth = 640\nheight = 360\nfps = 30\nbitrate_kbps = 800\nsegment_seconds = 10\n`);
  server = new VigilServer(await freePort(), path.join(dir, 'data'), 'server', ['--config', config]);
  server.start();
  await server.waitHealthy();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function camera() {
  const cams = await (await fetch(`${server.base}/api/cameras`)).json();
  return cams.find((c) => c.name === CAMERA);
}

test('a WHEP viewer restarts ICE with PATCH and keeps watching', async () => {
  try {
    await waitFor('the camera to run', 20_000, async () => (await camera())?.state === 'running');
    const page = await browser.newPage();
    page.on('console', (m) => pageLog.push(`[page ${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`[pageerror] ${e.message}`));
    await page.goto(`${server.base}/livez`);

    // 1. Watch: recvonly H.264, the whole offer in the POST.
    const started = await page.evaluate(async (camera) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
        setTimeout(resolve, 3000);
      });
      const r = await fetch(`/whep/${camera}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const answer = await r.text();
      if (r.status !== 201) return { status: r.status, answer };
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      window.view = { pc, answer, location: new URL(r.headers.get('Location'), location.href).href, etag: r.headers.get('ETag') };
      return { status: r.status, etag: window.view.etag, location: window.view.location };
    }, CAMERA);
    assert.equal(started.status, 201, JSON.stringify(started));
    assert.ok(started.etag, 'the 201 carries an ETag');

    const transport = () => page.evaluate(async () => {
      const stats = await window.view.pc.getStats();
      let t = null;
      let decoded = 0;
      let width = 0;
      stats.forEach((s) => {
        if (s.type === 'transport') t = s;
        if (s.type === 'inbound-rtp' && s.kind === 'video') { decoded += s.framesDecoded || 0; width = s.frameWidth || width; }
      });
      return { ice: window.view.pc.iceConnectionState, ufrag: t && t.iceLocalUsernameFragment, decoded, width };
    });
    const first = await waitFor('frames decoded', 15_000, async () => {
      const t = await transport();
      return t.ice === 'connected' && t.decoded > 30 ? t : null;
    });
    assert.equal(first.width, 640);
    assert.ok(first.ufrag, `Chromium reports the local ICE ufrag: ${JSON.stringify(first)}`);

    // 2. ICE restart: new local credentials → PATCH sdpfrag → the server's credentials and
    // candidates → the same answer with them.
    const restarted = await restartIceInPage(page, 'view');
    // The old ETag no longer matches: a stale PATCH is refused.
    restarted.stale = await page.evaluate(async ({ etag, frag }) => (await fetch(window.view.location, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': etag },
      body: frag,
    })).status, { etag: started.etag, frag: restarted.frag });
    assert.equal(restarted.status, 200, `PATCH with new credentials: ${JSON.stringify(restarted)}`);
    assert.equal(restarted.contentType, 'application/trickle-ice-sdpfrag');
    assert.ok(restarted.etag && restarted.etag !== started.etag, `a new ETag: ${JSON.stringify(restarted)}`);
    assert.equal(restarted.stale, 412, 'the old ETag is stale after the restart');
    assert.notEqual(restarted.serverUfrag, restarted.oldServerUfrag, 'the server restarted its ICE agent too');
    assert.ok(restarted.candidates > 0, 'the server sent its candidates');

    // 3. Connected again on the new ICE session, frames decoding on, the same session.
    const after = await waitFor('the browser to use the restarted ICE session', 20_000, async () => {
      const t = await transport();
      return t.ice === 'connected' && t.ufrag === restarted.localUfrag ? t : null;
    });
    await waitFor('frames decoded after the restart', 15_000, async () => (await transport()).decoded > after.decoded + 60);
    const cam = await camera();
    assert.equal(cam.viewers, 1, `still one viewer, the same session: ${JSON.stringify(cam)}`);
    const del = await page.evaluate(async () => (await fetch(window.view.location, { method: 'DELETE' })).status);
    assert.equal(del, 200, 'the session that restarted is the one that ends');
    await sleep(500);
    await page.close();
  } catch (err) {
    const file = path.join(ARTIFACTS, 'whep-restart-server.log');
    fs.writeFileSync(file, `${server.log}\n===== browser console =====\n${pageLog.join('\n')}\n`);
    console.error(`${err.stack}\n--- server output in ${file} ---\n${server.log.slice(-8000)}\n${pageLog.join('\n')}`);
    throw err;
  }
});
