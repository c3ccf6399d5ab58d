//! RTP → whole H.264 access units, sans-IO: a small reorder buffer (so NACK retransmissions
//! land in place), RFC 6184 depacketization (`rtc`'s `H264Packet` does STAP-A/FU-A), and AU
//! assembly on the marker bit.
//!
//! Why not `rtc`'s `SampleBuilder`: it releases a frame only when the first packet of the
//! *next* frame arrives, which adds a frame interval (33 ms at 30 fps) to every AU on the way
//! to disk and to viewers. Here an AU is released on its marker bit, and a gap is waited for
//! at most [`MAX_REORDER_WAIT`] before it counts as lost.
//!
//! Loss policy: an AU missing any packet is dropped, and so is every AU after it until the next
//! IDR (a P-frame after a hole decodes to garbage, and what is recorded must play).
//! [`Depacketizer::wants_keyframe`] says when that is the case, so the caller sends a PLI.

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer as _;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a gap in sequence numbers is waited for (a NACK round trip) before it is loss.
pub const MAX_REORDER_WAIT: Duration = Duration::from_millis(150);
/// Packets held behind a gap at most (a 1 s burst at 8 Mbit/s is ~900 packets).
pub const MAX_PENDING: usize = 1024;
/// A forward jump this large (in packets) is a new stream (sender restart), not loss.
const RESET_JUMP: u64 = 3000;
/// An AU larger than this is refused (no legitimate camera frame is this big).
pub const MAX_AU_BYTES: usize = 8 << 20;

/// One complete access unit in Annex-B form (4-byte start codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// The NAL units, each with a start code.
    pub data: Vec<u8>,
    /// RTP timestamp (90 kHz) of its packets.
    pub rtp_ts: u32,
    /// It holds an IDR slice.
    pub keyframe: bool,
}

/// Counters, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Packets never received (given up on).
    pub lost_packets: u64,
    /// AUs dropped: incomplete, undecodable after loss, or oversized.
    pub dropped_aus: u64,
    /// Packets that came too late or twice.
    pub late_packets: u64,
}

struct PartialAu {
    rtp_ts: u32,
    data: Vec<u8>,
    broken: bool,
}

/// See the module docs.
pub struct Depacketizer {
    /// Extended sequence number of the next packet to hand to the assembler.
    next: Option<u64>,
    highest: u64,
    pending: BTreeMap<u64, rtp::Packet>,
    /// When the current gap (pending non-empty, `next` missing) was first seen.
    gap_since: Option<Instant>,
    au: Option<PartialAu>,
    h264: H264Packet,
    need_keyframe: bool,
    /// Some packet was handed to the assembler.
    fed: bool,
    stats: Stats,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer {
    /// A depacketizer waiting for its first packet (and its first keyframe).
    pub fn new() -> Self {
        Self {
            next: None,
            highest: 0,
            pending: BTreeMap::new(),
            gap_since: None,
            au: None,
            h264: H264Packet::default(),
            need_keyframe: true,
            fed: false,
            stats: Stats::default(),
        }
    }

    /// True while AUs are being dropped for want of a keyframe (start, or after loss).
    pub fn wants_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn extend(&mut self, seq: u16) -> u64 {
        let Some(_) = self.next else {
            // First packet: start high enough that "before" never underflows.
            self.highest = (1 << 32) + u64::from(seq);
            return self.highest;
        };
        let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        let ext = (self.highest as i64 + delta) as u64;
        self.highest = self.highest.max(ext);
        ext
    }

    /// Takes one received RTP packet; complete AUs are appended to `out`.
    pub fn push(&mut self, now: Instant, pkt: rtp::Packet, out: &mut Vec<AccessUnit>) {
        let ext = self.extend(pkt.header.sequence_number);
        let next = *self.next.get_or_insert(ext);
        if ext > next + RESET_JUMP || ext + RESET_JUMP < next {
            // The sender restarted its sequence: start over (and wait for a keyframe).
            self.pending.clear();
            self.lose();
            self.next = Some(ext);
            self.highest = ext;
        } else if ext < next {
            if self.fed {
                self.stats.late_packets += 1;
                return;
            }
            // Nothing handed on yet: the first packet to arrive was not the first sent.
            self.next = Some(ext);
        }
        if self.pending.insert(ext, pkt).is_some() {
            self.stats.late_packets += 1;
        }
        self.drain(now, out);
    }

    /// Gives up on gaps older than [`MAX_REORDER_WAIT`]; call this every few tens of ms while
    /// packets are pending (a stream that stops right after a gap has no `push` to do it).
    pub fn tick(&mut self, now: Instant, out: &mut Vec<AccessUnit>) {
        self.drain(now, out);
    }

    /// Packets held behind a gap.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<AccessUnit>) {
        let Some(mut next) = self.next else { return };
        loop {
            if let Some(p) = self.pending.remove(&next) {
                next += 1;
                self.gap_since = None;
                self.fed = true;
                self.feed(p, out);
                continue;
            }
            let Some((&first, _)) = self.pending.first_key_value() else { break };
            let since = *self.gap_since.get_or_insert(now);
            if now.duration_since(since) < MAX_REORDER_WAIT && self.pending.len() <= MAX_PENDING {
                break;
            }
            self.stats.lost_packets += first - next;
            self.lose();
            next = first;
            self.gap_since = None;
        }
        self.next = Some(next);
    }

    fn lose(&mut self) {
        if let Some(au) = &mut self.au {
            au.broken = true;
        }
        self.h264 = H264Packet::default();
        self.need_keyframe = true;
    }

    fn feed(&mut self, p: rtp::Packet, out: &mut Vec<AccessUnit>) {
        if self.au.as_ref().is_some_and(|a| a.rtp_ts != p.header.timestamp) {
            // A new timestamp without the previous marker (a sender that omits it).
            self.finish(out);
        }
        if p.payload.is_empty() {
            // Padding: no media. Its marker (if any) still ends the AU.
            if p.header.marker {
                self.finish(out);
            }
            return;
        }
        let au =
            self.au.get_or_insert_with(|| PartialAu { rtp_ts: p.header.timestamp, data: Vec::new(), broken: false });
        match self.h264.depacketize(&p.payload) {
            Ok(nals) => append(au, &nals),
            Err(_) => {
                au.broken = true;
                self.h264 = H264Packet::default();
            }
        }
        if p.header.marker {
            self.finish(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<AccessUnit>) {
        let Some(au) = self.au.take() else { return };
        // A fragmented NAL cut off by the marker/timestamp change is incomplete.
        self.h264 = H264Packet::default();
        if au.data.is_empty() {
            return;
        }
        let keyframe = crate::segment::annexb::is_keyframe(&au.data);
        if au.broken || (self.need_keyframe && !keyframe) {
            self.stats.dropped_aus += 1;
            if au.broken {
                self.need_keyframe = true;
            }
            return;
        }
        self.need_keyframe = false;
        out.push(AccessUnit { data: au.data, rtp_ts: au.rtp_ts, keyframe });
    }
}

fn append(au: &mut PartialAu, nals: &Bytes) {
    if au.data.len() + nals.len() > MAX_AU_BYTES {
        au.broken = true;
        return;
    }
    // `H264Packet` writes 3- or 4-byte start codes; the segment format wants 4.
    for n in crate::segment::annexb::nal_units(nals) {
        au.data.extend_from_slice(&[0, 0, 0, 1]);
        au.data.extend_from_slice(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                sequence_number: seq,
                timestamp: ts,
                marker,
                payload_type: 102,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// An IDR split into two FU-A fragments, plus a single-NAL P-frame.
    fn idr_fu(seq: u16, ts: u32) -> Vec<rtp::Packet> {
        // NAL header 0x65 (nri 3, type 5): FU indicator 0x7c (nri 3, type 28), FU header S/E + type 5.
        vec![pkt(seq, ts, false, &[0x7c, 0x85, 0xaa, 0xbb]), pkt(seq.wrapping_add(1), ts, true, &[0x7c, 0x45, 0xcc])]
    }

    fn p_frame(seq: u16, ts: u32) -> rtp::Packet {
        pkt(seq, ts, true, &[0x41, 0x9a, 0x01])
    }

    fn run(packets: Vec<rtp::Packet>) -> (Vec<AccessUnit>, Depacketizer) {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let now = Instant::now();
        for p in packets {
            d.push(now, p, &mut out);
        }
        (out, d)
    }

    #[test]
    fn reassembles_fu_a_and_releases_on_marker() {
        let mut packets = idr_fu(65534, 1000);
        packets.push(p_frame(0, 4000)); // across the sequence wrap
        let (out, d) = run(packets);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, vec![0, 0, 0, 1, 0x65, 0xaa, 0xbb, 0xcc]);
        assert!(out[0].keyframe);
        assert_eq!(out[1].data, vec![0, 0, 0, 1, 0x41, 0x9a, 0x01]);
        assert_eq!(out[1].rtp_ts, 4000);
        assert!(!d.wants_keyframe());
    }

    #[test]
    fn reorders_within_the_wait() {
        let mut packets = idr_fu(10, 0);
        packets.push(p_frame(13, 6000));
        packets.push(p_frame(12, 3000));
        let (out, d) = run(packets);
        assert_eq!(out.iter().map(|a| a.rtp_ts).collect::<Vec<_>>(), vec![0, 3000, 6000]);
        assert_eq!(d.stats(), Stats::default());
    }

    #[test]
    fn drops_until_keyframe_at_start() {
        let mut packets = vec![p_frame(5, 0)];
        packets.extend(idr_fu(6, 3000));
        let (out, d) = run(packets);
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(d.stats().dropped_aus, 1);
    }

    #[test]
    fn loss_drops_the_broken_au_and_waits_for_a_keyframe() {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let t0 = Instant::now();
        for p in idr_fu(1, 0) {
            d.push(t0, p, &mut out);
        }
        // Packet 3 is lost; 4 is a P-frame that references it.
        d.push(t0, p_frame(4, 6000), &mut out);
        assert_eq!(out.len(), 1, "held behind the gap");
        assert_eq!(d.pending(), 1);
        d.tick(t0 + MAX_REORDER_WAIT, &mut out);
        assert_eq!(out.len(), 1, "P-frame after loss is dropped");
        assert!(d.wants_keyframe());
        assert_eq!(d.stats().lost_packets, 1);
        for p in idr_fu(5, 9000) {
            d.push(t0 + MAX_REORDER_WAIT, p, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert!(out[1].keyframe);
        assert!(!d.wants_keyframe());
    }

    #[test]
    fn late_retransmission_fills_the_gap() {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let t0 = Instant::now();
        let idr = idr_fu(1, 0);
        d.push(t0, idr[0].clone(), &mut out);
        d.push(t0, p_frame(3, 3000), &mut out);
        assert!(out.is_empty());
        d.push(t0 + Duration::from_millis(40), idr[1].clone(), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(d.stats().lost_packets, 0);
    }

    #[test]
    fn sender_restart_is_not_a_flood_of_loss() {
        let mut packets = idr_fu(100, 0);
        packets.extend(idr_fu(40_000, 500));
        let (out, d) = run(packets);
        assert_eq!(out.len(), 2);
        assert_eq!(d.stats().lost_packets, 0);
    }

    #[test]
    fn hostile_payloads_do_not_panic() {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let now = Instant::now();
        let payloads: [&[u8]; 6] = [&[], &[0x18], &[0x18, 0xff, 0xff, 0x01], &[0x7c], &[0x7c, 0x45], &[0x1f, 0, 0]];
        for (i, p) in payloads.iter().enumerate() {
            d.push(now, pkt(i as u16, 0, i % 2 == 0, p), &mut out);
        }
        d.tick(now + Duration::from_secs(1), &mut out);
        assert!(out.is_empty());
    }
}
