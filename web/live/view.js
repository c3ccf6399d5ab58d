// One camera playing live over WHEP (WebRTC): connects, retries forever with a short
// backoff, detects stalls, and shows status, resolution, fps, bitrate and glass-to-glass
// latency in its tile. Used by the live page (page.js) and the kiosk (kiosk.js); a tile
// without the stats elements (the kiosk's) just plays.
//
// For tests, window.vigilStats[camera] = {framesDecoded, latencyMs, state, connected,
// status, reason, sessions, width, height, fps} is kept current.

import { LATENCY_TOOLTIP, attachLatency, latencyMethod, needsEncodedStreams } from './latency.js';

const TICK_MS = 500;              // per-tile stats, stall detection
const STALL_MS = 3000;            // no new frame for this long while running => reconnect
const FIRST_FRAME_GRACE_MS = 2000; // extra time for the first frame after the answer
const GATHER_MAX_MS = 1000;       // wait at most this long for ICE gathering
const POST_TIMEOUT_MS = 8000;
const RETRY_FIRST_MS = 1000;      // first retry after a failure
const RETRY_MAX_MS = 2000;        // never wait longer than this to retry
const LATENCY_WINDOW_MS = 1000;   // latency shown = median of the samples of the last second

export { TICK_MS };

// Whether the server's API answered last time (set by the page's camera list loop).
export const server = { reachable: true };

// Not (or no longer) logged in: to the login page, back here afterwards.
export function toLogin() {
  if (window.__vigilToLogin) return;
  window.__vigilToLogin = true;
  location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
}

window.vigilStats = window.vigilStats || {};

export const $ = (sel, root = document) => root.querySelector(sel);
export const now = () => performance.now();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function waitIceGathering(pc, maxMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', onCand);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const onCand = (ev) => { if (!ev.candidate) done(); };
    const timer = setTimeout(done, maxMs);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', onCand);
  });
}

function preferH264(transceiver) {
  if (typeof transceiver.setCodecPreferences !== 'function') return;
  const caps = window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video');
  if (!caps || !caps.codecs) return;
  const isH264 = (c) => c.mimeType.toLowerCase() === 'video/h264';
  const score = (c) => {
    const f = c.sdpFmtpLine || '';
    let s = 0;
    if (/packetization-mode=1/.test(f)) s += 2;
    if (/profile-level-id=42e0/i.test(f)) s += 1; // constrained baseline first
    return -s;
  };
  const h264 = caps.codecs.filter(isH264).sort((a, b) => score(a) - score(b));
  if (!h264.length) return;
  const rest = caps.codecs.filter((c) => !isH264(c));
  try { transceiver.setCodecPreferences(h264.concat(rest)); } catch (_) { /* keep defaults */ }
}

function fmtBitrate(kbps) {
  if (kbps == null || !isFinite(kbps)) return '—';
  if (kbps >= 1000) return (kbps / 1000).toFixed(kbps >= 10000 ? 0 : 1) + ' Mb/s';
  return Math.round(kbps) + ' kb/s';
}

function pushSample(list, v) {
  const t = now();
  list.push([t, v]);
  while (list.length && t - list[0][0] > LATENCY_WINDOW_MS) list.shift();
  if (list.length > 600) list.shift();
}

function windowMedian(list) {
  const t = now();
  while (list.length && t - list[0][0] > LATENCY_WINDOW_MS) list.shift();
  if (!list.length) return null;
  const vals = list.map((x) => x[1]).sort((a, b) => a - b);
  const m = vals.length >> 1;
  return vals.length % 2 ? vals[m] : (vals[m - 1] + vals[m]) / 2;
}

export function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

export class CameraView {
  // `template`: the <template> whose first element is the tile.
  constructor(cam, template) {
    this.name = cam.name;
    this.cam = cam;
    const tpl = template.content.firstElementChild.cloneNode(true);
    this.el = tpl;
    this.el.dataset.camera = cam.name;
    this.video = $('video', tpl);
    this.video.setAttribute('aria-label', 'Live video of ' + (cam.title || cam.name));
    this.showTitle();
    const lat = $('.latency-field', tpl);
    if (lat) {
      lat.title = LATENCY_TOOLTIP;
      if (!latencyMethod) lat.hidden = true;
    }
    const fs = $('.fullscreen', tpl);
    if (fs) fs.addEventListener('click', () => this.fullscreen());
    // Sound (WHIP cameras relay the publisher's microphone): muted until the user asks,
    // as browsers only autoplay muted video.
    this.soundBtn = $('.sound', tpl) || document.createElement('button');
    this.soundBtn.setAttribute('aria-pressed', 'false');
    this.soundBtn.addEventListener('click', () => {
      this.video.muted = !this.video.muted;
      this.soundBtn.setAttribute('aria-pressed', String(!this.video.muted));
      this.soundBtn.title = this.video.muted ? 'Sound on' : 'Sound off';
    });
    this.video.addEventListener('dblclick', () => this.fullscreen());

    this.pc = null;
    this.receiver = null;
    this.location = null;
    this.gen = 0;
    this.retryTimer = null;
    this.failures = 0;          // consecutive failures, for the retry delay
    this.sessions = 0;          // sessions that reached 'connected'
    this.status = 'connecting';
    this.reason = '';
    this.answered = false;
    this.pcConnected = false;

    this.framesBase = 0;        // frames decoded by earlier sessions
    this.sessionFrames = 0;     // frames decoded by the current session
    this.lastFrames = -1;
    this.lastProgressAt = 0;
    this.lastStatsAt = 0;
    this.lastBytes = null;
    this.lastStatsTs = 0;
    this.fps = null;
    this.kbps = null;
    this.qualityFrames = null;

    this.rtpToTs = new Map();
    this.latArrival = [];       // [time, µs] samples: capture -> encoded frame arrives
    this.latDisplay = [];       // [time, µs] samples: capture -> frame presented
    this.frameCbActive = false;

    this.publish();
  }

  // The camera's title (its name when it has none), with the name as a tooltip.
  showTitle() {
    const el = $('.cam-name', this.el);
    el.textContent = this.cam.title || this.cam.name;
    el.title = this.cam.title ? this.cam.name : '';
  }

  // ---- state from /api/cameras
  update(cam) {
    const prev = this.cam.state;
    this.cam = cam;
    this.showTitle();
    this.el.dataset.state = cam.state || 'unknown';
    const badge = $('.badge.state', this.el);
    if (badge) {
      badge.textContent = cam.state || 'unknown';
      badge.dataset.state = cam.state || 'unknown';
    }
    const extra = [];
    if (cam.viewers != null) extra.push(plural(cam.viewers, 'viewer'));
    if (cam.restarts) extra.push(plural(cam.restarts, 'restart'));
    if (cam.video_width && cam.video_height && cam.video_fps) extra.push(`source ${cam.video_width}×${cam.video_height} @ ${Number(cam.video_fps).toFixed(0)} fps`);
    const ex = $('.cam-extra', this.el);
    if (ex) ex.textContent = extra.join(' · ');
    let err = $('.cam-error', this.el);
    if (ex && cam.last_error && cam.state !== 'running') {
      if (!err) { err = document.createElement('div'); err.className = 'cam-error'; ex.after(err); }
      err.textContent = cam.last_error;
      err.title = cam.last_error;
    } else if (err) {
      err.remove();
    }
    // A camera that just came (back) up: do not wait for the retry timer.
    if (prev !== 'running' && cam.state === 'running' && this.retryTimer) this.connectNow();
    this.publish();
  }

  // ---- connection lifecycle
  start() { this.connect(); }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.connect();
  }

  teardown() {
    if (this.pc) {
      try { this.pc.close(); } catch (_) { /* ignore */ }
    }
    if (this.location) {
      fetch(this.location, { method: 'DELETE', keepalive: true }).catch(() => {});
    }
    if (this.stopLatency) this.stopLatency();
    this.stopLatency = null;
    this.pc = null;
    this.receiver = null;
    this.location = null;
    this.answered = false;
    this.pcConnected = false;
    this.framesBase += this.sessionFrames;
    this.sessionFrames = 0;
    this.lastFrames = -1;
    this.lastBytes = null;
    this.lastStatsTs = 0;
    this.rtpToTs.clear();
  }

  fail(reason, gen) {
    if (gen !== undefined && gen !== this.gen) return; // stale session
    if (this.retryTimer) return;                         // already scheduled
    this.teardown();
    this.failures++;
    this.reason = reason;
    this.fps = null;
    this.kbps = null;
    if (server.reachable && this.cam.state && this.cam.state !== 'running') {
      // The server says why there is no video: show that rather than an HTTP error.
      this.setStatus('waiting', 'camera ' + this.cam.state);
    } else {
      this.setStatus('reconnecting', reason);
    }
    const delay = this.failures <= 1 ? RETRY_FIRST_MS : RETRY_MAX_MS;
    this.retryTimer = setTimeout(() => { this.retryTimer = null; this.connect(); }, delay);
  }

  async connect() {
    const gen = ++this.gen;
    this.teardown();
    this.setStatus(this.failures ? 'reconnecting' : 'connecting', this.reason);
    let pc;
    try {
      const config = { bundlePolicy: 'max-bundle' };
      if (needsEncodedStreams) config.encodedInsertableStreams = true;
      pc = new RTCPeerConnection(config);
    } catch (e) {
      this.fail('cannot create peer connection: ' + e.message, gen);
      return;
    }
    this.pc = pc;
    const tr = pc.addTransceiver('video', { direction: 'recvonly' });
    // Audio too: the server answers it for cameras that carry sound (WHIP publishers) and
    // rejects the section for the others.
    pc.addTransceiver('audio', { direction: 'recvonly' });
    this.receiver = tr.receiver;
    preferH264(tr);
    this.attachTransform(tr.receiver, gen);

    pc.ontrack = (ev) => {
      if (gen !== this.gen) return;
      if (ev.track.kind === 'audio') {
        const cur = this.video.srcObject;
        if (cur && cur.addTrack) cur.addTrack(ev.track); else this.video.srcObject = new MediaStream([ev.track]);
        this.soundBtn.hidden = false;
        return;
      }
      const stream = (ev.streams && ev.streams[0]) || new MediaStream([ev.track]);
      if (stream !== this.video.srcObject) {
        const prev = this.video.srcObject;
        if (prev && prev.getAudioTracks) prev.getAudioTracks().forEach((t) => { if (!stream.getTrackById(t.id)) stream.addTrack(t); });
      }
      this.video.srcObject = stream;
      const p = this.video.play();
      if (p && p.catch) p.catch(() => {});
      this.watchFrames();
    };
    pc.onconnectionstatechange = () => {
      if (gen !== this.gen) return;
      const s = pc.connectionState;
      if (s === 'connected') {
        this.pcConnected = true;
        this.sessions++;
        this.publish();
      } else if (s === 'failed' || s === 'disconnected' || s === 'closed') {
        this.fail('connection ' + s, gen);
      }
    };

    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitIceGathering(pc, GATHER_MAX_MS);
      if (gen !== this.gen) return;
      const url = '/whep/' + encodeURIComponent(this.name);
      let res;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'Content-Type': 'application/sdp' },
          body: pc.localDescription.sdp,
          signal: AbortSignal.timeout ? AbortSignal.timeout(POST_TIMEOUT_MS) : undefined,
        });
      } catch (e) {
        throw new Error('server unreachable');
      }
      const body = await res.text();
      if (res.status === 401) toLogin();
      if (res.status !== 201) {
        const line = body.trim().split('\n')[0].slice(0, 160);
        throw new Error('HTTP ' + res.status + (line ? ' ' + line : ''));
      }
      const loc = res.headers.get('Location');
      const sessionUrl = loc ? new URL(loc, res.url || window.location.href).href : null;
      if (gen !== this.gen) {
        if (sessionUrl) fetch(sessionUrl, { method: 'DELETE', keepalive: true }).catch(() => {});
        return;
      }
      this.location = sessionUrl;
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      if (gen !== this.gen) return;
      this.answered = true;
      this.lastProgressAt = now() + FIRST_FRAME_GRACE_MS;
    } catch (e) {
      this.fail(e && e.message ? e.message : String(e), gen);
    }
  }

  // ---- latency from the encoded frames
  attachTransform(receiver, gen) {
    this.stopLatency = attachLatency(receiver, this.name + '#' + gen, (m) => {
      if (gen !== this.gen) return;
      this.onCaptureTs(m.ts, m.rtp, m.arrival);
    });
  }

  onCaptureTs(ts, rtp, arrivalUs) {
    pushSample(this.latArrival, arrivalUs - ts);
    if (rtp != null) {
      this.rtpToTs.set(rtp, ts);
      if (this.rtpToTs.size > 240) {
        // Map iterates in insertion order: drop the oldest.
        const first = this.rtpToTs.keys().next().value;
        this.rtpToTs.delete(first);
      }
    }
  }

  watchFrames() {
    if (this.frameCbActive || typeof this.video.requestVideoFrameCallback !== 'function') return;
    this.frameCbActive = true;
    const cb = (_now, md) => {
      if (md && typeof md.rtpTimestamp === 'number') {
        const ts = this.rtpToTs.get(md.rtpTimestamp);
        if (ts !== undefined) {
          // Wall-clock time at which this frame is (expected to be) on screen.
          const shown = Date.now() * 1000 + ((md.expectedDisplayTime || _now) - performance.now()) * 1000;
          pushSample(this.latDisplay, shown - ts);
        }
      }
      this.video.requestVideoFrameCallback(cb);
    };
    this.video.requestVideoFrameCallback(cb);
  }

  // Prefer the time the frame is shown (true glass-to-glass); fall back to its arrival
  // where requestVideoFrameCallback gives no RTP timestamp.
  latencyMs() {
    const d = windowMedian(this.latDisplay);
    if (d != null) return d / 1000;
    const a = windowMedian(this.latArrival);
    return a != null ? a / 1000 : null;
  }

  // ---- periodic: stats, stall detection, UI
  async tick() {
    const pc = this.pc;
    const t = now();
    const q = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
    if (q) this.qualityFrames = q.totalVideoFrames;

    if (pc && this.receiver && t - this.lastStatsAt >= TICK_MS - 50) {
      this.lastStatsAt = t;
      const gen = this.gen;
      let inbound = null;
      try {
        const report = await this.receiver.getStats();
        report.forEach((s) => { if (s.type === 'inbound-rtp' && (s.kind === 'video' || s.mediaType === 'video')) inbound = s; });
      } catch (_) { /* closed meanwhile */ }
      if (gen !== this.gen) return;
      if (inbound) {
        const frames = inbound.framesDecoded || 0;
        if (this.lastFrames >= 0 && this.lastStatsTs) {
          const dt = (inbound.timestamp - this.lastStatsTs) / 1000;
          if (dt > 0) {
            this.fps = (frames - this.lastFrames) / dt;
            if (this.lastBytes != null) this.kbps = ((inbound.bytesReceived - this.lastBytes) * 8) / 1000 / dt;
          }
        } else if (inbound.framesPerSecond != null) {
          this.fps = inbound.framesPerSecond;
        }
        if (frames > this.lastFrames) {
          if (frames > 0) {
            this.lastProgressAt = t;
            this.failures = 0;
            this.reason = '';
          }
        }
        this.lastFrames = frames;
        this.lastBytes = inbound.bytesReceived;
        this.lastStatsTs = inbound.timestamp;
        this.sessionFrames = frames;
      }
    }

    // Status and stall detection.
    if (this.pc && this.answered && !this.retryTimer) {
      const flowing = this.sessionFrames > 0 && t - this.lastProgressAt < STALL_MS;
      const camRunning = !server.reachable || this.cam.state === 'running' || this.cam.state == null;
      if (flowing && this.pcConnected) {
        this.setStatus('live');
      } else if (t - this.lastProgressAt > STALL_MS) {
        if (camRunning) {
          this.fail(this.sessionFrames > 0 ? 'no frames for 3 s' : 'no video received');
        } else {
          this.setStatus('waiting', 'camera ' + this.cam.state);
        }
      }
    }
    this.render();
    this.publish();
  }

  setStatus(status, reason) {
    this.status = status;
    this.statusReason = reason || '';
    let text = status;
    if ((status === 'reconnecting' || status === 'waiting') && reason) text += ': ' + reason;
    const el = $('.status', this.el);
    if (el) {
      el.dataset.status = status;
      $('.status-text', this.el).textContent = text;
      el.title = text;
    }
    const live = status === 'live';
    const pill = $('.live-pill', this.el);
    if (pill) pill.hidden = !live;
    const msg = $('.screen-msg', this.el);
    msg.hidden = live;
    $('.spinner', this.el).hidden = status === 'waiting' && this.cam.state === 'failed';
    $('.screen-msg-text', this.el).textContent =
      status === 'connecting' ? 'Connecting…' :
      status === 'waiting' ? (this.cam.state === 'failed' ? 'Camera failed' : 'Waiting for camera…') :
      status === 'reconnecting' ? 'Reconnecting…' : '';
    this.el.dataset.status = status;
  }

  render() {
    if (!$('.v-res', this.el)) return; // a tile without stats (kiosk)
    const v = this.video;
    const live = this.status === 'live';
    $('.v-res', this.el).textContent = live && v.videoWidth ? v.videoWidth + '×' + v.videoHeight : '—';
    $('.v-fps', this.el).textContent = live && this.fps != null ? this.fps.toFixed(this.fps < 10 ? 1 : 0) : '—';
    $('.v-bitrate', this.el).textContent = live ? fmtBitrate(this.kbps) : '—';
    if (latencyMethod) {
      const ms = this.latencyMs();
      const dd = $('.v-latency', this.el);
      dd.textContent = live && ms != null ? Math.round(ms) + ' ms' : '—';
      dd.dataset.ms = ms != null ? ms.toFixed(1) : '';
    }
  }

  publish() {
    const ms = this.latencyMs();
    window.vigilStats[this.name] = {
      framesDecoded: this.framesBase + this.sessionFrames,
      latencyMs: ms != null ? Math.round(ms * 10) / 10 : null,
      state: server.reachable ? (this.cam.state || null) : 'offline',
      connected: this.status === 'live',
      status: this.status,
      reason: this.statusReason || '',
      sessions: this.sessions,
      width: this.video.videoWidth || 0,
      height: this.video.videoHeight || 0,
      fps: this.fps != null ? Math.round(this.fps * 10) / 10 : null,
      latencyMethod: latencyMethod,
    };
  }

  fullscreen() {
    const el = $('.screen', this.el) || this.el;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (el.requestFullscreen) el.requestFullscreen().catch(() => {});
  }

  destroy() {
    this.gen++;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown();
    this.video.srcObject = null;
    this.el.remove();
    delete window.vigilStats[this.name];
  }
}

