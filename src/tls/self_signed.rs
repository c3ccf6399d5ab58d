//! Self-signed certificates (rcgen, ECDSA P-256) for `mode = "self-signed"`, and the
//! placeholder served in `acme` mode until the first certificate is issued.
//!
//! The certificate is kept in the certificate directory and reused across restarts (so a
//! browser exception made once keeps working); it is remade only when it is unreadable, does
//! not cover the configured names, or expires within `renew_before`. Validity is 825 days,
//! the longest some clients accept for a server certificate.

use super::cert::{self, LoadedCert};
use super::store::{self, CertsDir};
use super::{TlsError, civil_from_days, unix_now};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a self-signed certificate is valid.
pub const VALIDITY_DAYS: i64 = 825;

/// The names used when `[tls] domains` is empty: this host's name and `<name>.local`,
/// `localhost`, 127.0.0.1, ::1, and the HTTPS listen address when it is a specific one.
pub fn default_names(https_listen: SocketAddr) -> Vec<String> {
    let mut names = Vec::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim().to_ascii_lowercase();
    if crate::config::valid_dns_name(&host) && host != "localhost" {
        names.push(host.clone());
        if !host.contains('.') {
            names.push(format!("{host}.local"));
        }
    }
    names.extend(["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()]);
    let ip = https_listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    names
}

/// A new self-signed certificate for `names` (DNS names and/or IP addresses): (chain PEM,
/// key PEM).
pub fn generate(names: &[String]) -> Result<(String, String), TlsError> {
    if names.is_empty() {
        return Err(TlsError::Certificate("a self-signed certificate needs at least one name".into()));
    }
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    dn.push(DnType::OrganizationName, "vigil (self-signed)");
    params.distinguished_name = dn;
    let today = unix_now().div_euclid(86_400);
    let (y, m, d) = ymd(today - 1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(today + VALIDITY_DAYS);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let mut serial = rand::random::<[u8; 16]>();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ymd(days: i64) -> (i32, u8, u8) {
    let (y, m, d) = civil_from_days(days);
    (i32::try_from(y).unwrap_or(2000), m, d)
}

/// The persisted self-signed certificate if it is usable for `names` for longer than
/// `renew_before`, else a new one (persisted). The flag says whether it was made now.
pub fn load_or_create(
    store: &CertsDir,
    names: &[String],
    renew_before: Duration,
) -> Result<(LoadedCert, bool), TlsError> {
    let (cert_path, key_path) = (store.self_signed_cert(), store.self_signed_key());
    if cert_path.exists() {
        match cert::from_files(&cert_path, &key_path) {
            Ok(c) => {
                let missing = c.info.missing(names);
                let left = c.info.seconds_left(unix_now());
                if missing.is_empty() && left > i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX) {
                    return Ok((c, false));
                }
                tracing::info!(?missing, days_left = left / 86_400, "remaking the self-signed certificate");
            }
            Err(e) => tracing::warn!("self-signed certificate unusable, making a new one: {e}"),
        }
    }
    let (chain, key) = generate(names)?;
    store.ensure()?;
    store::write_atomic(&key_path, key.as_bytes(), store::SECRET_MODE)?;
    store::write_atomic(&cert_path, chain.as_bytes(), store::PUBLIC_MODE)?;
    Ok((cert::from_pem(chain.as_bytes(), key.as_bytes())?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_covers_names_and_is_reused() {
        let dir = std::env::temp_dir().join(format!("vigil-selfsigned-test-{}", std::process::id()));
        let store = CertsDir::new(&dir);
        let names: Vec<String> = ["vigil.local", "192.168.1.10", "::1"].iter().map(|s| (*s).to_owned()).collect();
        let (a, made) = load_or_create(&store, &names, Duration::from_secs(30 * 86_400)).unwrap();
        assert!(made);
        assert!(a.info.missing(&names).is_empty(), "{:?}", a.info.names);
        let left = a.info.seconds_left(unix_now());
        assert!(left > 800 * 86_400 && left <= VALIDITY_DAYS * 86_400, "{left}");
        let (b, made) = load_or_create(&store, &names, Duration::from_secs(30 * 86_400)).unwrap();
        assert!(!made);
        assert_eq!(a.info.serial, b.info.serial);
        // A new name, or a renew window longer than the validity, makes a new one.
        let more = [names.clone(), vec!["cam.example.org".to_owned()]].concat();
        let (c, made) = load_or_create(&store, &more, Duration::from_secs(30 * 86_400)).unwrap();
        assert!(made);
        assert_ne!(c.info.serial, a.info.serial);
        let (_, made) = load_or_create(&store, &more, Duration::from_secs(900 * 86_400)).unwrap();
        assert!(made);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn default_names_include_loopback() {
        let n = default_names("192.168.1.10:443".parse().unwrap());
        assert!(n.contains(&"localhost".to_owned()));
        assert!(n.contains(&"127.0.0.1".to_owned()));
        assert!(n.contains(&"192.168.1.10".to_owned()));
        assert!(!default_names("0.0.0.0:443".parse().unwrap()).contains(&"0.0.0.0".to_owned()));
    }
}
