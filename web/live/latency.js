// Glass-to-glass latency of live video, for the live page and the kiosk.
//
// Every H.264 access unit vigil sends carries an SEI user_data_unregistered message,
// UUID = ASCII "vigil.capture.ts", followed by the capture wall-clock time as a big-endian
// u64 of microseconds since the Unix epoch (docs/segment-format.md). An encoded-frame
// transform (RTCRtpScriptTransform in a worker, or Chromium's createEncodedStreams) reads it
// from each received frame, passes the frame on unchanged, and the tile compares it with this
// browser's clock at the moment the frame is displayed (requestVideoFrameCallback) or, failing
// that, at the moment it arrived.

export const LATENCY_TOOLTIP =
  'Glass-to-glass latency: from the capture time the server stamps into every frame ' +
  '(H.264 SEI) to the moment this browser shows the frame. It compares the server\'s ' +
  'clock with this computer\'s clock: when the browser runs on another machine, any ' +
  'clock skew between the two is included (keep both synced with NTP).';

// SEI parsing (also shipped to the worker as source text: keep it self-contained).
export function vigilCaptureTs(buf) {
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

export function frameRtpTimestamp(frame) {
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
function chooseMethod() {
  const forced = new URLSearchParams(window.location.search).get('latency');
  if (HAS_SCRIPT_TRANSFORM && (!forced || forced === 'script')) {
    try { getWorker(); return 'script'; } catch (_) { /* fall through */ }
  }
  if (HAS_ENCODED_STREAMS && (!forced || forced === 'streams')) return 'streams';
  return null;
}
export const latencyMethod = chooseMethod();

// Whether a peer connection needs `encodedInsertableStreams` for this method.
export const needsEncodedStreams = latencyMethod === 'streams';

// Reads capture times from `receiver`'s frames into `onSample({ts, rtp, arrival})`, under
// `routeId`. Returns a function that stops it.
export function attachLatency(receiver, routeId, onSample) {
  if (!latencyMethod) return () => {};
  try {
    if (latencyMethod === 'script') {
      workerRoutes.set(routeId, onSample);
      receiver.transform = new RTCRtpScriptTransform(getWorker(), { id: routeId });
    } else {
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
  return () => workerRoutes.delete(routeId);
}
