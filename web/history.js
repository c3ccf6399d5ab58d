// vigil history page: a timeline of recorded runs per camera, playback through MSE
// (fMP4 fragments fetched ahead of the playhead), gap jumping, speeds, export.
//
// Plain script, no build step, no dependencies. Served by the server at /history.js.
//
// Media time: one fixed `base` (Unix ms) per camera session; every fragment is asked for
// with `&base=<base>`, so media time = (capture ms - base) / 1000 s and gaps between
// recordings stay gaps in the SourceBuffer. base = start of the UTC day of the first
// seek; a seek before it starts a new session.
//
// Operations (load, seek, play, fetch) run one at a time from a queue; each is logged
// in the "Operations" panel. For tests: window.vigilHistory = {state, currentWallMs,
// queueLength, log, runs, base, camera}.

(function () {
  'use strict';

  const MIN_SPAN = 5 * 60e3;
  const MAX_SPAN = 7 * 86400e3;
  const CHUNK_MS = 10e3;          // media fetched per request (× speed)
  const TICK_MS = 250;            // gap-jump / buffer-fill poll
  const REFRESH_MS = 5000;        // recordings re-query
  const TIP_DEBOUNCE_MS = 150;
  const LOG_MAX = 300;
  const SPEEDS = [1, 2, 4, 8, 16];

  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const canvas = $('timeline');
  const ctx = canvas.getContext('2d');
  const params = new URLSearchParams(location.search);
  const HAS_MSE = typeof window.MediaSource === 'function' && params.get('mse') !== '0';

  const S = {
    cameras: [],
    camera: null,
    runs: [],              // [{s, e}] Unix ms, sorted
    runsAt: 0,
    view: { start: Date.now() - 3600e3, span: 3600e3 },
    base: null,
    ms: null, sb: null, codec: null, sessionId: 0,
    fetchedUntil: null,    // wall ms up to which fragments are appended (ahead of playhead)
    wantPlay: false,
    speed: 1,
    state: 'idle',
    queue: [], running: null,
    log: [],
    sel: null,             // {a, b} export range, ms
    markIn: null,
    progressiveStart: null,
    hoverMs: null,
  };

  // ---------------------------------------------------------------------------
  // helpers

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function fmt(ms, withMs) {
    const d = new Date(ms);
    const s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? `${s}.${pad(d.getMilliseconds(), 3)}` : s;
  }
  function fmtDur(ms) {
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const camUrl = (p) => `/api/cameras/${encodeURIComponent(S.camera)}/${p}`;

  function setState(s) {
    if (S.state === s) return;
    S.state = s;
    const el = $('state');
    el.textContent = s;
    el.dataset.state = { playing: 'running', paused: 'offline', error: 'failed', waiting: 'restarting', loading: 'starting', seeking: 'starting' }[s] || 'unknown';
  }

  function log(text, cls) {
    const entry = { t: Date.now(), text };
    S.log.push(entry);
    if (S.log.length > LOG_MAX) S.log.splice(0, S.log.length - LOG_MAX);
    const li = document.createElement('li');
    li.textContent = `${fmt(entry.t, true).slice(11)}  ${text}`;
    if (cls) li.className = cls;
    const ul = $('log');
    ul.appendChild(li);
    while (ul.children.length > LOG_MAX) ul.removeChild(ul.firstChild);
    ul.scrollTop = ul.scrollHeight;
  }

  function notice(text) {
    const n = $('notice');
    n.textContent = text || '';
    n.hidden = !text;
  }

  function screenMsg(text) {
    const m = $('msg');
    m.hidden = !text;
    if (text) m.querySelector('.screen-msg-text').textContent = text;
  }

  class HttpError extends Error {
    constructor(status, text) { super(`HTTP ${status}: ${text.trim()}`); this.status = status; }
  }
  // Not (or no longer) logged in: to the login page, back here afterwards.
  function toLogin() {
    if (window.__vigilToLogin) return;
    window.__vigilToLogin = true;
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
  }
  async function get(url, kind) {
    const res = await fetch(url, { cache: 'no-store' });
    if (res.status === 401) toLogin();
    if (!res.ok) throw new HttpError(res.status, await res.text().catch(() => ''));
    if (kind === 'json') return res.json();
    if (kind === 'buf') return { buf: await res.arrayBuffer(), res };
    return res;
  }

  // ---------------------------------------------------------------------------
  // recordings

  async function loadRuns() {
    if (!S.camera) return;
    const now = Date.now();
    const start = Math.max(S.view.start - S.view.span, now - 8 * 86400e3);
    const end = Math.max(now, S.view.start + 2 * S.view.span);
    // Also cover the playhead's neighbourhood.
    const cw = currentWallMs();
    const qs = Math.min(start, cw != null ? cw - 3600e3 : start);
    const cam = S.camera;
    const data = await get(camUrl(`recordings?start=${Math.floor(qs)}&end=${Math.ceil(end)}`), 'json');
    if (cam !== S.camera) return;
    const runs = (Array.isArray(data) ? data : data.runs || []).map((r) => ({ s: r.start_ms, e: r.end_ms }))
      .filter((r) => Number.isFinite(r.s) && Number.isFinite(r.e)).sort((a, b) => a.s - b.s);
    S.runs = runs;
    S.runsAt = Date.now();
    draw();
  }

  // The run containing t, or the first one after it: {run, t} with t moved into it; null if none.
  // (Run starts are whole ms truncated from µs, so t may name a time just before the run's
  // first frame: the server then starts at that run's first keyframe, never in the run before.)
  function snapToRun(t) {
    for (const r of S.runs) {
      if (t < r.e - 50) return { run: r, t: Math.max(t, r.s) };
    }
    return null;
  }
  const runAt = (t) => S.runs.find((r) => t >= r.s && t < r.e) || null;
  const lastRunIsOpen = () => S.runs.length && Date.now() - S.runs[S.runs.length - 1].e < 5000;

  // ---------------------------------------------------------------------------
  // operation queue

  function enqueue(name, fn, quiet) {
    S.queue.push({ name, fn, quiet, sid: S.sessionId });
    updateQ();
    pump();
  }
  function updateQ() { $('qlen').textContent = `queue: ${S.queue.length + (S.running ? 1 : 0)}`; }
  async function pump() {
    if (S.running) return;
    while (S.queue.length) {
      const op = S.queue.shift();
      S.running = op;
      updateQ();
      const t0 = performance.now();
      if (!op.quiet) log(`▶ ${op.name}`);
      try {
        await op.fn();
        if (!op.quiet) log(`✓ ${op.name} (${Math.round(performance.now() - t0)} ms)`, 'ok');
      } catch (e) {
        log(`✗ ${op.name}: ${e.message}`, 'err');
        console.warn('vigil history:', op.name, e);
      }
      S.running = null;
      updateQ();
    }
  }
  function clearQueue() {
    const n = S.queue.length;
    S.queue.length = 0;
    updateQ();
    log(`queue cleared (${n} dropped)`);
  }
  const queueIdle = () => !S.running && S.queue.length === 0;

  // ---------------------------------------------------------------------------
  // MSE session

  function waitUpdate(sb) {
    if (!sb.updating) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => { sb.removeEventListener('updateend', done); sb.removeEventListener('error', fail); resolve(); };
      const fail = () => { sb.removeEventListener('updateend', done); sb.removeEventListener('error', fail); reject(new Error('SourceBuffer error')); };
      sb.addEventListener('updateend', done);
      sb.addEventListener('error', fail);
    });
  }
  async function append(buf) {
    const sb = S.sb;
    await waitUpdate(sb);
    try {
      sb.appendBuffer(buf);
    } catch (e) {
      if (e.name !== 'QuotaExceededError') throw e;
      await evict(true);
      sb.appendBuffer(buf);
    }
    await waitUpdate(sb);
  }
  async function evict(hard) {
    const sb = S.sb;
    if (!sb || !sb.buffered.length) return;
    const keep = hard ? 10 : 60;
    const upto = video.currentTime - keep;
    if (sb.buffered.start(0) < upto - (hard ? 0 : 60)) {
      await waitUpdate(sb);
      sb.remove(0, upto);
      await waitUpdate(sb);
    }
  }

  // Opens a MediaSource with one SourceBuffer for the camera; base chosen from t.
  async function opLoad(t) {
    setState('loading');
    teardown();
    const sid = ++S.sessionId;
    S.base = Math.floor(t / 86400e3) * 86400e3;
    const snap = snapToRun(t) || (await loadRuns(), snapToRun(t));
    if (!snap) throw new Error('nothing recorded at or after this time');
    const { buf, res } = await get(camUrl(`fmp4/init.mp4?start=${Math.ceil(snap.t)}&end=${Math.floor(snap.t + CHUNK_MS)}`), 'buf');
    const codec = res.headers.get('X-Vigil-Codec') || 'avc1.42E01E';
    const mime = `video/mp4; codecs="${codec}"`;
    if (!MediaSource.isTypeSupported(mime)) throw new Error(`this browser cannot play ${mime}`);
    const ms = new MediaSource();
    S.ms = ms;
    video.removeAttribute('src');
    video.src = URL.createObjectURL(ms);
    await new Promise((resolve) => ms.addEventListener('sourceopen', resolve, { once: true }));
    URL.revokeObjectURL(video.src);
    if (sid !== S.sessionId) throw new Error('superseded');
    ms.duration = 8 * 86400; // media time spans the whole day (and more); gaps are gaps
    S.sb = ms.addSourceBuffer(mime);
    S.codec = codec;
    await append(buf);
    log(`  session: codec ${codec}, base ${new Date(S.base).toISOString()}`);
  }

  function teardown() {
    S.sb = null;
    S.fetchedUntil = null;
    if (S.ms) {
      try { if (S.ms.readyState === 'open') S.ms.endOfStream(); } catch (_) { /* ignore */ }
      S.ms = null;
    }
  }

  // Fetches and appends [t, t+len) (moved to the next run if t is in a gap). Follows 404s
  // (nothing there / deleted by retention) by re-querying the recordings and moving on.
  // Returns the wall time actually started at, or null when nothing is recorded from t on.
  async function fetchChunk(t, len) {
    for (let attempt = 0; attempt < 6; attempt++) {
      let snap = snapToRun(t);
      if (!snap && Date.now() - S.runsAt > 1000) { await loadRuns(); snap = snapToRun(t); }
      if (!snap) return null;
      const from = snap.t;
      const isLast = snap.run === S.runs[S.runs.length - 1];
      let to = Math.min(from + len, snap.run.e);
      if (isLast) to = Math.min(from + len, Math.max(snap.run.e, Date.now() - 300));
      if (to - from < 200) return null;
      try {
        const { buf } = await get(camUrl(`fmp4/media.m4s?start=${Math.ceil(from)}&end=${Math.floor(to)}&base=${S.base}`), 'buf');
        await append(buf);
        S.fetchedUntil = to;
        return from;
      } catch (e) {
        if (!(e instanceof HttpError) || e.status !== 404) throw e;
        log(`  404 at ${fmt(from)}: re-querying recordings`);
        await loadRuns();
        const again = snapToRun(from);
        t = again && again.t > from ? again.t : Math.min(from + len, to) + 1; // skip what is gone
        S.fetchedUntil = t;
      }
    }
    return null;
  }

  function seekTo(t) {
    if (!S.camera) return;
    t = Math.max(0, Math.round(t));
    if (!HAS_MSE) { progressive(t); return; }
    S.wantPlay = true;
    const needLoad = !S.sb || S.base == null || t < S.base;
    if (needLoad) enqueue(`load ${S.camera}`, () => opLoad(t));
    enqueue(`seek ${fmt(t)}`, async () => {
      if (!S.sb) throw new Error('no session');
      setState('seeking');
      const mt = (t - S.base) / 1000;
      if (isBuffered(mt)) { video.currentTime = mt; return; }
      // Drop what is buffered, start again at t.
      await waitUpdate(S.sb);
      if (S.sb.buffered.length) { S.sb.remove(0, Infinity); await waitUpdate(S.sb); }
      const at = await fetchChunk(t, CHUNK_MS * Math.max(1, S.speed));
      if (at == null) throw new Error(`nothing recorded at or after ${fmt(t)}`);
      video.currentTime = (at - S.base) / 1000;
      if (at > t + 1000) log(`  moved to the next recording at ${fmt(at)}`);
    });
    enqueue('play', opPlay);
  }

  async function opPlay() {
    S.wantPlay = true;
    video.playbackRate = S.speed;
    try { await video.play(); } catch (e) { if (e.name !== 'AbortError') throw e; }
    screenMsg('');
    setState('playing');
  }

  function isBuffered(mt) {
    const b = video.buffered;
    for (let i = 0; i < b.length; i++) if (mt >= b.start(i) && mt < b.end(i) - 0.1) return true;
    return false;
  }

  // Progressive MP4 (no MSE): one file from t, an hour at most.
  function progressive(t) {
    const snap = snapToRun(t);
    const from = snap ? snap.t : t;
    const to = Math.min(from + 3600e3, Math.max(Date.now(), from + 1000));
    S.progressiveStart = from;
    S.base = null;
    log(`progressive MP4 from ${fmt(from)}`);
    video.src = camUrl(`video.mp4?start=${Math.floor(from)}&end=${Math.floor(to)}`);
    video.playbackRate = S.speed;
    S.wantPlay = true;
    video.play().then(() => { setState('playing'); screenMsg(''); }).catch((e) => log(`✗ play: ${e.message}`, 'err'));
  }

  function currentWallMs() {
    if (HAS_MSE) return S.base != null && S.sb ? S.base + video.currentTime * 1000 : null;
    return S.progressiveStart != null ? S.progressiveStart + video.currentTime * 1000 : null;
  }

  // ---------------------------------------------------------------------------
  // polling: buffer ahead, gap jumping, 404 recovery

  let lastCt = -1, stuckTicks = 0;
  let lastUserView = 0; // performance.now() of the last pan/zoom by the user
  function tick() {
    const cw = currentWallMs();
    $('clock').textContent = cw != null ? fmt(cw, true) : '—';
    // Keep the playhead in view while playing (unless the user just moved the view).
    if (cw != null && S.wantPlay && !drag && performance.now() - lastUserView > 4000 &&
        (cw < S.view.start || cw > S.view.start + S.view.span)) {
      S.view.start = cw - S.view.span * 0.25;
      viewChanged();
    }
    if (!HAS_MSE || !S.sb || !queueIdle()) { lastCt = video.currentTime; return; }
    const ct = video.currentTime;
    const advancing = ct !== lastCt;
    lastCt = ct;
    if (!S.wantPlay) { if (S.state !== 'paused' && video.paused) setState('paused'); return; }

    // Buffer ahead of the playhead.
    const ahead = CHUNK_MS * Math.max(1, S.speed);
    if (S.fetchedUntil == null || S.fetchedUntil - cw < ahead) {
      const from = S.fetchedUntil == null ? cw : S.fetchedUntil;
      const next = snapToRun(from);
      const isLast = next && next.run === S.runs[S.runs.length - 1];
      const avail = next ? (isLast ? Math.max(next.run.e, Date.now() - 300) : next.run.e) - next.t : 0;
      if (next && avail >= (isLast ? 1000 : 200)) {
        enqueue('fetch', async () => {
          const at = await fetchChunk(from, ahead);
          if (at == null && Date.now() - S.runsAt > REFRESH_MS) await loadRuns();
        }, true);
        return;
      }
      if (Date.now() - S.runsAt > 2000) loadRuns().catch(() => {});
    }

    // Gap jumping: stalled at the end of a buffered range, the next run starts later.
    const b = video.buffered;
    let inRange = -1;
    for (let i = 0; i < b.length; i++) if (ct >= b.start(i) - 0.05 && ct <= b.end(i) + 0.05) inRange = i;
    const atEnd = inRange < 0 || ct >= b.end(inRange) - 0.3;
    if (atEnd && !advancing) stuckTicks++; else stuckTicks = 0;
    if (atEnd && (stuckTicks >= 2 || inRange < 0)) {
      let nextStart = null;
      for (let i = 0; i < b.length; i++) if (b.start(i) > ct + 0.05) { nextStart = b.start(i); break; }
      if (nextStart != null) {
        const to = S.base + nextStart * 1000;
        enqueue(`gap jump → ${fmt(to)}`, async () => { video.currentTime = nextStart; if (video.paused) await opPlay(); });
        stuckTicks = 0;
        return;
      }
      const nr = snapToRun(cw + 50);
      if (nr && nr.t > cw + 500 && inRange >= 0) {
        enqueue(`gap jump → ${fmt(nr.t)}`, async () => {
          const at = await fetchChunk(nr.t, ahead);
          if (at != null) video.currentTime = (at - S.base) / 1000;
        });
        stuckTicks = 0;
        return;
      }
      if (stuckTicks > 4) setState(nr ? 'waiting' : 'live edge');
    } else if (advancing && !video.paused) {
      setState('playing');
    }
  }

  // FPS from getVideoPlaybackQuality deltas.
  let fpsPrev = null;
  function fpsTick() {
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const n = q ? q.totalVideoFrames : (video.webkitDecodedFrameCount || 0);
    const t = performance.now();
    if (fpsPrev) {
      const fps = ((n - fpsPrev.n) * 1000) / (t - fpsPrev.t);
      $('fps').textContent = fps >= 0 ? fps.toFixed(1) : '—';
    }
    fpsPrev = { n, t };
  }

  // ---------------------------------------------------------------------------
  // timeline

  const X = (t, w) => ((t - S.view.start) / S.view.span) * w;
  const T = (x, w) => S.view.start + (x / w) * S.view.span;

  function resize() {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(r.width * dpr));
    canvas.height = Math.max(1, Math.round(r.height * dpr));
    draw();
  }

  const STEPS = [1e3, 5e3, 10e3, 30e3, 60e3, 300e3, 600e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3];
  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.width / dpr, h = canvas.height / dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = '#10151b';
    ctx.fillRect(0, 0, w, h);
    const barY = 26, barH = 30;
    // gaps (the whole bar), then runs
    ctx.fillStyle = '#1d232c';
    ctx.fillRect(0, barY, w, barH);
    ctx.fillStyle = '#2f6fbf';
    for (const r of S.runs) {
      const x0 = X(r.s, w), x1 = X(r.e, w);
      if (x1 < 0 || x0 > w) continue;
      ctx.fillRect(Math.max(0, x0), barY, Math.max(1.5, Math.min(w, x1) - Math.max(0, x0)), barH);
    }
    // export selection
    const sel = S.sel;
    if (sel) {
      const x0 = X(Math.min(sel.a, sel.b), w), x1 = X(Math.max(sel.a, sel.b), w);
      ctx.fillStyle = 'rgba(245, 166, 35, 0.28)';
      ctx.fillRect(x0, 4, Math.max(1, x1 - x0), h - 8);
      ctx.fillStyle = '#f5a623';
      ctx.fillRect(x0, 4, 1.5, h - 8);
      ctx.fillRect(x1 - 1.5, 4, 1.5, h - 8);
    } else if (S.markIn != null) {
      ctx.fillStyle = '#f5a623';
      ctx.fillRect(X(S.markIn, w), 4, 2, h - 8);
    }
    // ticks
    const step = STEPS.find((s) => (s / S.view.span) * w >= 90) || 86400e3;
    const tz = new Date().getTimezoneOffset() * 60e3;
    ctx.font = '11px ui-monospace, Menlo, Consolas, monospace';
    ctx.textBaseline = 'top';
    for (let t = Math.ceil((S.view.start - tz) / step) * step + tz; t < S.view.start + S.view.span; t += step) {
      const x = Math.round(X(t, w)) + 0.5;
      ctx.fillStyle = '#2a323d';
      ctx.fillRect(x, barY - 4, 1, barH + 8);
      const d = new Date(t);
      let label = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
      if (step < 60e3) label += `:${pad(d.getSeconds())}`;
      if (d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0 || step >= 86400e3) label = `${d.getMonth() + 1}/${d.getDate()} ${label}`;
      ctx.fillStyle = '#8d97a5';
      ctx.fillText(label, x + 3, 6);
    }
    // now marker
    const xn = X(Date.now(), w);
    if (xn >= 0 && xn <= w) {
      ctx.fillStyle = '#ff5c5c';
      ctx.fillRect(xn - 1, barY - 8, 2, barH + 16);
      ctx.fillText('now', Math.min(xn + 3, w - 24), barY + barH + 10);
    }
    // playhead
    const cw = currentWallMs();
    if (cw != null) {
      const xp = X(cw, w);
      if (xp >= -2 && xp <= w + 2) {
        ctx.fillStyle = '#ffffff';
        ctx.fillRect(xp - 1, barY - 10, 2, barH + 20);
        ctx.beginPath();
        ctx.moveTo(xp - 5, barY - 12); ctx.lineTo(xp + 5, barY - 12); ctx.lineTo(xp, barY - 6); ctx.fill();
      }
    }
    // hover
    if (S.hoverMs != null) {
      ctx.fillStyle = 'rgba(255,255,255,0.35)';
      ctx.fillRect(X(S.hoverMs, w), barY, 1, barH);
    }
    // span
    ctx.fillStyle = '#8d97a5';
    ctx.textBaseline = 'bottom';
    ctx.fillText(`span ${fmtDur(S.view.span)}`, 4, h - 3);
  }

  function setSpan(span, anchorT, anchorFrac) {
    lastUserView = performance.now();
    span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, span));
    if (anchorT == null) { anchorT = S.view.start + S.view.span / 2; anchorFrac = 0.5; }
    S.view.span = span;
    S.view.start = anchorT - anchorFrac * span;
    viewChanged();
  }
  let viewTimer = null;
  function viewChanged() {
    draw();
    clearTimeout(viewTimer);
    viewTimer = setTimeout(() => loadRuns().catch((e) => log(`recordings: ${e.message}`, 'err')), 200);
  }

  // pointer: drag pans, shift+drag selects, click seeks; hover shows a thumbnail
  let drag = null;
  canvas.addEventListener('pointerdown', (e) => {
    const r = canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    drag = { x0: x, start0: S.view.start, moved: false, select: e.shiftKey, t0: T(x, r.width) };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener('pointermove', (e) => {
    const r = canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    const t = T(x, r.width);
    if (drag) {
      if (Math.abs(x - drag.x0) > 3) drag.moved = true;
      if (drag.moved && drag.select) { S.sel = { a: drag.t0, b: t }; updateExport(); draw(); }
      else if (drag.moved) { lastUserView = performance.now(); canvas.classList.add('panning'); S.view.start = drag.start0 - ((x - drag.x0) / r.width) * S.view.span; viewChanged(); }
    }
    hover(t, x);
  });
  canvas.addEventListener('pointerup', (e) => {
    const r = canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    canvas.classList.remove('panning');
    if (drag && !drag.moved) {
      const t = T(x, r.width);
      log(`click at ${fmt(t)}`);
      seekTo(t);
    }
    drag = null;
  });
  canvas.addEventListener('pointerleave', () => { S.hoverMs = null; $('tip').hidden = true; clearTimeout(tipTimer); draw(); });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    const f = Math.exp(Math.sign(e.deltaY) * Math.min(Math.abs(e.deltaY), 200) / 300);
    setSpan(S.view.span * f, T(x, r.width), x / r.width);
  }, { passive: false });

  // Hover thumbnails: thumbnail.jpg?t= answers with the thumbnail of the segment holding t
  // (its first keyframe, 320 px wide), cached by the browser (immutable).
  const thumbs = new Map(); // rounded second -> object URL
  let tipTimer = null;
  function hover(t, x) {
    S.hoverMs = t;
    draw();
    const tip = $('tip');
    tip.hidden = false;
    const wrap = tip.parentElement.getBoundingClientRect();
    tip.style.left = `${Math.max(4, Math.min(wrap.width - 210, x + 14 - 100))}px`;
    $('tiptext').textContent = fmt(t);
    const img = $('tipimg');
    const sec = Math.round(t / 1000);
    const inRun = runAt(t);
    if (!inRun) { img.hidden = true; $('tiptext').textContent = `${fmt(t)} · no recording`; return; }
    img.hidden = false;
    if (thumbs.has(sec)) { img.src = thumbs.get(sec); return; }
    clearTimeout(tipTimer);
    tipTimer = setTimeout(async () => {
      const cam = S.camera;
      try {
        const res = await fetch(camUrl(`thumbnail.jpg?t=${sec * 1000}`));
        if (!res.ok) throw new HttpError(res.status, await res.text().catch(() => ''));
        const url = URL.createObjectURL(await res.blob());
        if (thumbs.size > 200) { const [k, v] = thumbs.entries().next().value; URL.revokeObjectURL(v); thumbs.delete(k); }
        thumbs.set(sec, url);
        if (cam === S.camera && S.hoverMs != null && Math.round(S.hoverMs / 1000) === sec) img.src = url;
      } catch (_) { /* no thumbnail */ }
    }, TIP_DEBOUNCE_MS);
  }

  // ---------------------------------------------------------------------------
  // export

  function updateExport() {
    const el = $('export');
    const sel = S.sel;
    if (!sel || Math.abs(sel.b - sel.a) < 1000) { el.textContent = S.markIn != null ? `in: ${fmt(S.markIn)}` : 'shift+drag on the timeline to select a range'; return; }
    const a = Math.floor(Math.min(sel.a, sel.b)), b = Math.ceil(Math.max(sel.a, sel.b));
    el.textContent = '';
    if (b - a > 86400e3) { el.textContent = 'range longer than 24 h: select less'; return; }
    const link = document.createElement('a');
    link.href = camUrl(`video.mp4?start=${a}&end=${b}`);
    link.download = `${S.camera}-${new Date(a).toISOString().replace(/[:.]/g, '-')}.mp4`;
    link.id = 'export-link';
    link.textContent = `Download MP4 (${fmtDur(b - a)})`;
    el.append(link, ` ${fmt(a)} → ${fmt(b)} `, shareControls(link.getAttribute('href')));
  }

  // A signed link to the clip that opens without logging in until it expires
  // (POST /api/share, docs/auth.md).
  function shareControls(path) {
    const box = document.createElement('span');
    box.className = 'share';
    const ttl = document.createElement('select');
    ttl.id = 'share-ttl';
    ttl.className = 'hbtn';
    ttl.title = 'How long the shared link works';
    for (const [v, label] of [['1h', '1 hour'], ['24h', '1 day'], ['7d', '7 days']]) {
      const o = document.createElement('option');
      o.value = v; o.textContent = label; o.selected = v === '24h';
      ttl.appendChild(o);
    }
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.id = 'share-link';
    btn.className = 'hbtn';
    btn.textContent = 'Copy share link';
    btn.title = 'Copy a link that plays this clip without logging in, until it expires';
    const out = document.createElement('input');
    out.id = 'share-url';
    out.className = 'hbtn';
    out.readOnly = true;
    out.hidden = true;
    out.setAttribute('aria-label', 'Shared link');
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        const res = await fetch('/api/share', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ path, ttl: ttl.value }),
          cache: 'no-store',
        });
        const text = await res.text();
        if (res.status === 401) toLogin();
        if (!res.ok) throw new Error(text.trim().split('\n')[0] || `HTTP ${res.status}`);
        const j = JSON.parse(text);
        const url = new URL(j.path, location.origin).href;
        out.value = url;
        out.hidden = false;
        out.select();
        let copied = false;
        try { await navigator.clipboard.writeText(url); copied = true; } catch (_) { /* no clipboard: the link is shown */ }
        btn.textContent = copied ? 'Link copied' : 'Copy the link below';
        log(`share link, expires ${j.expires}${copied ? ', copied' : ''}`, 'ok');
      } catch (e) {
        btn.textContent = 'Share failed';
        log(`share: ${e.message}`, 'err');
      } finally {
        btn.disabled = false;
      }
    });
    box.append(ttl, ' ', btn, ' ', out);
    return box;
  }

  // ---------------------------------------------------------------------------
  // camera

  async function selectCamera(name) {
    if (S.camera === name) return;
    clearQueue();
    teardown();
    S.sessionId++;
    S.camera = name;
    S.base = null;
    S.runs = [];
    S.sel = null; S.markIn = null;
    S.wantPlay = false;
    video.removeAttribute('src'); video.load();
    for (const v of thumbs.values()) URL.revokeObjectURL(v);
    thumbs.clear();
    updateExport();
    setState('idle');
    screenMsg('Click the timeline to play from that time.');
    const u = new URL(location.href);
    u.searchParams.set('camera', name);
    history.replaceState(null, '', u);
    await loadRuns().catch((e) => log(`recordings: ${e.message}`, 'err'));
    const last = S.runs[S.runs.length - 1];
    $('summary').textContent = S.runs.length ? `${S.runs.length} recorded run${S.runs.length === 1 ? '' : 's'}, newest ends ${fmt(last.e)}` : 'nothing recorded yet';
    if (params.get('t')) seekTo(Number(params.get('t')));
  }

  async function init() {
    const sp = $('speeds');
    for (const s of SPEEDS) {
      const b = document.createElement('button');
      b.className = 'hbtn' + (s === 1 ? ' on' : '');
      b.type = 'button';
      b.textContent = `${s}×`;
      b.dataset.speed = s;
      b.addEventListener('click', () => setSpeed(s));
      sp.appendChild(b);
    }
    $('play').addEventListener('click', () => {
      if (video.paused) {
        if (!S.sb && HAS_MSE) { seekTo(S.runs.length ? S.runs[S.runs.length - 1].s : Date.now() - 60e3); return; }
        enqueue('play', opPlay);
      } else { S.wantPlay = false; video.pause(); setState('paused'); log('pause'); }
    });
    video.addEventListener('play', () => { $('play').textContent = 'Pause'; });
    video.addEventListener('pause', () => { $('play').textContent = 'Play'; });
    video.addEventListener('error', () => { const e = video.error; log(`✗ video error: ${e ? e.code + ' ' + e.message : '?'}`, 'err'); setState('error'); });
    document.querySelectorAll('[data-zoom]').forEach((b) => b.addEventListener('click', () => setSpan(S.view.span * (b.dataset.zoom === 'in' ? 0.5 : 2))));
    document.querySelectorAll('[data-span]').forEach((b) => b.addEventListener('click', () => {
      const cw = currentWallMs();
      const span = Number(b.dataset.span);
      if (cw != null) setSpan(span, cw, 0.5); else { S.view.span = span; S.view.start = Date.now() - span * 0.9; viewChanged(); }
    }));
    $('tonow').addEventListener('click', () => { lastUserView = performance.now(); S.view.start = Date.now() - S.view.span * 0.9; viewChanged(); });
    $('markin').addEventListener('click', () => { const cw = currentWallMs() ?? S.hoverMs; if (cw == null) return; S.markIn = cw; S.sel = null; updateExport(); draw(); });
    $('markout').addEventListener('click', () => { const cw = currentWallMs(); if (cw == null || S.markIn == null) return; S.sel = { a: S.markIn, b: cw }; updateExport(); draw(); });
    $('clearq').addEventListener('click', (e) => { e.preventDefault(); clearQueue(); });
    $('camera').addEventListener('change', (e) => selectCamera(e.target.value));
    window.addEventListener('resize', resize);
    resize();
    if (!HAS_MSE) log('MediaSource not available: progressive MP4 playback');

    try {
      S.cameras = (await get('/api/cameras', 'json')).map((c) => c.name);
    } catch (e) {
      notice(`Cannot list cameras: ${e.message}`);
      return;
    }
    const sel = $('camera');
    for (const n of S.cameras) { const o = document.createElement('option'); o.value = n; o.textContent = n; sel.appendChild(o); }
    if (!S.cameras.length) { notice('No cameras are configured.'); return; }
    const want = params.get('camera');
    const name = S.cameras.includes(want) ? want : S.cameras[0];
    sel.value = name;
    S.view = { span: 3600e3, start: Date.now() - 3600e3 * 0.9 };
    await selectCamera(name);
    setInterval(tick, TICK_MS);
    setInterval(fpsTick, 1000);
    setInterval(() => { if (queueIdle()) evict(false).catch(() => {}); }, 5000);
    setInterval(() => { if (Date.now() - S.runsAt > REFRESH_MS) loadRuns().catch(() => {}); }, REFRESH_MS);
    setInterval(draw, 500);
  }

  function setSpeed(s) {
    S.speed = s;
    video.playbackRate = s;
    document.querySelectorAll('[data-speed]').forEach((b) => b.classList.toggle('on', Number(b.dataset.speed) === s));
    log(`speed ${s}×`);
  }

  window.vigilHistory = {
    get state() { return S.state; },
    get currentWallMs() { return currentWallMs(); },
    get queueLength() { return S.queue.length + (S.running ? 1 : 0); },
    get log() { return S.log.map((e) => e.text); },
    get runs() { return S.runs.map((r) => ({ start_ms: r.s, end_ms: r.e })); },
    get base() { return S.base; },
    get camera() { return S.camera; },
    get mse() { return HAS_MSE; },
    seek: (ms) => seekTo(ms),
    setSpeed,
    clearQueue,
  };

  init();
})();
