// The kiosk (/kiosk): a wall display. A full-screen grid of cameras with no chrome and no
// cursor, each playing over WHEP (view.js) and reconnecting forever, across network loss and
// server restarts. Which cameras: `?cameras=a,b,c,d` (in that order), or `?group=outside`,
// or every camera. deploy/kiosk.md starts it on a Pi with a display.

import { CameraView, TICK_MS, server, toLogin, $, sleep } from './view.js';

const API_REFRESH_MS = 5000;
const API_RETRY_MS = 2000;

const params = new URLSearchParams(location.search);
const wanted = (params.get('cameras') || '').split(',').map((s) => s.trim()).filter(Boolean);
const group = params.get('group');

const views = new Map();

function notice(text) {
  const n = $('#kiosk-notice');
  n.hidden = !text;
  n.textContent = text || '';
}

// The cameras to show, in order.
function pick(cams) {
  if (wanted.length) return wanted.map((n) => cams.find((c) => c.name === n)).filter(Boolean);
  if (group) return cams.filter((c) => c.group === group);
  return cams;
}

// As close to square as the count allows, filling the screen.
function layout() {
  const n = Math.max(1, views.size);
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const root = $('#kiosk');
  root.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
  root.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
  root.dataset.count = String(views.size);
}

async function refresh() {
  let cams;
  try {
    const res = await fetch('/api/cameras', { cache: 'no-store', signal: AbortSignal.timeout ? AbortSignal.timeout(4000) : undefined });
    if (res.status === 401) { toLogin(); return false; }
    if (!res.ok) throw new Error('HTTP ' + res.status);
    cams = await res.json();
    if (!Array.isArray(cams)) throw new Error('unexpected response');
  } catch (e) {
    server.reachable = false;
    notice('server unreachable, retrying');
    return false;
  }
  server.reachable = true;
  const shown = pick(cams.filter((c) => c && typeof c.name === 'string'));
  notice(shown.length ? '' : (wanted.length || group ? 'none of the requested cameras exists' : 'no cameras'));
  const root = $('#kiosk');
  const seen = new Set();
  for (const cam of shown) {
    seen.add(cam.name);
    let v = views.get(cam.name);
    if (!v) {
      v = new CameraView(cam, $('#kiosk-tile'));
      views.set(cam.name, v);
      v.update(cam);
      v.start();
    } else {
      v.update(cam);
    }
    root.appendChild(v.el); // keeps the requested order
  }
  views.forEach((v, name) => {
    if (!seen.has(name)) { v.destroy(); views.delete(name); }
  });
  layout();
  return true;
}

setInterval(() => {
  views.forEach((v) => {
    if (v.ticking) return;
    v.ticking = true;
    v.tick().catch(() => {}).finally(() => { v.ticking = false; });
  });
}, TICK_MS);

// A kiosk never gives up: the list is re-read every 5 s (every 2 s while the server is away).
window.vigil = { views };
layout();
for (;;) {
  const ok = await refresh();
  await sleep(ok ? API_REFRESH_MS : API_RETRY_MS);
}
