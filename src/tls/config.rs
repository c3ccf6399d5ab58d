//! `[tls]`: how (and whether) vigil serves HTTPS, and the checks on it at load. Part of the
//! configuration file ([`crate::config`] re-exports it); docs/tls.md explains the modes.

use crate::config::HumanDuration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[tls]`: how (and whether) vigil serves HTTPS. See `docs/tls.md`.
///
/// With any mode but `off`, vigil serves the whole application over HTTPS on `https_listen`
/// and answers plain HTTP on `http_listen` with ACME HTTP-01 challenges and a redirect to
/// HTTPS for everything else. `[server] listen` keeps serving plain HTTP (meant for loopback:
/// local tools, health checks, metrics scrapes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `off`, `self-signed`, `files` or `acme` (see [`TlsMode`]).
    pub mode: TlsMode,
    /// Names the certificate is for. `acme`: DNS names (at least one; no wildcards, no IP
    /// addresses). `self-signed`: DNS names and/or IP addresses (empty = this host's name,
    /// `<hostname>.local`, `localhost`, 127.0.0.1, ::1 and `https_listen`'s address).
    /// `files`: checked against the certificate when given.
    pub domains: Vec<String>,
    /// HTTPS listen address.
    pub https_listen: SocketAddr,
    /// Plain-HTTP listen address: ACME HTTP-01 challenges and a redirect to HTTPS.
    pub http_listen: SocketAddr,
    /// Where TLS state is kept: the ACME account, the certificate chain and its key (0600),
    /// the self-signed certificate. Created if missing (mode 0700).
    pub certs_dir: PathBuf,
    /// `files` mode: the PEM certificate chain (leaf first). Re-read every
    /// `renew_check_interval`, so an external tool can replace it.
    pub cert_file: Option<PathBuf>,
    /// `files` mode: the PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The ACME directory: `letsencrypt` (production, the default), `letsencrypt-staging`
    /// (or `staging`), or the directory URL of any ACME server (`https://...`).
    pub acme_directory: String,
    /// Contact e-mail given to the ACME server (`admin@example.org`; empty for none).
    pub acme_contact: String,
    /// A PEM root certificate that verifies the ACME server's own HTTPS (for test servers such
    /// as pebble and for private CAs). When set, it replaces the system store for ACME requests.
    pub acme_ca_file: Option<PathBuf>,
    /// How often the certificate is checked (and renewed when due): `"7d"`, `"12h"`, `"30m"`,
    /// `"2s"`. The check also runs at start.
    pub renew_check_interval: HumanDuration,
    /// Renew when the certificate expires within this long (`"30d"`).
    pub renew_before: HumanDuration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            mode: TlsMode::Off,
            domains: Vec::new(),
            https_listen: SocketAddr::from(([0, 0, 0, 0], 443)),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 80)),
            certs_dir: PathBuf::from("./certs"),
            cert_file: None,
            key_file: None,
            acme_directory: "letsencrypt".into(),
            acme_contact: String::new(),
            acme_ca_file: None,
            renew_check_interval: HumanDuration(Duration::from_secs(7 * 86_400)),
            renew_before: HumanDuration(Duration::from_secs(30 * 86_400)),
        }
    }
}

/// How vigil serves HTTPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain HTTP only, on `[server] listen` (meant for loopback development).
    #[default]
    Off,
    /// A certificate vigil makes itself (rcgen), kept in `certs_dir` and reused.
    SelfSigned,
    /// A certificate and key from `cert_file` / `key_file`.
    Files,
    /// A certificate from an ACME CA (Let's Encrypt by default), HTTP-01, renewed automatically.
    Acme,
}

impl TlsMode {
    /// The name used in the config file and in `/api/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Off => "off",
            TlsMode::SelfSigned => "self-signed",
            TlsMode::Files => "files",
            TlsMode::Acme => "acme",
        }
    }
}

/// Let's Encrypt's production directory.
pub const LETSENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

impl TlsConfig {
    /// `acme_directory` resolved to a URL.
    pub fn acme_directory_url(&self) -> Result<String, String> {
        let d = self.acme_directory.trim();
        match d {
            "" | "letsencrypt" | "production" | "letsencrypt-production" => Ok(LETSENCRYPT_PRODUCTION.into()),
            "staging" | "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING.into()),
            url if url.starts_with("https://") || url.starts_with("http://") => Ok(url.to_owned()),
            other => Err(format!(
                "acme_directory {other:?}: expected \"letsencrypt\", \"letsencrypt-staging\" or an https:// URL"
            )),
        }
    }

    /// Checks the section against the mode. `plain` is `[server] listen`.
    pub fn validate(&self, plain: SocketAddr) -> Result<(), String> {
        if self.mode == TlsMode::Off {
            return Ok(());
        }
        for (a, an, b, bn) in [
            (self.https_listen, "https_listen", self.http_listen, "http_listen"),
            (self.https_listen, "https_listen", plain, "[server] listen"),
            (self.http_listen, "http_listen", plain, "[server] listen"),
        ] {
            if addrs_clash(a, b) {
                return Err(format!("{an} {a} and {bn} {b} use the same port"));
            }
        }
        if self.renew_check_interval.0 < Duration::from_secs(1) {
            return Err("renew_check_interval must be at least 1s".into());
        }
        for d in &self.domains {
            if d.parse::<std::net::IpAddr>().is_err() && !valid_dns_name(d) {
                return Err(format!("domains: {d:?} is neither a DNS name nor an IP address"));
            }
        }
        match self.mode {
            TlsMode::Off | TlsMode::SelfSigned => {}
            TlsMode::Files => {
                if self.cert_file.is_none() || self.key_file.is_none() {
                    return Err("mode \"files\" needs cert_file and key_file".into());
                }
            }
            TlsMode::Acme => {
                if self.domains.is_empty() {
                    return Err("mode \"acme\" needs at least one name in domains".into());
                }
                for d in &self.domains {
                    if d.parse::<std::net::IpAddr>().is_ok() || d.starts_with("*.") {
                        return Err(format!(
                            "domains: {d:?}: ACME HTTP-01 validates DNS names only (no IP addresses, no wildcards)"
                        ));
                    }
                }
                self.acme_directory_url()?;
                if self.acme_contact.contains(char::is_whitespace) {
                    return Err(format!("acme_contact {:?}: expected an e-mail address", self.acme_contact));
                }
            }
        }
        Ok(())
    }
}

/// Two listen addresses that cannot both be bound: same port, and the same IP or either one
/// the wildcard.
fn addrs_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A DNS name: dot-separated labels of letters, digits and `-` (not at either end), 1-63
/// bytes each, 253 in all; an optional leading `*.` wildcard label.
pub fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
