//! ICE restart (RFC 9725 §4.4.2) for a negotiated peer connection, shared by WHEP viewers
//! (`live::session`) and WHIP publishers (`ingest::publisher`): a `PATCH` whose sdpfrag
//! carries new `a=ice-ufrag`/`a=ice-pwd` restates the remote offer with those credentials,
//! answers it, and hands back this side's new credentials and candidates as an sdpfrag. The
//! session (its tracks, its media flow) goes on; only the transport is re-established.
//!
//! Owns: the remote ICE credentials in force and the SDP rewriting. Must not touch: media.

use super::net::Binding;
use super::peer::NegotiateError;
use signaling::IceFragment;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

/// How long an answer waits for its candidates to be gathered.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// The ICE side of one negotiated session.
pub struct IceState {
    /// The remote description in force (a restart restates it with new credentials).
    offer: tokio::sync::Mutex<String>,
    /// The remote ufrag in force (a different one in a PATCH is a restart).
    remote_ufrag: std::sync::Mutex<Option<String>>,
    /// Completed ICE gatherings (one per answer), so a restart can wait for its own.
    gathered: watch::Receiver<u32>,
    /// How this side is reached (a restart's candidates are announced through it).
    binding: Binding,
}

impl IceState {
    /// The state after answering `offer`; `gathered` counts completed gatherings.
    pub fn new(offer: &str, gathered: watch::Receiver<u32>, binding: Binding) -> Self {
        Self {
            offer: tokio::sync::Mutex::new(offer.to_owned()),
            remote_ufrag: std::sync::Mutex::new(sdp_attr(offer, "ice-ufrag").map(str::to_owned)),
            gathered,
            binding,
        }
    }

    /// The remote ICE ufrag in force.
    pub fn remote_ufrag(&self) -> Option<String> {
        self.remote_ufrag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `frag` is an ICE restart (new remote credentials) rather than trickle.
    pub fn is_restart(&self, frag: &IceFragment) -> bool {
        frag.ufrag.as_ref().is_some_and(|new| Some(new) != self.remote_ufrag().as_ref())
    }

    /// Adds a trickled remote candidate.
    pub async fn add_candidate(
        &self,
        pc: &Arc<dyn PeerConnection>,
        mid: Option<String>,
        candidate: String,
    ) -> Result<(), String> {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: mid,
            username_fragment: self.remote_ufrag(),
            ..Default::default()
        };
        pc.add_ice_candidate(init).await.map_err(|e| e.to_string())
    }

    /// Restarts ICE on `pc` with the remote credentials and candidates of `frag`; returns
    /// this side's new credentials and candidates as an sdpfrag.
    pub async fn restart(&self, pc: &Arc<dyn PeerConnection>, frag: &IceFragment) -> Result<String, NegotiateError> {
        let (Some(ufrag), Some(pwd)) = (&frag.ufrag, &frag.pwd) else {
            return Err(NegotiateError::BadOffer("an ICE restart needs both a=ice-ufrag and a=ice-pwd".into()));
        };
        let stack = |e: webrtc::error::Error| NegotiateError::Stack(e.to_string());
        let mut offer = self.offer.lock().await;
        let restarted = replace_ice_credentials(&offer, ufrag, pwd);
        let before = *self.gathered.borrow();
        let desc =
            RTCSessionDescription::offer(restarted.clone()).map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
        pc.set_remote_description(desc).await.map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
        let answer = pc.create_answer(None).await.map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
        pc.set_local_description(answer).await.map_err(stack)?;
        let mut gathered = self.gathered.clone();
        let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|g| *g > before)).await;
        let local = pc.local_description().await.ok_or_else(|| NegotiateError::Stack("no local description".into()))?;
        *offer = restarted;
        *self.remote_ufrag.lock().unwrap_or_else(|p| p.into_inner()) = Some(ufrag.clone());
        drop(offer);
        for (mid, c) in &frag.candidates {
            if let Err(e) = self.add_candidate(pc, mid.clone(), c.clone()).await {
                tracing::debug!(error = %e, "adding candidate from an ICE restart");
            }
        }
        Ok(ice_sdpfrag(&self.binding.announce(&local.sdp)))
    }
}

/// The first `a=<name>:` value in an SDP.
pub fn sdp_attr<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=")?.strip_prefix(name)?.strip_prefix(':'))
}

/// `sdp` with every `a=ice-ufrag`/`a=ice-pwd` replaced (an offer restated for an ICE restart).
pub fn replace_ice_credentials(sdp: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}"));
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}"));
        } else if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// The ICE part of an answer as an sdpfrag (RFC 8840): credentials and each section's
/// candidates under its `a=mid`.
pub fn ice_sdpfrag(sdp: &str) -> String {
    let mut out = String::new();
    if let (Some(u), Some(p)) = (sdp_attr(sdp, "ice-ufrag"), sdp_attr(sdp, "ice-pwd")) {
        out.push_str(&format!("a=ice-ufrag:{u}\r\na=ice-pwd:{p}\r\n"));
    }
    let mut media: Option<String> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            media = Some(format!("m={m}\r\n"));
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && let Some(m) = media.take()
        {
            out.push_str(&m);
            out.push_str(&format!("a=mid:{mid}\r\n"));
        } else if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}
