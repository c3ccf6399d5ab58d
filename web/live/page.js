// The live page (/): every camera the caller may see, grouped by its `group`, each tile
// playing over WHEP (view.js) under the camera's title. Each tile can save a JPEG of what is
// on screen; admins also get record on/off and start/stop, which PATCH /api/cameras/{name}
// (docs/cameras.md). The list follows /api/cameras every 2 s: cameras added, removed,
// retitled or regrouped appear without a reload.

import { CameraView, TICK_MS, server, toLogin, $, now, sleep, plural } from './view.js';
import { latencyMethod, vigilCaptureTs } from './latency.js';

const API_REFRESH_MS = 2000;
const UNGROUPED = '';

const views = new Map();
let admin = false;

function showNotice(text) {
  const n = $('#notice');
  n.hidden = !text;
  n.textContent = text || '';
}

function renderSummary() {
  const total = views.size;
  let live = 0;
  views.forEach((v) => { if (v.status === 'live') live++; });
  $('#summary').textContent = total ? `${plural(total, 'camera')} · ${live} live` : '';
}

// Who is calling: admins (or everyone, without authentication) may switch cameras.
async function whoAmI() {
  try {
    const r = await fetch('/api/session', { cache: 'no-store' });
    if (!r.ok) return false;
    const s = await r.json();
    return !s.auth || s.role === 'admin';
  } catch (_) {
    return false;
  }
}

// ---- groups: one section per group, in the order the cameras come (ungrouped first)

function groupSection(name) {
  const root = $('#groups');
  let sec = root.querySelector(`section.group[data-group="${CSS.escape(name)}"]`);
  if (!sec) {
    sec = document.createElement('section');
    sec.className = 'group';
    sec.dataset.group = name;
    const h = document.createElement('h2');
    h.className = 'group-name';
    h.textContent = name;
    h.hidden = name === UNGROUPED;
    const grid = document.createElement('div');
    grid.className = 'grid';
    grid.setAttribute('aria-label', name ? `Cameras: ${name}` : 'Cameras');
    sec.append(h, grid);
    root.appendChild(sec);
  }
  return sec;
}

function layoutGroups(cams) {
  const order = [];
  for (const c of cams) {
    const g = c.group || UNGROUPED;
    if (!order.includes(g)) order.push(g);
  }
  if (order.includes(UNGROUPED)) order.splice(order.indexOf(UNGROUPED), 1), order.unshift(UNGROUPED);
  const root = $('#groups');
  for (const g of order) root.appendChild(groupSection(g));
  for (const c of cams) {
    const v = views.get(c.name);
    const grid = groupSection(c.group || UNGROUPED).querySelector('.grid');
    if (v && v.el.parentElement !== grid) grid.appendChild(v.el);
  }
  // Keep tiles in the API's order within each group.
  for (const c of cams) {
    const v = views.get(c.name);
    if (v) v.el.parentElement.appendChild(v.el);
  }
  root.querySelectorAll('section.group').forEach((sec) => {
    if (!sec.querySelector('.grid').children.length) sec.remove();
  });
  // Headings only mean something when there is more than one group; the one-camera layout
  // (one big tile) only when there is one camera in all.
  const many = root.querySelectorAll('section.group').length > 1;
  root.querySelectorAll('section.group').forEach((sec) => {
    sec.querySelector('.group-name').hidden = !many || sec.dataset.group === UNGROUPED;
    const grid = sec.querySelector('.grid');
    grid.dataset.count = many ? 'grouped' : String(grid.children.length);
  });
}

// ---- tile actions

// A JPEG of what the tile shows right now, saved as <camera>-<time>.jpg.
function snapshot(view) {
  const v = view.video;
  if (!v.videoWidth) return;
  const c = document.createElement('canvas');
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  c.toBlob((blob) => {
    if (!blob) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    const t = new Date().toISOString().replace(/[:.]/g, '-').replace('Z', '');
    a.download = `${view.name}-${t}.jpg`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }, 'image/jpeg', 0.92);
}

async function patchCamera(view, change) {
  const err = $('.action-error', view.el);
  err.hidden = true;
  try {
    const r = await fetch(`/api/cameras/${encodeURIComponent(view.name)}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(change),
    });
    if (r.status === 401) return toLogin();
    if (!r.ok) throw new Error((await r.text()).trim() || `HTTP ${r.status}`);
    view.update(await r.json());
    renderActions(view);
  } catch (e) {
    err.textContent = e.message || String(e);
    err.hidden = false;
  }
}

function renderActions(view) {
  const cam = view.cam;
  const rec = $('.act-record', view.el);
  const run = $('.act-enable', view.el);
  rec.hidden = run.hidden = !admin;
  rec.setAttribute('aria-pressed', String(cam.record !== false));
  rec.textContent = cam.record === false ? 'Not recording' : 'Recording';
  rec.title = cam.record === false ? 'Live only: nothing is kept. Click to record.' : 'Recorded to history. Click for live only.';
  run.setAttribute('aria-pressed', String(cam.enabled !== false));
  run.textContent = cam.enabled === false ? 'Start' : 'Stop';
  run.title = cam.enabled === false ? 'Start this camera' : 'Stop this camera (nothing runs until started)';
  $('.act-snapshot', view.el).disabled = view.status !== 'live';
}

function addView(cam) {
  const v = new CameraView(cam, $('#tile-template'));
  $('.act-snapshot', v.el).addEventListener('click', () => snapshot(v));
  $('.act-record', v.el).addEventListener('click', () => patchCamera(v, { record: v.cam.record === false }));
  $('.act-enable', v.el).addEventListener('click', () => patchCamera(v, { enabled: v.cam.enabled === false }));
  views.set(cam.name, v);
  return v;
}

// ---- the camera list

async function refreshCameras() {
  let cams;
  try {
    const res = await fetch('/api/cameras', { cache: 'no-store', signal: AbortSignal.timeout ? AbortSignal.timeout(1800) : undefined });
    if (res.status === 401) { toLogin(); return; }
    if (!res.ok) throw new Error('HTTP ' + res.status);
    cams = await res.json();
    if (!Array.isArray(cams)) throw new Error('unexpected response');
  } catch (e) {
    server.reachable = false;
    showNotice('Cannot reach the vigil server (' + (e.message || e) + '). Retrying…');
    views.forEach((v) => {
      const badge = $('.badge.state', v.el);
      badge.textContent = 'offline';
      badge.dataset.state = 'offline';
    });
    return;
  }
  server.reachable = true;
  showNotice('');
  cams = cams.filter((c) => c && typeof c.name === 'string');
  const seen = new Set();
  for (const cam of cams) {
    seen.add(cam.name);
    let v = views.get(cam.name);
    if (!v) {
      v = addView(cam);
      v.update(cam);
      v.start();
    } else {
      v.update(cam);
    }
    renderActions(v);
  }
  views.forEach((v, name) => {
    if (!seen.has(name)) { v.destroy(); views.delete(name); }
  });
  layoutGroups(cams);
  $('#empty').hidden = views.size > 0;
}

async function apiLoop() {
  for (;;) {
    const started = now();
    await refreshCameras();
    renderSummary();
    await sleep(Math.max(200, API_REFRESH_MS - (now() - started)));
  }
}

setInterval(() => {
  views.forEach((v) => {
    if (v.ticking) return; // a slow getStats() must not pile up ticks
    v.ticking = true;
    v.tick().catch((e) => console.warn('vigil tick', e)).finally(() => {
      v.ticking = false;
      $('.act-snapshot', v.el).disabled = v.status !== 'live';
    });
  });
  renderSummary();
}, TICK_MS);

window.addEventListener('pagehide', () => {
  views.forEach((v) => {
    if (v.location) fetch(v.location, { method: 'DELETE', keepalive: true }).catch(() => {});
    v.location = null;
    if (v.pc) try { v.pc.close(); } catch (_) { /* ignore */ }
  });
});

// Exposed for tests and debugging.
window.vigil = { views, vigilCaptureTs, latencyMethod };

admin = await whoAmI();
apiLoop();
