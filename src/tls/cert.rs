//! Certificates as vigil uses them: a PEM chain and key turned into a rustls
//! [`CertifiedKey`], and the facts about the leaf that renewal decisions need
//! ([`CertInfo`]: names, validity, serial).

use super::TlsError;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use x509_parser::extensions::GeneralName;

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// Chain + signing key, as the resolver hands it to rustls.
    pub key: Arc<CertifiedKey>,
    /// About the leaf.
    pub info: CertInfo,
}

/// What vigil needs to know about a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject alternative names: DNS names as written, IP addresses in their usual form.
    pub names: Vec<String>,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Issuer distinguished name.
    pub issuer: String,
}

impl CertInfo {
    /// Reads the leaf certificate `der`.
    pub fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::Certificate(format!("unparsable certificate: {e}")))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => names.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            names.push(IpAddr::from(a).to_string());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            names.push(IpAddr::from(a).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let raw = cert.raw_serial();
        let first = raw.iter().position(|&b| b != 0).unwrap_or(raw.len().saturating_sub(1));
        let serial = raw[first..].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial,
            issuer: cert.issuer().to_string(),
        })
    }

    /// Whether the certificate is valid for `name` (a DNS name, matched case-insensitively
    /// and through a one-label `*.` wildcard, or an IP address).
    pub fn covers(&self, name: &str) -> bool {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.names.iter().any(|n| n.parse::<IpAddr>().is_ok_and(|a| a == ip));
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            if n == name {
                return true;
            }
            match (n.strip_prefix("*."), name.split_once('.')) {
                (Some(suffix), Some((label, rest))) => !label.is_empty() && rest == suffix,
                _ => false,
            }
        })
    }

    /// The names of `wanted` the certificate does not cover.
    pub fn missing<'a>(&self, wanted: &'a [String]) -> Vec<&'a str> {
        wanted.iter().map(String::as_str).filter(|w| !self.covers(w)).collect()
    }

    /// Seconds from `now` to the end of validity (negative once expired).
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after.saturating_sub(now)
    }
}

/// Loads a PEM chain (leaf first) and its PEM private key; checks that they match.
pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate(format!("certificate PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Certificate("no CERTIFICATE block in the PEM".into()));
    };
    let info = CertInfo::from_der(leaf)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Certificate(format!("private key PEM: {e}")))?;
    let key = CertifiedKey::from_der(chain, key, &super::provider())
        .map_err(|e| TlsError::Certificate(format!("certificate and key: {e}")))?;
    Ok(LoadedCert { key: Arc::new(key), info })
}

/// [`from_pem`] on two files; errors name the file.
pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Io { path: p.to_owned(), source });
    let chain = read(cert_path)?;
    let key = read(key_path)?;
    from_pem(&chain, &key).map_err(|e| match e {
        TlsError::Certificate(m) => TlsError::Pem { path: cert_path.to_owned(), message: m },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> CertInfo {
        CertInfo {
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            not_before: 0,
            not_after: 100,
            serial: "01".into(),
            issuer: String::new(),
        }
    }

    #[test]
    fn name_matching() {
        let c = info(&["cam.example.org", "*.home.example.org", "192.168.1.10", "::1"]);
        assert!(c.covers("cam.example.org"));
        assert!(c.covers("CAM.Example.org."));
        assert!(c.covers("pi.home.example.org"));
        assert!(!c.covers("a.pi.home.example.org"));
        assert!(!c.covers("home.example.org"));
        assert!(!c.covers("example.org"));
        assert!(c.covers("192.168.1.10"));
        assert!(c.covers("0:0:0:0:0:0:0:1"));
        assert!(!c.covers("192.168.1.11"));
        let wanted = vec!["cam.example.org".to_owned(), "other.example.org".to_owned()];
        assert_eq!(c.missing(&wanted), vec!["other.example.org"]);
        assert_eq!(c.seconds_left(40), 60);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_pem(b"", b"").is_err());
        assert!(from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"").is_err());
        assert!(CertInfo::from_der(&[0x30, 0x03, 0x02, 0x01]).is_err());
        assert!(CertInfo::from_der(&[]).is_err());
    }
}
