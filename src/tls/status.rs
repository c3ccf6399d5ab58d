//! What vigil reports about TLS: `GET /api/status` (`"tls"`) and the metrics
//! `vigil_tls_cert_expiry_seconds` (the served certificate's notAfter, Unix seconds),
//! `vigil_tls_renewals_total{result="ok"|"error"}` and `vigil_tls_renewal_failures`
//! (consecutive failed attempts; 0 after a success).

use super::cert::CertInfo;
use super::{rfc3339, unix_now};
use crate::config::{TlsConfig, TlsMode};
use serde::Serialize;
use std::sync::Mutex;

/// Where the served certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertSource {
    /// Issued by the ACME CA.
    Acme,
    /// Made by vigil (`mode = "self-signed"`).
    SelfSigned,
    /// `cert_file` / `key_file`.
    Files,
    /// `acme` mode, before the first certificate was issued: a self-signed stand-in.
    SelfSignedPlaceholder,
}

/// The TLS state shared by the certificate manager and the HTTP handlers.
#[derive(Debug)]
pub struct TlsStatus {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    mode: Option<TlsMode>,
    domains: Vec<String>,
    https_listen: Option<String>,
    http_listen: Option<String>,
    acme_directory: Option<String>,
    check_interval_s: u64,
    renew_before_s: u64,
    cert: Option<(CertSource, CertInfo)>,
    last_attempt: Option<i64>,
    last_reason: Option<String>,
    last_result: Option<&'static str>,
    last_error: Option<String>,
    last_success: Option<i64>,
    failures: u32,
    next_check: Option<i64>,
}

/// `/api/status` → `tls`.
#[derive(Debug, Clone, Serialize)]
pub struct TlsSnapshot {
    /// `off`, `self-signed`, `files` or `acme`.
    pub mode: &'static str,
    /// The configured names.
    pub domains: Vec<String>,
    /// HTTPS listen address (absent when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_listen: Option<String>,
    /// Plain-HTTP (challenge + redirect) listen address (absent when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// ACME directory URL (acme mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_directory: Option<String>,
    /// The certificate being served.
    pub certificate: Option<CertSnapshot>,
    /// Renewal bookkeeping (absent when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal: Option<RenewalSnapshot>,
}

/// The served certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertSnapshot {
    /// Where it came from.
    pub source: CertSource,
    /// Subject alternative names.
    pub names: Vec<String>,
    /// Serial number (hex).
    pub serial: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity (RFC 3339, UTC).
    pub not_before: String,
    /// End of validity (RFC 3339, UTC).
    pub not_after: String,
    /// End of validity, Unix seconds.
    pub not_after_unix: i64,
    /// Seconds until it expires (negative once expired).
    pub expires_in_s: i64,
}

/// Renewal bookkeeping.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalSnapshot {
    /// When the last attempt to obtain (or make, or reload) a certificate started.
    pub last_attempt: Option<String>,
    /// Why that attempt was made (missing, expiring, names changed, ...).
    pub last_reason: Option<String>,
    /// `ok` or `error`.
    pub last_result: Option<&'static str>,
    /// The last attempt's error (null after a success).
    pub last_error: Option<String>,
    /// When a certificate was last obtained successfully.
    pub last_success: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// When the next check is due.
    pub next_check: Option<String>,
    /// `renew_check_interval` in seconds.
    pub check_interval_s: u64,
    /// `renew_before` in seconds.
    pub renew_before_s: u64,
}

impl TlsStatus {
    /// The state for `cfg` before anything happened.
    pub fn new(cfg: &TlsConfig) -> Self {
        let on = cfg.mode != TlsMode::Off;
        let inner = Inner {
            mode: Some(cfg.mode),
            domains: cfg.domains.clone(),
            https_listen: on.then(|| cfg.https_listen.to_string()),
            http_listen: on.then(|| cfg.http_listen.to_string()),
            acme_directory: (cfg.mode == TlsMode::Acme).then(|| cfg.acme_directory_url().ok()).flatten(),
            check_interval_s: cfg.renew_check_interval.0.as_secs(),
            renew_before_s: cfg.renew_before.0.as_secs(),
            ..Inner::default()
        };
        if on {
            metrics::describe_gauge!(
                "vigil_tls_cert_expiry_seconds",
                metrics::Unit::Seconds,
                "notAfter of the served TLS certificate (Unix time)"
            );
            metrics::describe_counter!("vigil_tls_renewals_total", "certificate renewal attempts by result");
            metrics::describe_gauge!("vigil_tls_renewal_failures", "consecutive failed certificate renewal attempts");
            metrics::gauge!("vigil_tls_renewal_failures").set(0.0);
        }
        Self { inner: Mutex::new(inner) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The certificate now served.
    pub fn set_cert(&self, source: CertSource, info: &CertInfo) {
        #[allow(clippy::cast_precision_loss)]
        // Unix seconds fit an f64 exactly until year 285 million
        metrics::gauge!("vigil_tls_cert_expiry_seconds").set(info.not_after as f64);
        self.lock().cert = Some((source, info.clone()));
    }

    /// The served certificate's source and leaf, if any.
    pub fn cert(&self) -> Option<(CertSource, CertInfo)> {
        self.lock().cert.clone()
    }

    /// An attempt to obtain a certificate starts, because of `reason`.
    pub fn attempt_started(&self, reason: &str) {
        let mut g = self.lock();
        g.last_attempt = Some(unix_now());
        g.last_reason = Some(reason.to_owned());
    }

    /// The attempt succeeded.
    pub fn attempt_ok(&self) {
        metrics::counter!("vigil_tls_renewals_total", "result" => "ok").increment(1);
        metrics::gauge!("vigil_tls_renewal_failures").set(0.0);
        let mut g = self.lock();
        g.last_result = Some("ok");
        g.last_error = None;
        g.last_success = Some(unix_now());
        g.failures = 0;
    }

    /// The attempt failed with `error`; returns the number of consecutive failures.
    pub fn attempt_failed(&self, error: &str) -> u32 {
        let mut g = self.lock();
        g.last_result = Some("error");
        g.last_error = Some(error.to_owned());
        g.failures = g.failures.saturating_add(1);
        metrics::counter!("vigil_tls_renewals_total", "result" => "error").increment(1);
        metrics::gauge!("vigil_tls_renewal_failures").set(f64::from(g.failures));
        g.failures
    }

    /// The next check is due at `unix` seconds.
    pub fn set_next_check(&self, unix: i64) {
        self.lock().next_check = Some(unix);
    }

    /// For `/api/status`.
    pub fn snapshot(&self) -> TlsSnapshot {
        let g = self.lock();
        let mode = g.mode.unwrap_or_default();
        let now = unix_now();
        TlsSnapshot {
            mode: mode.as_str(),
            domains: g.domains.clone(),
            https_listen: g.https_listen.clone(),
            http_listen: g.http_listen.clone(),
            acme_directory: g.acme_directory.clone(),
            certificate: g.cert.as_ref().map(|(source, c)| CertSnapshot {
                source: *source,
                names: c.names.clone(),
                serial: c.serial.clone(),
                issuer: c.issuer.clone(),
                not_before: rfc3339(c.not_before),
                not_after: rfc3339(c.not_after),
                not_after_unix: c.not_after,
                expires_in_s: c.seconds_left(now),
            }),
            renewal: (mode != TlsMode::Off).then(|| RenewalSnapshot {
                last_attempt: g.last_attempt.map(rfc3339),
                last_reason: g.last_reason.clone(),
                last_result: g.last_result,
                last_error: g.last_error.clone(),
                last_success: g.last_success.map(rfc3339),
                consecutive_failures: g.failures,
                next_check: g.next_check.map(rfc3339),
                check_interval_s: g.check_interval_s,
                renew_before_s: g.renew_before_s,
            }),
        }
    }
}
