// vigil live page: one tile per camera, each playing over WHEP (WebRTC), with
// per-tile status, resolution, fps, bitrate and glass-to-glass latency.
//
// Plain script, no build step, no dependencies. Served by the server at /live.js.
//
// Latency: every H.264 access unit vigil sends carries an SEI
// user_data_unregistered message, UUID = ASCII "vigil.capture.ts", followed by the
// capture wall-clock time as a big-endian u64 of microseconds since the Unix
// epoch (docs/segment-format.md). An encoded-frame transform (RTCRtpScriptTransform
// in a worker, or Chromium's createEncodedStreams) reads it from each received
// frame, passes the frame on unchanged, and the page compares it with this
// browser's clock at the moment the frame is displayed (requestVideoFrameCallback)
// or, failing that, at the moment it arrived.
//
// For tests, window.vigilStats[camera] = {framesDecoded, latencyMs, state,
// connected, status, reason, sessions, width, height, fps} is kept current.

(function () {
  'use strict';

  const API_REFRESH_MS = 2000;      // camera list / states
  const TICK_MS = 500;              // per-tile stats, stall detection
  const STALL_MS = 3000;            // no new frame for this long while running => reconnect
  const FIRST_FRAME_GRACE_MS = 2000; // extra time for the first frame after the answer
  const GATHER_MAX_MS = 1000;       // wait at most this long for ICE gathering
  const POST_TIMEOUT_MS = 8000;
  const RETRY_FIRST_MS = 1000;      // first retry after a failure
  const RETRY_MAX_MS = 2000;        // never wait longer than this to retry
  const LATENCY_WINDOW_MS = 1000;   // latency shown = median of the samples of the last second

  const LATENCY_TOOLTIP =
    'Glass-to-glass latency: from the capture time the server stamps into every frame ' +
    '(H.264 SEI) to the moment this browser shows the frame. It compares the server\'s ' +
    'clock with this computer\'s clock: when the browser runs on another machine, any ' +
    'clock skew between the two is included (keep both synced with NTP).';

  // ---------------------------------------------------------------------------
  // SEI parsing (also shipped to the worker as source text: keep it self-contained)

  function vigilCaptureTs(buf) {
    // Returns capture time in µs since the epoch, or null.
    // The UUID contains no zero bytes, so emulation-prevention bytes can never sit
    // inside it: search for it in the raw bytes, then read the 8 timestamp bytes
    // after it while dropping emulation-prevention bytes (00 00 03 -> 00 00).
    const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
    const U = [0x76, 0x69, 0x67, 0x69, 0x6c, 0x2e, 0x63, 0x61, 0x70, 0x74, 0x75, 0x72, 0x65, 0x2e, 0x74, 0x73];
    const n = b.length;
    for (let i = 0; i + 16 + 8 <= n; i++) {
      if (b[i] !== 0x76) continue;
      let k = 1;
      while (k < 16 && b[i + k] === U[k]) k++;
      if (k < 16) continue;
      let p = i + 16, zeros = 0, got = 0, hi = 0, lo = 0;
      while (got < 8 && p < n) {
        const v = b[p++];
        if (zeros >= 2 && v === 0x03) { zeros = 0; continue; }
        zeros = v === 0 ? zeros + 1 : 0;
        if (got < 4) hi = hi * 256 + v; else lo = lo * 256 + v;
        got++;
      }
      if (got < 8) return null;
      const ts = hi * 4294967296 + lo;
      // Sanity: between 2001 and 2100.
      if (ts < 978307200e6 || ts > 4102444800e6) continue;
      return ts;
    }
    return null;
  }

  function frameRtpTimestamp(frame) {
    try {
      const md = frame.getMetadata ? frame.getMetadata() : null;
      if (md && typeof md.rtpTimestamp === 'number') return md.rtpTimestamp;
    } catch (_) { /* ignore */ }
    return typeof frame.timestamp === 'number' ? frame.timestamp : null;
  }

  // Body of the RTCRtpScriptTransform worker. Every frame is passed on unchanged.
  function workerMain() {
    self.onrtctransform = (event) => {
      const t = event.transformer;
      const id = t.options && t.options.id;
      t.readable.pipeThrough(new TransformStream({
        transform(frame, controller) {
          try {
            const ts = vigilCaptureTs(frame.data);
            if (ts !== null) {
              self.postMessage({ id, ts, rtp: frameRtpTimestamp(frame), arrival: Date.now() * 1000 });
            }
          } catch (_) { /* never break the media path */ }
          controller.enqueue(frame);
        },
      })).pipeTo(t.writable).catch(() => {});
    };
  }

  const HAS_SCRIPT_TRANSFORM = typeof window.RTCRtpScriptTransform === 'function';
  const HAS_ENCODED_STREAMS = typeof window.RTCRtpReceiver === 'function' &&
    typeof RTCRtpReceiver.prototype.createEncodedStreams === 'function';

  let transformWorker = null;       // shared by every tile
  const workerRoutes = new Map();   // id -> callback
  function getWorker() {
    if (transformWorker) return transformWorker;
    const src = vigilCaptureTs.toString() + '\n' + frameRtpTimestamp.toString() + '\n(' + workerMain.toString() + ')();\n';
    const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
    transformWorker = new Worker(url, { name: 'vigil-latency' });
    transformWorker.onmessage = (ev) => {
      const cb = workerRoutes.get(ev.data && ev.data.id);
      if (cb) cb(ev.data);
    };
    return transformWorker;
  }

  // Which latency method this page uses: 'script' | 'streams' | null (hidden).
  // ?latency=streams|script|off forces a method (debugging, tests).
  const forced = new URLSearchParams(window.location.search).get('latency');
  let latencyMethod = null;
  if (HAS_SCRIPT_TRANSFORM && (!forced || forced === 'script')) {
    try { getWorker(); latencyMethod = 'script'; } catch (_) { latencyMethod = null; }
  }
  if (!latencyMethod && HAS_ENCODED_STREAMS && (!forced || forced === 'streams')) latencyMethod = 'streams';

  // ---------------------------------------------------------------------------
  // Helpers

  const $ = (sel, root = document) => root.querySelector(sel);
  const now = () => performance.now();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

  // ---------------------------------------------------------------------------
  // Per-camera view

  window.vigilStats = {};
  let apiReachable = true;

  class CameraView {
    constructor(cam) {
      this.name = cam.name;
      this.cam = cam;
      const tpl = $('#tile-template').content.firstElementChild.cloneNode(true);
      this.el = tpl;
      this.el.dataset.camera = cam.name;
      this.video = $('video', tpl);
      this.video.setAttribute('aria-label', 'Live video of ' + cam.name);
      $('.cam-name', tpl).textContent = cam.name;
      $('.latency-field', tpl).title = LATENCY_TOOLTIP;
      if (!latencyMethod) $('.latency-field', tpl).hidden = true;
      $('.fullscreen', tpl).addEventListener('click', () => this.fullscreen());
      // Sound (WHIP cameras relay the publisher's microphone): muted until the user asks,
      // as browsers only autoplay muted video.
      this.soundBtn = $('.sound', tpl);
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

    // ---- state from /api/cameras
    update(cam) {
      const prev = this.cam.state;
      this.cam = cam;
      const badge = $('.badge.state', this.el);
      badge.textContent = cam.state || 'unknown';
      badge.dataset.state = cam.state || 'unknown';
      const extra = [];
      if (cam.viewers != null) extra.push(plural(cam.viewers, 'viewer'));
      if (cam.restarts) extra.push(plural(cam.restarts, 'restart'));
      if (cam.video_width && cam.video_height && cam.video_fps) extra.push(`source ${cam.video_width}×${cam.video_height} @ ${Number(cam.video_fps).toFixed(0)} fps`);
      const ex = $('.cam-extra', this.el);
      ex.textContent = extra.join(' · ');
      let err = $('.cam-error', this.el);
      if (cam.last_error && cam.state !== 'running') {
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
      workerRoutes.delete(this.routeId);
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
      if (apiReachable && this.cam.state && this.cam.state !== 'running') {
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
        if (latencyMethod === 'streams') config.encodedInsertableStreams = true;
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
      if (!latencyMethod) return;
      this.routeId = this.name + '#' + gen;
      const onSample = (m) => {
        if (gen !== this.gen) return;
        this.onCaptureTs(m.ts, m.rtp, m.arrival);
      };
      try {
        if (latencyMethod === 'script') {
          workerRoutes.set(this.routeId, onSample);
          receiver.transform = new RTCRtpScriptTransform(getWorker(), { id: this.routeId });
        } else if (latencyMethod === 'streams') {
          const { readable, writable } = receiver.createEncodedStreams();
          readable.pipeThrough(new TransformStream({
            transform(frame, controller) {
              try {
                const ts = vigilCaptureTs(frame.data);
                if (ts !== null) onSample({ ts, rtp: frameRtpTimestamp(frame), arrival: Date.now() * 1000 });
              } catch (_) { /* never break the media path */ }
              controller.enqueue(frame);
            },
          })).pipeTo(writable).catch(() => {});
        }
      } catch (e) {
        console.warn('vigil: latency transform unavailable:', e);
      }
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
        const camRunning = !apiReachable || this.cam.state === 'running' || this.cam.state == null;
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
      const el = $('.status', this.el);
      el.dataset.status = status;
      let text = status;
      if ((status === 'reconnecting' || status === 'waiting') && reason) text += ': ' + reason;
      $('.status-text', this.el).textContent = text;
      el.title = text;
      const live = status === 'live';
      $('.live-pill', this.el).hidden = !live;
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
        state: apiReachable ? (this.cam.state || null) : 'offline',
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
      const el = $('.screen', this.el);
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

  // ---------------------------------------------------------------------------
  // Camera list

  const views = new Map();

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

  // Not (or no longer) logged in: to the login page, back here afterwards.
  function toLogin() {
    if (window.__vigilToLogin) return;
    window.__vigilToLogin = true;
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
  }

  async function refreshCameras() {
    let cams;
    try {
      const res = await fetch('/api/cameras', { cache: 'no-store', signal: AbortSignal.timeout ? AbortSignal.timeout(1800) : undefined });
      if (res.status === 401) { toLogin(); return; }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      cams = await res.json();
      if (!Array.isArray(cams)) throw new Error('unexpected response');
    } catch (e) {
      apiReachable = false;
      showNotice('Cannot reach the vigil server (' + (e.message || e) + '). Retrying…');
      views.forEach((v) => {
        const badge = $('.badge.state', v.el);
        badge.textContent = 'offline';
        badge.dataset.state = 'offline';
      });
      return;
    }
    apiReachable = true;
    showNotice('');
    const grid = $('#grid');
    const seen = new Set();
    for (const cam of cams) {
      if (!cam || typeof cam.name !== 'string') continue;
      seen.add(cam.name);
      let v = views.get(cam.name);
      if (!v) {
        v = new CameraView(cam);
        views.set(cam.name, v);
        grid.appendChild(v.el);
        v.update(cam);
        v.start();
      } else {
        v.update(cam);
      }
    }
    views.forEach((v, name) => {
      if (!seen.has(name)) { v.destroy(); views.delete(name); }
    });
    $('#empty').hidden = views.size > 0;
    grid.dataset.count = String(views.size);
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
      v.tick().catch((e) => console.warn('vigil tick', e)).finally(() => { v.ticking = false; });
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

  apiLoop();
})();
