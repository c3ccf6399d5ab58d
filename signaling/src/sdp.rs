//! Just enough SDP to route and refuse offers early: a line-level sanity check of offers
//! ([RFC 8866](https://www.rfc-editor.org/rfc/rfc8866)) and the trickle-ICE sdpfrag of
//! [RFC 8840](https://www.rfc-editor.org/rfc/rfc8840). Full SDP handling belongs to the
//! backend's WebRTC stack. Never panics on any input.

use crate::SignalError;

/// Largest SDP accepted, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// One media section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    /// Port 0 means the section is rejected/disabled.
    pub port: u16,
    /// Codec names from `a=rtpmap` (upper-cased), e.g. `H264`, `VP8`, `OPUS`.
    pub codecs: Vec<String>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (default `sendrecv`).
    pub direction: String,
}

/// What an offer contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferSummary {
    /// The media sections, in order.
    pub media: Vec<MediaSection>,
}

impl OfferSummary {
    /// True if some enabled section of `kind` offers `codec` (case-insensitive).
    pub fn has_codec(&self, kind: &str, codec: &str) -> bool {
        self.media
            .iter()
            .any(|m| m.kind == kind && m.port != 0 && m.codecs.iter().any(|c| c.eq_ignore_ascii_case(codec)))
    }

    /// True if some enabled section is of `kind`.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.media.iter().any(|m| m.kind == kind && m.port != 0)
    }
}

/// Checks that `body` looks like an SDP offer and summarises its media.
pub fn check_offer(body: &[u8]) -> Result<OfferSummary, SignalError> {
    if body.len() > MAX_SDP_LEN {
        return Err(SignalError::PayloadTooLarge(format!("SDP larger than {MAX_SDP_LEN} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| SignalError::BadRequest("SDP is not UTF-8".into()))?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err(SignalError::BadRequest("malformed SDP: must start with v=0".into()));
    }
    let mut summary = OfferSummary::default();
    let mut saw_origin = false;
    for (n, line) in lines.enumerate() {
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(SignalError::BadRequest(format!("malformed SDP line {}: expected <letter>=<value>", n + 2)));
        }
        let value = &line[2..];
        match b[0] {
            b'o' => saw_origin = true,
            b'm' => {
                let mut parts = value.split_whitespace();
                let kind = parts.next().unwrap_or_default().to_owned();
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| SignalError::BadRequest(format!("malformed SDP m= line: {value:.80}")))?;
                summary.media.push(MediaSection { kind, port, codecs: Vec::new(), direction: "sendrecv".into() });
            }
            b'a' => {
                let Some(m) = summary.media.last_mut() else { continue };
                if let Some(rest) = value.strip_prefix("rtpmap:") {
                    // a=rtpmap:<pt> <name>/<clock>[/<channels>]
                    if let Some(name) = rest.split_whitespace().nth(1).and_then(|e| e.split('/').next()) {
                        m.codecs.push(name.to_ascii_uppercase());
                    }
                } else if matches!(value, "sendrecv" | "sendonly" | "recvonly" | "inactive") {
                    m.direction = value.to_owned();
                }
            }
            _ => {}
        }
    }
    if !saw_origin {
        return Err(SignalError::BadRequest("malformed SDP: no o= line".into()));
    }
    if summary.media.is_empty() {
        return Err(SignalError::BadRequest("SDP offer has no media sections".into()));
    }
    Ok(summary)
}

/// A trickle-ICE / ICE-restart fragment (`application/trickle-ice-sdpfrag`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceFragment {
    /// `a=ice-ufrag` (session level or first media).
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
    /// Candidates with the `a=mid` of their section, as `candidate:...` strings.
    pub candidates: Vec<(Option<String>, String)>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

/// Parses an sdpfrag. Unknown lines are ignored; a candidate line must at least have the
/// RFC 8839 shape `candidate:<foundation> <component> <transport> <priority> <addr> <port> typ <type>`.
pub fn parse_fragment(body: &[u8]) -> Result<IceFragment, SignalError> {
    if body.len() > MAX_SDP_LEN {
        return Err(SignalError::PayloadTooLarge(format!("sdpfrag larger than {MAX_SDP_LEN} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| SignalError::BadRequest("sdpfrag is not UTF-8".into()))?;
    let mut frag = IceFragment::default();
    let mut mid: Option<String> = None;
    for line in text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            frag.ufrag.get_or_insert_with(|| v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            frag.pwd.get_or_insert_with(|| v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("a=mid:") {
            mid = Some(v.trim().to_owned());
        } else if line.starts_with("m=") {
            mid = None;
        } else if let Some(v) = line.strip_prefix("a=") {
            if v == "end-of-candidates" {
                frag.end_of_candidates = true;
            } else if v.starts_with("candidate:") {
                let fields: Vec<&str> = v.split_whitespace().collect();
                let ok = fields.len() >= 8
                    && fields[1].parse::<u16>().is_ok()
                    && fields[3].parse::<u32>().is_ok()
                    && fields[5].parse::<u16>().is_ok()
                    && fields[6] == "typ";
                if !ok {
                    return Err(SignalError::BadRequest(format!("malformed candidate: {v:.120}")));
                }
                frag.candidates.push((mid.clone(), v.to_owned()));
            }
        } else if line.as_bytes().get(1) != Some(&b'=') {
            return Err(SignalError::BadRequest("malformed sdpfrag line".into()));
        }
    }
    Ok(frag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=recvonly\r\n";

    #[test]
    fn summarises_offer() {
        let s = check_offer(OFFER.as_bytes()).unwrap();
        assert_eq!(s.media.len(), 2);
        assert!(s.has_codec("video", "h264"));
        assert!(s.has_codec("audio", "OPUS"));
        assert!(!s.has_codec("audio", "H264"));
        assert_eq!(s.media[1].direction, "recvonly");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "garbage", "v=0\r\nxx\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "v=0\r\no=x\r\nm=video x\r\n"]
        {
            assert!(matches!(check_offer(bad.as_bytes()), Err(SignalError::BadRequest(_))), "{bad:?}");
        }
        assert!(matches!(check_offer(&[0xff, 0xfe]), Err(SignalError::BadRequest(_))));
        assert!(matches!(check_offer(&vec![b'a'; MAX_SDP_LEN + 1]), Err(SignalError::PayloadTooLarge(_))));
    }

    #[test]
    fn parses_fragment() {
        let f = parse_fragment(
            b"a=ice-ufrag:abcd\r\na=ice-pwd:secret\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
              a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("abcd"));
        assert_eq!(
            f.candidates,
            vec![(Some("0".into()), "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into())]
        );
        assert!(f.end_of_candidates);
        assert!(parse_fragment(b"a=candidate:1 x\r\n").is_err());
        assert!(parse_fragment(b"junk\r\n").is_err());
    }

    #[test]
    fn hostile_input_never_panics() {
        let mut seed = 7u32;
        let alphabet = b"v=0\r\nmoa:candidate typ 1 9 rtpmap H264/ \xff";
        for len in 0..400 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    alphabet[(seed >> 16) as usize % alphabet.len()]
                })
                .collect();
            let _ = check_offer(&buf);
            let _ = parse_fragment(&buf);
        }
    }
}
