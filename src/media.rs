//! The signaling backend vigil hands to the `signaling` crate: WHEP requests go to live
//! viewing ([`Live`]), WHIP requests to ingest ([`Ingest`]).

use crate::ingest::whip::Ingest;
use crate::live::whep::Live;
use signaling::{Answer, Backend, IceFragment, Kind, Offer, PatchOutcome, SignalError};
use std::sync::Arc;

/// See the module docs.
pub struct Media {
    /// WHEP viewers.
    pub live: Arc<Live>,
    /// WHIP publishers.
    pub ingest: Arc<Ingest>,
}

impl Backend for Media {
    fn admit(&self, kind: Kind, resource: &str, bearer: Option<&str>) -> Result<(), SignalError> {
        match kind {
            Kind::Whep => self.live.admit(kind, resource, bearer),
            Kind::Whip => self.ingest.admit(resource, bearer),
        }
    }

    async fn create(&self, offer: Offer) -> Result<Answer, SignalError> {
        match offer.kind {
            Kind::Whep => self.live.create(offer).await,
            Kind::Whip => self.ingest.create(offer).await,
        }
    }

    fn etag(&self, kind: Kind, resource: &str, session: &str) -> Option<String> {
        match kind {
            Kind::Whep => self.live.etag(kind, resource, session),
            Kind::Whip => self.ingest.etag(resource, session),
        }
    }

    async fn patch(
        &self,
        kind: Kind,
        resource: &str,
        session: &str,
        fragment: IceFragment,
        bearer: Option<String>,
    ) -> Result<PatchOutcome, SignalError> {
        match kind {
            Kind::Whep => self.live.patch(kind, resource, session, fragment, bearer).await,
            Kind::Whip => self.ingest.patch(resource, session, fragment, bearer.as_deref()).await,
        }
    }

    async fn delete(
        &self,
        kind: Kind,
        resource: &str,
        session: &str,
        bearer: Option<String>,
    ) -> Result<(), SignalError> {
        match kind {
            Kind::Whep => self.live.delete(kind, resource, session, bearer).await,
            Kind::Whip => self.ingest.delete(resource, session, bearer.as_deref()).await,
        }
    }
}
