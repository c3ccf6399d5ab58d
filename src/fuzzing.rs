//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and for the corpus
//! regression test `tests/fuzz_corpus.rs` (stable, run by `cargo test`): one function per
//! target, taking the raw fuzz input, running it through the code a request or a segment
//! file reaches, and asserting invariants after each step. A panic here is a bug found, in
//! the code under test or in an invariant. Not an API: hidden from the docs.
//!
//! | target | what the bytes are | code under test |
//! | --- | --- | --- |
//! | `sdp_offer` | a WHEP/WHIP POST body | `signaling::sdp::check_offer` |
//! | `whep_offer` | a WHEP POST body | the offer check, then webrtc-rs `set_remote_description`, `create_answer`, `set_local_description` on a viewer's peer connection (the sans-IO core the async layer locks and calls) |
//! | `whip_offer` | a WHIP POST body | the offer check, then a publisher's receive-only webrtc-rs peer connection answering it, the answer's H.264 check, the answer as an sdpfrag, and the offer restated with new ICE credentials (an ICE restart PATCH) answered again |
//! | `sdpfrag` | a trickle PATCH body | `signaling::sdp::parse_fragment`, then webrtc-rs `add_remote_candidate` |
//! | `annexb` | segment bytes | NAL iteration, SEI, AU normalising and splitting, SPS/`avcC`, Annex-B → AVC |
//! | `idx` | a `.idx` file (after an 8-byte data length) | record decoding, the plausible prefix readers keep, recovery's end estimate, snapshot GOP choice |
//! | `mp4` | a description of hostile segments | the planner, the progressive MP4 and the fMP4 muxers over `.idx` records and bytes |
//! | `http_params` | query and header values | time parsing and ranges, byte ranges |

use crate::history::api::{MAX_TIME_US, MIN_TIME_US, format_time, parse_range, parse_time, time_range_at};
use crate::history::dump::dump;
use crate::history::h264::{ParamSets, annexb_to_avc, avc_size, parse_sps};
use crate::history::mp4::Mp4File;
use crate::history::plan::{MemSource, Plan, SegmentInput};
use crate::segment::annexb::{self, nal, nal_type, nal_units};
use crate::segment::idx::{self, FLAG_KEYFRAME, RECORD_LEN, Record};
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use std::path::PathBuf;
use std::time::Instant;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCSessionDescription, Registry};

/// A fuzz target: takes the raw input, panics on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus regression test.
pub const TARGETS: &[(&str, Target)] = &[
    ("sdp_offer", sdp_offer),
    ("whep_offer", whep_offer),
    ("whip_offer", whip_offer),
    ("sdpfrag", sdpfrag),
    ("annexb", annexb),
    ("idx", idx),
    ("mp4", mp4),
    ("http_params", http_params),
];

/// A recvonly H.264 offer in the shape browsers send (the seed of `whep_offer` and the
/// remote description `sdpfrag` trickles into).
pub const SEED_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\nm=video 9 UDP/TLS/RTP/SAVPF 102 103\r\n\
c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:fUzZ\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=ice-options:trickle\r\na=fingerprint:sha-256 \
4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3E:5D:49:6B:19:E5:7C:AB:3E:5D:49:6B\r\n\
a=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n";

/// x264 constrained baseline 640x360 (from `vigil capture`), and its PPS.
const SPS_BASELINE: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0xc0, 0x5a, 0x83, 0x03, 0x03, 0x52, 0x80, 0x00, 0x00, 0x03,
    0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8b, 0x17, 0x50,
];
const PPS_BASELINE: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
/// x264 high 1920x1080 (cropped from 1088), and a PPS.
const SPS_HIGH: &[u8] = &[
    0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x5a, 0x80, 0x80, 0x80, 0xa0, 0x00, 0x00,
    0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe3, 0x06, 0x32, 0xc0,
];
const PPS_HIGH: &[u8] = &[0x68, 0xeb, 0xec, 0xb2, 0x2c];

/// 2026-11-22T00:00:00Z.
const T0: i64 = 1_795_305_600_000_000;

/// Reads fields off the front of a fuzz input; past the end everything reads as zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let b = self.bytes(N);
        a[..b.len()].copy_from_slice(b);
        a
    }
    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.array())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.array())
    }
}

// ---------------------------------------------------------------------------------------------
// Signaling
// ---------------------------------------------------------------------------------------------

/// `signaling::sdp::check_offer`, as the WHEP and WHIP POST handlers call it.
pub fn sdp_offer(data: &[u8]) {
    let Ok(summary) = signaling::sdp::check_offer(data) else { return };
    assert!(!summary.media.is_empty(), "an accepted offer has media");
    for m in &summary.media {
        assert!(matches!(m.direction.as_str(), "sendrecv" | "sendonly" | "recvonly" | "inactive"));
        assert!(m.codecs.iter().all(|c| *c == c.to_ascii_uppercase()), "codecs are upper-cased");
    }
}

/// What both POST handlers accept before a peer connection sees the offer: [`sdp_offer`]'s
/// checks, then H.264 video (the backends' 406). The offer as text.
fn h264_offer(data: &[u8]) -> Option<&str> {
    sdp_offer(data);
    let summary = signaling::sdp::check_offer(data).ok()?;
    if !summary.has_codec("video", "H264") {
        return None;
    }
    match std::str::from_utf8(data) {
        Ok(sdp) => Some(sdp),
        Err(_) => panic!("check_offer accepted non-UTF-8"),
    }
}

/// The WHEP POST path: the signaling check, the backend's H.264 check, then the viewer's
/// webrtc-rs peer connection answering the offer.
pub fn whep_offer(data: &[u8]) {
    let Some(sdp) = h264_offer(data) else { return };
    let profile = [0u8, 66, 77, 100][data.len() % 4];
    if let Ok(answer) = answer_offer(sdp, profile) {
        assert!(answer.starts_with("v=0"), "answer: {answer:.80}");
        // The answer the server hands out parses as an SDP answer again.
        if let Err(e) = RTCSessionDescription::answer(answer.clone()) {
            panic!("our answer does not parse: {e}\n{answer}");
        }
    }
}

/// A sans-IO peer connection set up as a viewer's is (`live::session`): same codecs,
/// interceptors, settings and track; no sockets, no tasks. One DTLS certificate is made once
/// and reused (a viewer gets a fresh one; making it dominated the time per input).
fn viewer_peer_connection(profile_idc: u8) -> Result<RTCPeerConnection, String> {
    use crate::live::session::{media_engine, viewer_track};
    use crate::webrtc::peer::setting_engine;
    let certs = certificates();
    let mut me = media_engine(profile_idc, false).map_err(|e| e.to_string())?;
    let registry = register_default_interceptors(Registry::new(), &mut me).map_err(|e| e.to_string())?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().with_certificates(certs).build())
        .with_media_engine(me)
        .with_setting_engine(setting_engine())
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(|e| e.to_string())?;
    pc.add_track(viewer_track(profile_idc, 0x5eed)).map_err(|e| e.to_string())?;
    Ok(pc)
}

/// The WHIP POST path: the signaling check, the backend's H.264 check, then what
/// `PublisherSession::negotiate` does on the sans-IO core (a receive-only peer connection
/// with the publisher's codecs answers), the answer's H.264 check and its sdpfrag; then an
/// ICE restart (`PATCH` with new credentials): the offer restated and answered again.
pub fn whip_offer(data: &[u8]) {
    let Some(sdp) = h264_offer(data) else { return };
    let _ = publisher_answers(sdp);
}

/// What a publisher's peer connection answers to `offer`, and then to the offer restated for
/// an ICE restart (None where webrtc-rs refuses it), checking the invariants on the way.
pub fn publisher_answers(offer: &str) -> Option<(String, Option<String>)> {
    use crate::ingest::publisher::{answer_receives_h264, media_engine};
    use crate::webrtc::ice::{ice_sdpfrag, replace_ice_credentials};
    let Ok(mut me) = media_engine() else { panic!("the publisher's codecs register") };
    let registry = register_default_interceptors(Registry::new(), &mut me).ok()?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().with_certificates(certificates()).build())
        .with_media_engine(me)
        .with_setting_engine(crate::webrtc::peer::setting_engine())
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .ok()?;
    let now = Instant::now();
    let mut answer_to = |offer: String| -> Option<String> {
        pc.set_remote_description(now, RTCSessionDescription::offer(offer).ok()?).ok()?;
        let answer = pc.create_answer(None).ok()?;
        let sdp = answer.sdp.clone();
        pc.set_local_description(now, answer).ok()?;
        Some(sdp)
    };
    let answer = answer_to(offer.to_owned())?;
    if let Err(e) = RTCSessionDescription::answer(answer.clone()) {
        panic!("our answer does not parse: {e}\n{answer}");
    }
    let _ = answer_receives_h264(&answer);
    let frag = ice_sdpfrag(&answer);
    assert!(frag.is_empty() || signaling::sdp::parse_fragment(frag.as_bytes()).is_ok(), "our sdpfrag: {frag}");
    let restated = replace_ice_credentials(offer, "rEsT", "0123456789abcdefghijklmn");
    assert!(
        !restated.lines().any(|l| l.starts_with("a=candidate:") || l == "a=end-of-candidates"),
        "a restated offer carries no old candidates"
    );
    let again = answer_to(restated);
    Some((answer, again))
}

/// One DTLS certificate for every input (making one dominated the time per input).
fn certificates() -> Vec<RTCCertificate> {
    static CERTS: std::sync::OnceLock<Vec<RTCCertificate>> = std::sync::OnceLock::new();
    if let Some(c) = CERTS.get() {
        return c.clone();
    }
    match RTCPeerConnectionBuilder::new().build(Instant::now()) {
        Ok(pc) => CERTS.get_or_init(|| pc.get_configuration().certificates().to_vec()).clone(),
        Err(_) => Vec::new(),
    }
}

/// What `ViewerSession::answer` does to an offer, on the sans-IO core: the answer SDP.
pub fn answer_offer(offer: &str, profile_idc: u8) -> Result<String, String> {
    let mut pc = viewer_peer_connection(profile_idc)?;
    let now = Instant::now();
    let desc = RTCSessionDescription::offer(offer.to_owned()).map_err(|e| e.to_string())?;
    pc.set_remote_description(now, desc).map_err(|e| e.to_string())?;
    let answer = pc.create_answer(None).map_err(|e| e.to_string())?;
    let sdp = answer.sdp.clone();
    pc.set_local_description(now, answer).map_err(|e| e.to_string())?;
    Ok(sdp)
}

/// A trickle PATCH: `signaling::sdp::parse_fragment`, then each candidate added to a viewer
/// peer connection that has answered [`SEED_OFFER`] (as `ViewerSession::add_candidate` does).
pub fn sdpfrag(data: &[u8]) {
    let Ok(frag) = signaling::sdp::parse_fragment(data) else { return };
    for (_, c) in &frag.candidates {
        assert!(c.starts_with("candidate:") && c.split_whitespace().count() >= 8, "{c:.80}");
    }
    if frag.candidates.is_empty() {
        return;
    }
    let Ok(mut pc) = viewer_peer_connection(66) else { return };
    let now = Instant::now();
    let Ok(desc) = RTCSessionDescription::offer(SEED_OFFER.to_owned()) else { return };
    if pc.set_remote_description(now, desc).is_err() {
        return;
    }
    if let Ok(answer) = pc.create_answer(None) {
        let _ = pc.set_local_description(now, answer);
    }
    for (mid, candidate) in frag.candidates.into_iter().take(32) {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: mid,
            username_fragment: Some("fUzZ".into()),
            ..Default::default()
        };
        let _ = pc.add_remote_candidate(init);
    }
}

// ---------------------------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------------------------

/// Annex-B and SEI parsing, AU normalising and splitting, SPS and `avcC`, Annex-B → AVC.
pub fn annexb(data: &[u8]) {
    let nals: Vec<&[u8]> = nal_units(data).collect();
    assert!(nals.iter().map(|n| n.len()).sum::<usize>() <= data.len());
    for n in &nals {
        assert!(!n.is_empty() && n.last() != Some(&0), "NALs are trimmed and non-empty");
        assert!(!n.windows(3).any(|w| w == [0, 0, 1]), "no start code inside a NAL");
        let _ = annexb::parse_capture_time_sei(n);
        if nal_type(n) == nal::SPS
            && let Ok(info) = parse_sps(n)
        {
            assert!(info.width > 0 && info.height > 0);
            assert!(info.codec().starts_with("avc1."));
        }
    }
    let _ = annexb::find_capture_time(data);
    let _ = annexb::is_keyframe(data);

    // Emulation prevention round-trips, and escaped bytes hold no start code.
    let mut escaped = Vec::new();
    annexb::escape_rbsp(data, &mut escaped);
    assert_eq!(annexb::unescape_rbsp(&escaped), data, "escape → unescape");
    assert!(!escaped.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2), "escaped bytes hold a start code");

    // The capture-time SEI round-trips for any time.
    let ts = Input(data).i64();
    let sei = annexb::capture_time_sei(ts);
    let sei_nals: Vec<&[u8]> = nal_units(&sei).collect();
    assert_eq!(sei_nals.len(), 1);
    assert_eq!(annexb::parse_capture_time_sei(sei_nals[0]), Some(ts));

    // Splitting at AUDs yields ordered, in-bounds ranges, each starting at an AUD.
    let mut last_end = 0;
    for r in annexb::split_at_auds(data) {
        assert!(r.start >= last_end && r.start < r.end && r.end <= data.len(), "{r:?}");
        assert!(nal_units(&data[r.clone()]).next().is_some_and(|n| nal_type(n) == nal::AUD));
        last_end = r.end;
    }

    // Normalising keeps every NAL but AUDs and old capture SEIs, in order, after AUD + SEI.
    let mut norm = annexb::AuNormalizer::new();
    let half = data.len() / 2;
    for (part, t) in [(&data[..half], 1i64), (&data[half..], ts)] {
        let out = norm.normalize(part, t);
        let types: Vec<u8> = nal_units(&out.data).map(nal_type).collect();
        assert_eq!(&types[..2], &[nal::AUD, nal::SEI], "AUD, SEI first");
        assert_eq!(annexb::find_capture_time(&out.data), Some(t));
        assert_eq!(out.keyframe, annexb::is_keyframe(part));
        assert_eq!(annexb::is_keyframe(&out.data), out.keyframe);
        let kept: Vec<&[u8]> = nal_units(part)
            .filter(|n| nal_type(n) != nal::AUD && annexb::parse_capture_time_sei(n).is_none())
            .collect();
        let got: Vec<&[u8]> = nal_units(&out.data).collect();
        assert!(got.ends_with(&kept), "normalised AU lost or reordered NALs");
    }

    // Annex-B → AVC: the size the planner predicts is the size written.
    let mut avc = Vec::new();
    let n = annexb_to_avc(data, &mut avc);
    assert_eq!(n, avc.len() as u64);
    assert_eq!(n, avc_size(data));
    if let Some(Ok(ps)) = ParamSets::from_annexb(data) {
        let high = ps.avcc().len() != 11 + ps.sps().len() + ps.pps().len();
        assert_eq!(ps.avcc().len(), 11 + ps.sps().len() + ps.pps().len() + if high { 4 } else { 0 });
    }
}

/// A `.idx` file: 8 bytes of data-file length, then the records.
pub fn idx(data: &[u8]) {
    let mut inp = Input(data);
    let data_len = inp.u64();
    let raw = inp.bytes(usize::MAX);
    let recs = idx::decode_all(raw);
    assert_eq!(recs.len(), raw.len() / RECORD_LEN);
    for (r, chunk) in recs.iter().zip(raw.chunks_exact(RECORD_LEN)) {
        assert_eq!(r.encode(), chunk, "decode → encode");
    }
    let good = idx::plausible_prefix(&recs, data_len);
    let kept = &recs[..good];
    for (i, r) in kept.iter().enumerate() {
        assert!(r.len > 0 && r.len <= idx::MAX_AU_LEN && r.end() <= data_len);
        if i > 0 {
            assert!(r.offset >= kept[i - 1].end() && r.pts_us >= kept[i - 1].pts_us);
        }
    }
    if let Some(end) = idx::estimated_end_us(kept) {
        assert!(end > kept[good - 1].pts_us || kept[good - 1].pts_us == i64::MAX);
    }
    let seg =
        SegmentInput { start_us: kept.first().map_or(0, |r| r.pts_us), data: "x.h264".into(), records: kept.into() };
    for t in [None, Some(inp.i64()), kept.last().map(|r| r.pts_us)] {
        if let Some(aus) = crate::history::snapshot::gop_for(&seg, t) {
            assert!(!aus.is_empty());
        }
    }
}

/// One access unit of the shapes the `mp4` target builds.
fn fuzz_au(kind: u8, inp: &mut Input) -> (Vec<u8>, bool) {
    let mut au = vec![0, 0, 0, 1, nal::AUD, 0xf0];
    let body = usize::from(inp.u8()) * 4 + 1;
    let (sps, pps) = if inp.u8() & 1 == 0 { (SPS_BASELINE, PPS_BASELINE) } else { (SPS_HIGH, PPS_HIGH) };
    match kind & 3 {
        // A contract keyframe: AUD, SPS, PPS, IDR.
        0 => {
            for n in [sps, pps] {
                au.extend_from_slice(&[0, 0, 0, 1]);
                au.extend_from_slice(n);
            }
            au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
            au.extend(std::iter::repeat_n(0x88, body));
            (au, true)
        }
        // A contract P frame.
        1 => {
            au.extend_from_slice(&[0, 0, 0, 1, 0x41]);
            au.extend(std::iter::repeat_n(0x9a, body));
            (au, false)
        }
        // Bytes straight from the input.
        2 => {
            let n = usize::from(inp.u8());
            (inp.bytes(n).to_vec(), false)
        }
        // A keyframe with 3-byte start codes (an external writer).
        _ => {
            let mut au = vec![0, 0, 1, nal::AUD, 0xf0];
            for n in [sps, pps] {
                au.extend_from_slice(&[0, 0, 1]);
                au.extend_from_slice(n);
            }
            au.extend_from_slice(&[0, 0, 1, 0x65]);
            au.extend(std::iter::repeat_n(0x77, body));
            (au, true)
        }
    }
}

/// Hostile segments (records from the input or describing generated AUs, some bent) through
/// the planner and both muxers, reading every byte of the results.
pub fn mp4(data: &[u8]) {
    let _ = mp4_reach(data);
}

/// How far an `mp4` input got: (planned, whole file written, fragments built).
fn mp4_reach(data: &[u8]) -> (bool, bool, usize) {
    let mut reach = (false, false, 0);
    let _ = dump(data); // the box printer, on raw bytes
    let mut inp = Input(data);
    let ctrl = inp.u8();
    let filtered = ctrl & 0x10 == 0; // as `load_segment` hands them over (most inputs)
    let mut mem = MemSource::default();
    let mut segs = Vec::new();
    let mut pts = T0;
    for s in 0..1 + usize::from(ctrl & 3) % 3 {
        let path = PathBuf::from(format!("/fuzz/{s}.h264"));
        let mut bytes = Vec::new();
        let mut records = Vec::new();
        for _ in 0..inp.u8() % 48 {
            let op = inp.u8();
            pts = pts.saturating_add(i64::from(inp.u16()) * 100);
            if op % 8 == 0 {
                records.push(Record::decode(&inp.array()));
                continue;
            }
            let (au, key) = fuzz_au(op >> 3, &mut inp);
            let mut r = Record {
                offset: bytes.len() as u64,
                len: au.len() as u32,
                pts_us: pts,
                flags: if key ^ (op & 0x40 != 0) { FLAG_KEYFRAME } else { 0 },
            };
            if op & 0x80 != 0 {
                r.offset = r.offset.wrapping_add_signed(i64::from(inp.u8() as i8));
                r.len = r.len.wrapping_add_signed(i32::from(inp.u8() as i8));
            }
            bytes.extend_from_slice(&au);
            records.push(r);
        }
        if filtered {
            records.truncate(idx::plausible_prefix(&records, bytes.len() as u64));
        }
        let start_us = records.first().map_or(pts, |r| r.pts_us);
        mem.0.insert(path.clone(), bytes);
        segs.push(SegmentInput { start_us, data: path, records });
    }
    let range = match inp.u8() % 4 {
        0 => inp.i64()..inp.i64(),
        _ => {
            let a = T0.saturating_add(i64::from(inp.i32()) * 10);
            a..a.saturating_add(i64::from(inp.u16()) * 10_000)
        }
    };
    let Ok(plan) = Plan::build(&segs, range, &mem) else { return reach };
    check_plan(&plan);
    reach.0 = true;

    if let Ok(file) = Mp4File::new(plan.clone()) {
        let len = file.len();
        let mut whole = Vec::new();
        if let Ok(n) = file.write_range(0..len, &mem, &mut whole) {
            assert_eq!((n, whole.len() as u64), (len, len), "bytes written = file length");
            let text = dump(&whole);
            assert!(text.starts_with("ftyp") && text.contains("moov"), "{text:.200}");
            let (a, b) = (inp.u64() % (len + 1), inp.u64() % (len + 1));
            let (a, b) = (a.min(b), a.max(b));
            let mut part = Vec::new();
            file.write_range(a..b, &mem, &mut part).expect("a sub-range of a readable file reads");
            assert!(part == whole[a as usize..b as usize], "range {a}..{b} differs from the whole file");
            reach.1 = true;
        }
    }
    for e in 0..plan.entries().len() as u32 {
        let init = plan.init_segment(e).expect("init segment for each entry");
        assert!(dump(&init).contains("avcC"));
    }
    let base = if inp.u8() & 1 == 0 { None } else { Some(inp.i64()) };
    for (i, g) in plan.gops().into_iter().enumerate() {
        if let Ok(frag) = plan.fragment(g, i as u32 + 1, base, &mem) {
            assert!(dump(&frag).starts_with("moof"));
            reach.2 += 1;
        }
    }
    reach
}

fn check_plan(plan: &Plan) {
    let samples = plan.samples();
    assert!(!samples.is_empty() && samples[0].keyframe, "a plan starts at a keyframe");
    let mut time = 0u64;
    for s in samples {
        assert!(s.duration_90k >= 1 && s.time_90k == time);
        assert!((s.entry as usize) < plan.entries().len() && (s.segment as usize) < plan.segments().len());
        time += u64::from(s.duration_90k);
    }
    assert!(plan.skip_90k() <= plan.media_duration_90k());
    let gops = plan.gops();
    assert_eq!(gops.first().map(|g| g.start), Some(0));
    assert_eq!(gops.last().map(|g| g.end), Some(samples.len()));
    assert!(gops.windows(2).all(|w| w[0].end == w[1].start && w[0].start < w[0].end));
}

// ---------------------------------------------------------------------------------------------
// HTTP parameters
// ---------------------------------------------------------------------------------------------

/// Query times (`start`, `end`, `t`, `base`) and `Range` headers, as the history API parses
/// them: lines of the input are the values.
pub fn http_params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let (a, b, c) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    for s in [a, b].into_iter().flatten() {
        if let Ok(t) = parse_time(s) {
            assert!((MIN_TIME_US..=MAX_TIME_US).contains(&t), "{s:?} → {t}");
            let shown = format_time(t);
            assert_eq!(parse_time(&shown).ok(), Some(t - t.rem_euclid(1000)), "{s:?} → {shown}");
        }
    }
    let now = Input(data).i64();
    for span in [1, 60_000_000, 7 * 86_400_000_000] {
        if let Ok((s, e)) = time_range_at(a, b, span, now) {
            assert!(MIN_TIME_US <= s && s < e && e <= MAX_TIME_US);
        }
    }
    let len = Input(data).u64() >> (data.len() % 64);
    if let Some(Ok(r)) = parse_range(c, len) {
        assert!(r.start < r.end && r.end <= len, "{c:?} {len} → {r:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_offer_is_answered_by_the_viewer_stack() {
        for profile in [0, 66, 77, 100] {
            let answer = answer_offer(SEED_OFFER, profile).unwrap();
            assert!(answer.contains("m=video") && answer.contains("H264"), "{answer}");
        }
        whep_offer(SEED_OFFER.as_bytes());
        sdpfrag(b"a=mid:0\r\na=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host\r\n");
    }

    /// An `mp4` input of one segment: `frames` contract AUs at 30 fps, a keyframe every
    /// `gop`, and a range of `span_10ms` × 10 ms from the first (the shape of the seeds in
    /// fuzz/corpus/mp4/).
    fn mp4_input(frames: u8, gop: u8, span_10ms: u16, unfiltered: bool) -> Vec<u8> {
        let mut b = vec![if unfiltered { 0x10 } else { 0 }, frames];
        for i in 0..frames {
            let kind: u8 = if i % gop == 0 { 0 } else { 1 };
            b.push(1 | (kind << 3));
            b.extend_from_slice(&333u16.to_le_bytes());
            b.extend_from_slice(&[20 + i % 7, 0]);
        }
        b.push(1);
        b.extend_from_slice(&0i32.to_le_bytes());
        b.extend_from_slice(&span_10ms.to_le_bytes());
        b.extend_from_slice(&100u64.to_le_bytes());
        b.extend_from_slice(&900u64.to_le_bytes());
        b
    }

    #[test]
    fn whip_seeds_are_answered_and_restarted_by_the_publisher_stack() {
        use crate::ingest::publisher::answer_receives_h264;
        for seed in ["seed-webrtcbin", "seed-chrome"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/whip_offer").join(seed);
            let offer = std::fs::read_to_string(&path).unwrap();
            assert!(signaling::sdp::check_offer(offer.as_bytes()).is_ok(), "{seed}");
            let (answer, again) = publisher_answers(&offer).unwrap_or_else(|| panic!("{seed}: no answer"));
            assert!(answer_receives_h264(&answer), "{seed}:\n{answer}");
            assert!(answer.contains("a=recvonly"), "{seed}:\n{answer}");
            let again = again.unwrap_or_else(|| panic!("{seed}: the ICE restart offer was refused"));
            assert!(answer_receives_h264(&again), "{seed} after restart:\n{again}");
        }
    }

    #[test]
    fn mp4_inputs_reach_the_muxers() {
        for unfiltered in [false, true] {
            let (planned, written, fragments) = mp4_reach(&mp4_input(30, 10, 100, unfiltered));
            assert!(planned && written, "unfiltered {unfiltered}");
            assert_eq!(fragments, 3);
        }
    }

    #[test]
    fn every_target_takes_empty_and_junk_input() {
        for (_, f) in TARGETS {
            f(b"");
            f(&[0xff; 100]);
            f(&[0; 300]);
        }
    }
}
