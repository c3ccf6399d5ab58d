//! The certificate resolver behind the HTTPS listener.
//!
//! rustls asks [`CertResolver::resolve`] for a certificate on every handshake. Renewal calls
//! [`CertResolver::set`]: the next handshake gets the new certificate, while connections that
//! already completed their handshake keep their session (TLS never re-reads the certificate
//! after the handshake). Nothing is restarted, no listener is rebound.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};

/// A swappable certificate: one chain for every name (vigil serves one site).
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertResolver {
    /// An empty resolver: handshakes fail until [`CertResolver::set`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve `key` from the next handshake on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// The certificate being served, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
