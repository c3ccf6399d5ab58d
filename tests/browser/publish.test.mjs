// End-to-end test of the publish page in a real headless Chromium: with a fake camera
// (--use-fake-device-for-media-stream), /publish/{camera} asks for the token, publishes over
// WHIP, and what it sends is decoded by a second, independent page: the live view at `/`
// (WHEP). The recordings API then lists the segments it made.
//
// Run: cd tests/browser && npm ci && node --test publish.test.mjs
// Leaves tests/artifacts/publish.png, publish-viewer.png and, on failure, publish-server.log.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, closeWhipSetup, waitFor, whipSetup } from './harness.mjs';

const CAMERA = 'phone';
const TOKEN = 'browser-test-token-0123456789';

let setup;
let server;
let browser;
const pageLog = [];

before(async () => {
  setup = await whipSetup('vigil-publish-test-', CAMERA, TOKEN);
  ({ server, browser } = setup);
});

after(() => closeWhipSetup(setup));

async function diagnostics(fn) {
  try {
    await fn();
  } catch (err) {
    const file = path.join(ARTIFACTS, 'publish-server.log');
    fs.writeFileSync(file, `${server.log}\n===== browser console =====\n${pageLog.join('\n')}\n`);
    console.error(`${err.stack}\n--- server output in ${file} ---\n${server.log.slice(-10_000)}\n${pageLog.join('\n')}`);
    throw err;
  }
}

test('a browser publishes from /publish/{camera}; the live page plays it and it is recorded', async () => {
  await diagnostics(async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const publisher = await context.newPage();
    publisher.on('console', (m) => pageLog.push(`[publisher ${m.type()}] ${m.text()}`));
    publisher.on('pageerror', (e) => pageLog.push(`[publisher pageerror] ${e.message}`));
    await publisher.goto(`${server.base}/publish/${CAMERA}`);

    // A wrong token is refused with the server's reason, and nothing is published.
    await publisher.fill('#token', 'not-the-token');
    await publisher.click('#start');
    await waitFor('the 401 to show', 15_000, () => publisher.evaluate(() => window.vigilPublish.state === 'failed'));
    const notice = await publisher.textContent('#notice');
    assert.match(notice, /401/, `the page shows the refusal: ${notice}`);

    await publisher.fill('#token', TOKEN);
    await publisher.click('#start');
    await waitFor('publishing (connected, frames encoded)', 20_000, () =>
      publisher.evaluate(() => window.vigilPublish.state === 'live' && window.vigilPublish.framesSent > 30));
    const sent = await publisher.evaluate(() => ({ ...window.vigilPublish }));
    assert.equal(await publisher.evaluate(() => localStorage.getItem('vigil.publishToken.phone')), TOKEN, 'the token is remembered');

    // An independent viewer: the live page, over WHEP.
    const viewer = await context.newPage();
    viewer.on('console', (m) => pageLog.push(`[viewer ${m.type()}] ${m.text()}`));
    await viewer.goto(`${server.base}/`);
    const shown = await waitFor('the live page to decode the published video', 20_000, () =>
      viewer.evaluate((cam) => {
        const v = document.querySelector(`[data-camera="${cam}"] video`);
        if (!v) return null;
        const frames = v.getVideoPlaybackQuality().totalVideoFrames;
        return frames > 30 ? { w: v.videoWidth, h: v.videoHeight, frames } : null;
      }, CAMERA));
    assert.ok(shown.w > 0 && shown.h > 0, JSON.stringify(shown));
    // Chromium changes its send resolution with its bandwidth estimate, so compare the two
    // pages until they agree.
    await waitFor(`the viewer's size to match what the browser sends (first seen ${shown.w}x${shown.h}, sent ${sent.width}x${sent.height})`, 15_000, async () => {
      const p = await publisher.evaluate(() => `${window.vigilPublish.width}x${window.vigilPublish.height}`);
      const v = await viewer.evaluate((cam) => {
        const el = document.querySelector(`[data-camera="${cam}"] video`);
        return `${el.videoWidth}x${el.videoHeight}`;
      }, CAMERA);
      return p === v;
    });
    // The publisher's microphone is relayed: the viewer's audio track has media flowing
    // (a track with no packets arriving reads `muted`), and the sound button shows.
    await waitFor('relayed audio on the live page', 15_000, () =>
      viewer.evaluate((cam) => {
        const tile = document.querySelector(`[data-camera="${cam}"]`);
        const v = tile && tile.querySelector('video');
        const a = v && v.srcObject && v.srcObject.getAudioTracks()[0];
        return Boolean(a && a.readyState === 'live' && !a.muted && !tile.querySelector('.sound').hidden);
      }, CAMERA));

    // Recorded like any camera.
    const segments = await waitFor('two closed segments', 30_000, async () => {
      const now = Date.now();
      const res = await fetch(`${server.base}/api/cameras/${CAMERA}/recordings?start=${now - 600_000}&end=${now + 60_000}&segments=true`);
      const json = await res.json();
      const closed = (json.segments || []).filter((s) => !s.open);
      return closed.length >= 2 ? closed : null;
    });
    assert.ok(segments.every((s) => s.frames > 0), JSON.stringify(segments));

    await publisher.screenshot({ path: path.join(ARTIFACTS, 'publish.png') });
    await viewer.screenshot({ path: path.join(ARTIFACTS, 'publish-viewer.png') });

    // Stop: the session is deleted and the camera goes offline.
    await publisher.click('#stop');
    await waitFor('the camera to go offline', 15_000, async () => {
      const cams = await (await fetch(`${server.base}/api/cameras`)).json();
      return cams.find((c) => c.name === CAMERA)?.state === 'offline';
    });
    await context.close();
  });
});
