//! An interceptor that hands the application the inbound RTCP it acts on.
//!
//! webrtc-rs ends the inbound RTCP path before the application (the interceptors consume it)
//! unless an interceptor marks a packet `DeliverToApplication`. vigil needs two kinds: sender
//! reports from a WHIP publisher (its RTP ↔ wall-clock mapping, see `ingest::clock`) and
//! keyframe requests (PLI/FIR) from WHEP viewers. Everything else stays with the interceptors.
//! It sits application-most ([`SLOT`]) so every other interceptor has seen the whole packet.
//!
//! Being first on the write path, it also sees each RTP packet the application wrote as the
//! peer connection's driver takes it from its queue: for a viewer it tells a [`SentObserver`]
//! the video packets' sequence numbers (`live::backlog::Progress`), which is how a viewer
//! knows how far behind its connection is.

use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Where the tap sits in the interceptor chain (above every built-in one).
pub const SLOT: usize = 14_000;

/// Adds the tap to an interceptor registry.
pub fn with_tap(registry: Registry) -> Registry {
    registry.with(Slot::from(SLOT), RtcpTap::default())
}

/// Told the sequence number of each outgoing RTP packet of one SSRC as it leaves the peer
/// connection's send queue.
pub trait SentObserver: Send + Sync {
    /// Packet `seq` was taken from the queue.
    fn taken(&self, seq: u16);
}

/// Adds the tap, telling `progress` the sequence number of each outgoing RTP packet of
/// `ssrc` as it leaves the driver's queue.
pub fn with_progress_tap(registry: Registry, ssrc: u32, progress: Arc<dyn SentObserver>) -> Registry {
    registry.with(Slot::from(SLOT), RtcpTap { progress: Some((ssrc, progress)), ..Default::default() })
}

/// See the module docs.
#[derive(Default)]
pub struct RtcpTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    progress: Option<(u32, Arc<dyn SentObserver>)>,
}

fn wanted(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<SenderReport>() || any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Whether `packets` (one compound RTCP packet delivered to the application) ask for a
/// keyframe: a PLI or a FIR. Sender and receiver reports do not.
pub fn asks_for_keyframe(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
    })
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> =
                packets.iter().filter(|p| wanted(p.as_ref())).cloned().collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let (Some((ssrc, progress)), Packet::Rtp(p)) = (&self.progress, &msg.message.packet)
            && p.header.ssrc == *ssrc
        {
            progress.taken(p.header.sequence_number);
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pli_and_fir_ask_for_a_keyframe() {
        let sr: Box<dyn rtc::rtcp::Packet> = Box::new(SenderReport { ssrc: 1, ..Default::default() });
        let pli: Box<dyn rtc::rtcp::Packet> = Box::new(PictureLossIndication { sender_ssrc: 1, media_ssrc: 2 });
        let fir: Box<dyn rtc::rtcp::Packet> = Box::new(FullIntraRequest { sender_ssrc: 1, ..Default::default() });
        assert!(!asks_for_keyframe(std::slice::from_ref(&sr)));
        assert!(!asks_for_keyframe(&[]));
        assert!(asks_for_keyframe(&[sr.clone(), pli]));
        assert!(asks_for_keyframe(&[fir]));
    }
}
