//! A publisher's RTP clock → wall-clock capture time (µs since the epoch), sans-IO.
//!
//! The first AU is anchored at its arrival time; later AUs follow the 90 kHz RTP clock from
//! there. When an RTCP sender report says which wall-clock (NTP) time an RTP timestamp stands
//! for, and the sender's clock agrees with ours (the report is not from the future and not
//! more than [`MAX_SR_SKEW`] old on arrival), the anchor moves to the sender's own capture
//! clock: recorded times are then capture times, not arrival times. A sender whose clock is
//! wrong keeps the arrival anchor. Output times never go backwards, and a stream that drifts
//! more than [`MAX_DRIFT`] from arrival (a paused sender, an RTP clock jump) is re-anchored.

/// An SR whose wall clock is further than this behind its arrival is not trusted.
pub const MAX_SR_SKEW_US: i64 = 2_000_000;
/// Same, as a name for the docs.
pub const MAX_SR_SKEW: std::time::Duration = std::time::Duration::from_micros(MAX_SR_SKEW_US as u64);
/// Re-anchor when the RTP-derived time and the arrival time disagree by more than this.
pub const MAX_DRIFT_US: i64 = 5_000_000;
/// Same, as a name for the docs.
pub const MAX_DRIFT: std::time::Duration = std::time::Duration::from_micros(MAX_DRIFT_US as u64);
/// How far an AU may seem to arrive before its reported capture (clock granularity).
const MAX_EARLY_US: i64 = 50_000;
/// Seconds from 1900-01-01 (NTP epoch) to 1970-01-01.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RtpClock {
    rate: i64,
    /// (extended RTP timestamp, wall µs) pairs: where the mapping is pinned.
    anchor: Option<(i64, i64)>,
    /// The last extended RTP timestamp seen, for unwrapping.
    last_ext: Option<i64>,
    /// The last time handed out.
    last_out: i64,
    /// Where the anchor came from.
    from_sender_report: bool,
    /// The last AU's (extended RTP timestamp, arrival µs): a sender report must agree with it.
    last_arrival: Option<(i64, i64)>,
}

impl RtpClock {
    /// A clock for an RTP stream of `rate` Hz; times it hands out are greater than `floor_us`
    /// (the previous publisher's last frame, so segment names keep increasing).
    pub fn new(rate: u32, floor_us: i64) -> Self {
        Self {
            rate: i64::from(rate.max(1)),
            anchor: None,
            last_ext: None,
            last_out: floor_us,
            from_sender_report: false,
            last_arrival: None,
        }
    }

    /// Whether the mapping comes from a sender report (true) or arrival times (false).
    pub fn synced_to_sender(&self) -> bool {
        self.from_sender_report
    }

    fn unwrap(&mut self, ts: u32) -> i64 {
        let ext = match self.last_ext {
            None => i64::from(ts),
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
        };
        self.last_ext = Some(ext);
        ext
    }

    fn at(&self, ext: i64) -> Option<i64> {
        let (a_ext, a_wall) = self.anchor?;
        Some(a_wall + (ext - a_ext) * 1_000_000 / self.rate)
    }

    /// Capture time of the AU with RTP timestamp `ts` that arrived at `arrival_us`.
    pub fn capture_us(&mut self, ts: u32, arrival_us: i64) -> i64 {
        let ext = self.unwrap(ts);
        self.last_arrival = Some((ext, arrival_us));
        let t = match self.at(ext) {
            Some(t) if (t - arrival_us).abs() <= MAX_DRIFT_US && t <= arrival_us + MAX_SR_SKEW_US => t,
            t => {
                tracing::debug!(mapped = ?t, arrival_us, from_sr = self.from_sender_report, "RTP clock re-anchored at arrival");
                self.anchor = Some((ext, arrival_us));
                self.from_sender_report = false;
                arrival_us
            }
        };
        let t = t.max(self.last_out + 1);
        self.last_out = t;
        t
    }

    /// An RTCP sender report: `ntp` (64-bit NTP format) is the wall time of RTP `rtp_ts`.
    /// Returns false if it was not used (the sender's clock disagrees with ours).
    pub fn sender_report(&mut self, ntp: u64, rtp_ts: u32, arrival_us: i64) -> bool {
        let Some(sender_us) = ntp_to_unix_us(ntp) else { return false };
        let age = arrival_us - sender_us;
        if !(0..=MAX_SR_SKEW_US).contains(&age) {
            tracing::debug!(age_us = age, "sender report ignored: its clock disagrees with ours");
            return false;
        }
        // Unwrap against the stream without moving its "last" position.
        let ext = match self.last_ext {
            None => i64::from(rtp_ts),
            Some(last) => last + i64::from(rtp_ts.wrapping_sub(last as u32) as i32),
        };
        // Its RTP ↔ wall mapping must also place the latest AU before (and not long before)
        // that AU arrived; some senders' reports drift from their RTP clock.
        if let Some((e, arrived)) = self.last_arrival {
            let placed = sender_us + (e - ext) * 1_000_000 / self.rate;
            let lead = arrived - placed;
            if !(-MAX_EARLY_US..=MAX_SR_SKEW_US).contains(&lead) {
                tracing::debug!(lead_us = lead, "sender report ignored: it disagrees with arrival times");
                return false;
            }
        }
        self.anchor = Some((ext, sender_us));
        self.from_sender_report = true;
        true
    }
}

/// 64-bit NTP time (32.32 fixed point since 1900) → µs since the Unix epoch.
pub fn ntp_to_unix_us(ntp: u64) -> Option<i64> {
    let secs = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET_S)?;
    let frac_us = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    i64::try_from(secs.checked_mul(1_000_000)?.checked_add(frac_us)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntp(unix_us: i64) -> u64 {
        let secs = unix_us as u64 / 1_000_000 + NTP_UNIX_OFFSET_S;
        let frac = ((unix_us as u64 % 1_000_000) << 32) / 1_000_000;
        (secs << 32) | frac
    }

    const T0: i64 = 1_700_000_000_000_000;

    #[test]
    fn follows_the_rtp_clock_from_the_first_arrival() {
        let mut c = RtpClock::new(90_000, 0);
        assert_eq!(c.capture_us(1000, T0), T0);
        // 3000 ticks = 33.333 ms later, however late it arrives (within the drift bound).
        assert_eq!(c.capture_us(4000, T0 + 80_000), T0 + 33_333);
        assert!(!c.synced_to_sender());
    }

    #[test]
    fn unwraps_the_32_bit_timestamp() {
        let mut c = RtpClock::new(90_000, 0);
        c.capture_us(u32::MAX - 1499, T0);
        assert_eq!(c.capture_us(1500, T0 + 33_000), T0 + 33_333);
    }

    #[test]
    fn a_sender_report_moves_to_capture_time() {
        let mut c = RtpClock::new(90_000, 0);
        c.capture_us(0, T0 + 50_000); // arrived 50 ms after capture
        // The sender says RTP 0 was captured at T0.
        assert!(c.sender_report(ntp(T0), 0, T0 + 60_000));
        assert!(c.synced_to_sender());
        assert_eq!(c.capture_us(9000, T0 + 150_000), T0 + 100_000);
    }

    #[test]
    fn a_wrong_sender_clock_is_ignored() {
        let mut c = RtpClock::new(90_000, 0);
        c.capture_us(0, T0);
        assert!(!c.sender_report(ntp(T0 + 3_600_000_000), 0, T0), "an hour in the future");
        assert!(!c.sender_report(ntp(T0 - 60_000_000), 0, T0), "a minute behind");
        assert!(!c.sender_report(5, 0, T0), "before 1970");
        assert_eq!(c.capture_us(90_000, T0 + 1_000_000), T0 + 1_000_000);
    }

    #[test]
    fn a_report_that_disagrees_with_arrivals_is_ignored() {
        let mut c = RtpClock::new(90_000, 0);
        // An AU with RTP 900_000 (10 s into the stream) arrives at T0 + 10 s.
        c.capture_us(0, T0);
        c.capture_us(900_000, T0 + 10_000_000);
        // The report is fresh, but maps RTP 900_000 to T0 + 4 s: six seconds before it arrived.
        assert!(!c.sender_report(ntp(T0 + 9_900_000), 900_000 + 531_000, T0 + 10_000_000));
        assert!(!c.synced_to_sender());
    }

    #[test]
    fn never_goes_backwards_and_stays_above_the_floor() {
        let mut c = RtpClock::new(90_000, T0 + 10_000_000);
        let a = c.capture_us(0, T0);
        assert_eq!(a, T0 + 10_000_001);
        let b = c.capture_us(0, T0 + 1);
        assert!(b > a);
    }

    #[test]
    fn re_anchors_after_a_pause() {
        let mut c = RtpClock::new(90_000, 0);
        c.capture_us(0, T0);
        // The sender paused 60 s but its RTP clock did not move.
        assert_eq!(c.capture_us(3000, T0 + 60_000_000), T0 + 60_000_000);
    }
}
