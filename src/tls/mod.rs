//! HTTPS: certificates, their renewal, and the TLS side of `vigil serve`.
//!
//! This module owns everything about TLS:
//! - [`config`]: `[tls]` in the configuration file and its checks.
//! - [`resolver`]: the rustls [`CertResolver`] every handshake asks for the current
//!   certificate. Renewal swaps the certificate inside it, so a new certificate is used by
//!   new handshakes while open HTTPS connections and WebRTC sessions carry on untouched.
//! - [`cert`]: PEM chains and keys loaded into a rustls `CertifiedKey`, with what the renewal
//!   logic needs to know about the leaf (names, validity, serial).
//! - [`store`]: the certificate directory (`[tls] certs_dir`): atomic writes, keys 0600.
//! - [`self_signed`]: rcgen certificates for `mode = "self-signed"` (persisted, reused), and the
//!   placeholder served in `acme` mode until the first certificate is issued.
//! - [`acme`]: the ACME client (instant-acme, HTTP-01) and the challenge responses.
//! - [`http01`]: the plain-HTTP router on `http_listen`: challenge responses, and a redirect to
//!   HTTPS for everything else.
//! - [`status`]: what `/api/status` and `/metrics` report about TLS.
//! - [`manager`]: the task that loads, checks and renews the certificate (at start, then every
//!   `renew_check_interval`; on failure it keeps the old certificate and retries with backoff).
//!
//! Only the ring crypto provider is used (STACK.md pitfall 4).

pub mod acme;
pub mod cert;
pub mod config;
pub mod http01;
pub mod manager;
pub mod resolver;
pub mod self_signed;
pub mod status;
pub mod store;

pub use manager::Tls;
pub use resolver::CertResolver;
pub use status::{CertSource, TlsStatus};

use std::path::PathBuf;
use std::sync::Arc;

/// Errors from loading, making or obtaining certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A certificate (or its key) is unusable: unparsable, key mismatch, unsupported key type.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rcgen could not make a key, certificate or CSR.
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The ACME server or the HTTP exchange with it failed.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// The ACME order did not succeed (an authorization or the order became invalid).
    #[error("ACME order: {0}")]
    Order(String),
    /// The whole ACME exchange took too long.
    #[error("ACME: no certificate within {0:?}")]
    Timeout(std::time::Duration),
    /// Saved ACME account credentials could not be read or written as JSON.
    #[error("{path}: {source}")]
    Json {
        /// The credentials file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// The crypto provider used for every TLS object vigil makes (ring only).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default rustls provider (for libraries that build their
/// own rustls configurations, e.g. the ACME client). Calling it again is harmless.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rustls server configuration for the HTTPS listener: certificates come from `resolver`
/// (hot-swappable), ALPN offers HTTP/2 and HTTP/1.1.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

/// (year, month, day) of a day count since 1970-01-01: the segment store's calendar
/// ([`crate::segment::path::civil_from_days`]) in the narrow types rcgen wants.
pub(crate) fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let (y, m, d) = crate::segment::path::civil_from_days(z);
    // m is in 1..=12 and d in 1..=31 by construction.
    (y, u8::try_from(m).unwrap_or(1), u8::try_from(d).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
