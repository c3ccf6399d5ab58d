//! WHIP ([RFC 9725](https://www.rfc-editor.org/rfc/rfc9725)) and WHEP HTTP signaling for
//! axum, generic over a media backend.
//!
//! This crate owns the HTTP side of a session's life: content types, status codes, the
//! session resource URL (`Location`), `ETag`/`If-Match` on trickle `PATCH`es
//! ([RFC 8840](https://www.rfc-editor.org/rfc/rfc8840) sdpfrags), `Link` headers for ICE
//! servers, `OPTIONS`/CORS for browsers, body-size limits and one-line error reasons. It
//! knows nothing about media, GStreamer, disks or WebRTC stacks: a [`Backend`] does the
//! real work. Every error is a [`SignalError`], mapped to a status in one place.
//!
//! ```text
//! POST   /whep/{resource}            application/sdp offer   -> 201 answer, Location, ETag
//! PATCH  /whep/{resource}/{session}  trickle-ice-sdpfrag     -> 204 (or 200 + sdpfrag on ICE restart), 412
//! DELETE /whep/{resource}/{session}                          -> 200
//! OPTIONS on both                                            -> 204 + Accept-Post, Link, CORS
//! ```
//! and the same under `/whip/`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod http;
pub mod sdp;

pub use error::SignalError;
pub use http::{Config, IceServer, MAX_NAME_LEN, router, valid_name};
pub use sdp::{IceFragment, OfferSummary};

use std::future::Future;

/// Which protocol a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// WebRTC-HTTP ingestion (a publisher sends media).
    Whip,
    /// WebRTC-HTTP egress (a viewer receives media).
    Whep,
}

impl Kind {
    /// The URL path segment: `whip` or `whep`.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }
}

/// A new session request, already checked for content type and basic SDP shape.
#[derive(Debug, Clone)]
pub struct Offer {
    /// WHIP or WHEP.
    pub kind: Kind,
    /// The resource (camera) named in the URL.
    pub resource: String,
    /// The SDP offer text.
    pub sdp: String,
    /// A summary of the offer's media sections.
    pub summary: OfferSummary,
    /// The `Authorization: Bearer` token, if one was sent.
    pub bearer: Option<String>,
    /// The client's address, when known.
    pub peer: Option<std::net::SocketAddr>,
}

/// A session the backend created.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The SDP answer.
    pub sdp: String,
    /// The session id (URL-safe; used in `Location`).
    pub session: String,
    /// The entity tag for `If-Match` on PATCH.
    pub etag: String,
}

/// What a trickle PATCH did.
#[derive(Debug, Clone)]
pub enum PatchOutcome {
    /// Candidates applied: `204 No Content`.
    Applied,
    /// An ICE restart: `200 OK` with this sdpfrag and a new ETag.
    Restarted {
        /// The server's new ICE credentials and candidates.
        sdpfrag: String,
        /// The new entity tag.
        etag: String,
    },
}

/// The media side: creates, updates and ends sessions. Implemented by the application.
pub trait Backend: Send + Sync + 'static {
    /// Checks that `resource` exists (and, for WHIP, that `bearer` may publish to it) before
    /// the request body is looked at: a typo in a camera name is `404` whatever the body
    /// holds. Called for every `POST`; [`Backend::create`] still checks again.
    fn admit(&self, kind: Kind, resource: &str, bearer: Option<&str>) -> Result<(), SignalError>;

    /// Creates a session from an offer.
    fn create(&self, offer: Offer) -> impl Future<Output = Result<Answer, SignalError>> + Send;

    /// The current ETag of a session, or `None` if it does not exist (→ 404).
    fn etag(&self, kind: Kind, resource: &str, session: &str) -> Option<String>;

    /// Applies a trickle/ICE-restart fragment to an existing session.
    fn patch(
        &self,
        kind: Kind,
        resource: &str,
        session: &str,
        fragment: IceFragment,
        bearer: Option<String>,
    ) -> impl Future<Output = Result<PatchOutcome, SignalError>> + Send;

    /// Ends a session and frees its resources.
    fn delete(
        &self,
        kind: Kind,
        resource: &str,
        session: &str,
        bearer: Option<String>,
    ) -> impl Future<Output = Result<(), SignalError>> + Send;
}
