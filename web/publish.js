// vigil publish page (/publish/{camera}): this device's camera (and microphone) becomes a
// vigil camera over WHIP (RFC 9725). getUserMedia → RTCPeerConnection (sendonly, H.264
// preferred) → POST /whip/{camera} with `Authorization: Bearer <publish_token>`; the token
// is asked for once and kept in this browser (localStorage, per camera). DELETE on stop or
// when the page goes away. Reconnects by itself if the connection drops.
//
// For tests, window.vigilPublish = {state, framesSent, width, height, error}.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const camera = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
  const tokenKey = 'vigil.publishToken.' + camera;
  const RETRY_MS = 3000;
  const status = (window.vigilPublish = { state: 'idle', framesSent: 0, width: 0, height: 0, error: null });

  let pc = null;
  let stream = null;
  let sessionUrl = null;
  let wanted = false;
  let statsTimer = null;
  let retryTimer = null;

  $('cam-name').textContent = camera || '(no camera in URL)';
  $('nav-publish').href = location.pathname;
  document.title = 'vigil · publish ' + camera;
  const saved = localStorage.getItem(tokenKey);
  if (saved) $('token').value = saved;

  function notice(text) {
    const n = $('notice');
    n.textContent = text || '';
    n.hidden = !text;
  }

  function setState(state, message) {
    status.state = state;
    const badge = $('state');
    const label = { idle: 'offline', starting: 'starting', live: 'running', retrying: 'restarting', failed: 'failed' }[state] || state;
    badge.textContent = state === 'live' ? 'publishing' : label;
    badge.dataset.state = label;
    $('live-pill').hidden = state !== 'live';
    $('start').hidden = wanted;
    $('stop').hidden = !wanted;
    $('token').disabled = wanted;
    if (message !== undefined) {
      $('screen-msg-text').textContent = message;
      $('screen-msg').hidden = !message;
    }
  }

  async function listDevices() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      const sel = $('device');
      const current = sel.value;
      sel.innerHTML = '<option value="">default</option>';
      for (const d of devices.filter((d) => d.kind === 'videoinput')) {
        const o = document.createElement('option');
        o.value = d.deviceId;
        o.textContent = d.label || 'camera ' + (sel.length);
        sel.appendChild(o);
      }
      sel.value = current;
    } catch (_) { /* no device list: keep the default */ }
  }

  async function openCamera() {
    const h = Number($('quality').value);
    const video = { height: { ideal: h }, width: { ideal: Math.round((h * 16) / 9) }, frameRate: { ideal: 30 } };
    if ($('device').value) video.deviceId = { exact: $('device').value };
    const s = await navigator.mediaDevices.getUserMedia({ video, audio: $('audio').checked });
    $('preview').srcObject = s;
    const settings = s.getVideoTracks()[0]?.getSettings() || {};
    status.width = settings.width || 0;
    status.height = settings.height || 0;
    listDevices();
    return s;
  }

  function preferH264(transceiver) {
    if (!RTCRtpSender.getCapabilities) return;
    const codecs = RTCRtpSender.getCapabilities('video')?.codecs || [];
    const h264 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264');
    if (!h264.length) throw new Error('this browser cannot send H.264, which vigil records');
    // Constrained baseline first: every decoder plays it.
    h264.sort((a, b) => (/42e01f/.test(b.sdpFmtpLine || '') ? 1 : 0) - (/42e01f/.test(a.sdpFmtpLine || '') ? 1 : 0));
    transceiver.setCodecPreferences(h264);
  }

  function waitIceGathering(peer, maxMs) {
    if (peer.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { peer.removeEventListener('icegatheringstatechange', check); resolve(); };
      const check = () => { if (peer.iceGatheringState === 'complete') done(); };
      peer.addEventListener('icegatheringstatechange', check);
      setTimeout(done, maxMs);
    });
  }

  async function publish() {
    const token = $('token').value.trim();
    setState('starting', 'Opening the camera…');
    if (!stream) stream = await openCamera();
    pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const track of stream.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      if (track.kind === 'video') preferH264(t);
    }
    pc.addEventListener('connectionstatechange', () => {
      if (pc && (pc.connectionState === 'failed' || pc.connectionState === 'closed')) retry('connection lost');
      if (pc && pc.connectionState === 'connected') setState('live', '');
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc, 2000);
    setState('starting', 'Connecting to vigil…');
    const res = await fetch('/whip/' + encodeURIComponent(camera), {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + token },
      body: pc.localDescription.sdp,
    });
    const body = await res.text();
    if (res.status !== 201) {
      const err = new Error(body.trim() || 'HTTP ' + res.status);
      err.status = res.status;
      throw err;
    }
    localStorage.setItem(tokenKey, token);
    sessionUrl = new URL(res.headers.get('Location'), location.href).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    startStats();
  }

  function startStats() {
    clearInterval(statsTimer);
    let last = null;
    statsTimer = setInterval(async () => {
      if (!pc) return;
      const report = await pc.getStats();
      report.forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'video') {
          status.framesSent = r.framesEncoded || r.framesSent || 0;
          const now = r.timestamp;
          let kbps = 0;
          if (last) kbps = ((r.bytesSent - last.bytes) * 8) / (now - last.t);
          last = { t: now, bytes: r.bytesSent };
          status.width = r.frameWidth || status.width;
          status.height = r.frameHeight || status.height;
          $('stats').textContent = `${status.width}×${status.height} · ${Math.round(r.framesPerSecond || 0)} fps · ` +
            `${Math.round(kbps)} kbit/s · ${r.encoderImplementation || ''} · ${status.framesSent} frames`;
        }
      });
    }, 1000);
  }

  function teardown() {
    clearInterval(statsTimer);
    if (sessionUrl) {
      fetch(sessionUrl, { method: 'DELETE', keepalive: true, headers: { Authorization: 'Bearer ' + $('token').value.trim() } }).catch(() => {});
    }
    sessionUrl = null;
    if (pc) { const p = pc; pc = null; p.close(); }
  }

  function retry(why) {
    teardown();
    if (!wanted) return;
    clearTimeout(retryTimer);
    setState('retrying', `Reconnecting (${why})…`);
    retryTimer = setTimeout(start, RETRY_MS);
  }

  async function start() {
    wanted = true;
    status.error = null;
    notice('');
    try {
      await publish();
    } catch (e) {
      teardown();
      status.error = String(e.message || e);
      if (e.status === 401 || e.status === 404 || e.status === 406 || e.name === 'NotAllowedError' || e.name === 'NotFoundError') {
        // Nothing a retry fixes: a wrong token, a camera that does not take publishers, no camera.
        wanted = false;
        if (e.status === 401) localStorage.removeItem(tokenKey);
        setState('failed', 'Not publishing.');
        notice((e.status ? e.status + ': ' : '') + status.error);
      } else {
        notice(status.error);
        retry(e.status === 409 ? 'another publisher is live' : 'error');
      }
    }
  }

  function stop() {
    wanted = false;
    clearTimeout(retryTimer);
    teardown();
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; $('preview').srcObject = null; }
    setState('idle', "This device's camera becomes this vigil camera.");
    $('stats').textContent = '';
  }

  $('form').addEventListener('submit', (ev) => { ev.preventDefault(); if (!wanted) start(); });
  $('stop').addEventListener('click', stop);
  $('forget').addEventListener('click', () => { localStorage.removeItem(tokenKey); $('token').value = ''; });
  window.addEventListener('pagehide', teardown);
  if (!camera) notice('No camera in the URL: open /publish/<camera name>.');
  else if (!window.RTCPeerConnection || !navigator.mediaDevices) notice('This browser cannot publish (no WebRTC or camera access; HTTPS is required except on localhost).');
  setState('idle');
})();
