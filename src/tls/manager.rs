//! The certificate manager: what is served at start, and the task that keeps it fresh.
//!
//! At start ([`Tls::new`]) the best certificate at hand goes into the resolver so HTTPS
//! answers at once: the saved ACME certificate (even one that is about to be replaced), else a
//! self-signed placeholder; the self-signed certificate; or the configured files.
//!
//! The task ([`Tls::spawn`]) checks at start and then every `renew_check_interval`:
//! - `acme`: obtains a certificate when there is none (or only the placeholder), when the
//!   saved one does not cover `domains`, was issued by another directory, or expires within
//!   `renew_before`. On failure the served certificate stays, the error goes to the log,
//!   `/api/status` and the metrics, and the next attempt comes after a backoff, jittered by
//!   ±20% and never later than the check interval: from 5 s, doubling, at most 5 min while
//!   the CA cannot be reached (a Pi that boots before its network is up gets its
//!   certificate moments after the network comes); from 10 min, doubling, at most 12 h when
//!   the CA answered with a failure (those count against its rate limits).
//! - `self-signed`: remakes the certificate when it no longer covers the names or expires
//!   within `renew_before`.
//! - `files`: re-reads `cert_file`/`key_file` and swaps when they changed (e.g. renewed by an
//!   external tool); a broken file is reported and the served certificate kept.

use super::acme::{AcmeClient, Challenges};
use super::cert::{self, LoadedCert};
use super::self_signed;
use super::status::{CertSource, TlsStatus};
use super::store::CertsDir;
use super::{CertResolver, TlsError, unix_now};
use crate::config::{TlsConfig, TlsMode};
use std::sync::Arc;
use std::time::Duration;

/// The longest one ACME attempt (account, order, validation, issuance) may take.
pub const ACME_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// First retry delay after the CA answered with a failure (a failed validation, a problem
/// document); doubles per consecutive failure. These count against the CA's limits (Let's
/// Encrypt: 5 failed validations per hostname per hour), so they stay slow.
pub const RETRY_BASE: Duration = Duration::from_secs(600);
/// Longest retry delay after the CA refused.
pub const RETRY_MAX: Duration = Duration::from_secs(12 * 3600);
/// First retry delay when the CA was not reached (no network yet at boot, DNS, a refused
/// connection) or a local file failed: such attempts cost the CA nothing, so they start
/// within seconds; doubles per consecutive failure.
pub const RETRY_UNREACHED_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay when the CA was not reached.
pub const RETRY_UNREACHED_MAX: Duration = Duration::from_secs(300);

/// Why an attempt failed, as far as the retry delay goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The CA answered and refused (counts against its rate limits).
    Refused,
    /// The CA was not reached, or something local failed.
    Unreached,
}

impl Failure {
    /// The kind of `e`.
    pub fn of(e: &TlsError) -> Failure {
        match e {
            TlsError::Order(_) | TlsError::Acme(instant_acme::Error::Api(_)) => Failure::Refused,
            _ => Failure::Unreached,
        }
    }
}

/// TLS for one server: the resolver the HTTPS listener uses, the status, the pending
/// HTTP-01 challenges.
#[derive(Debug)]
pub struct Tls {
    /// Handed to rustls; renewal swaps the certificate inside.
    pub resolver: Arc<CertResolver>,
    /// For `/api/status` and metrics.
    pub status: Arc<TlsStatus>,
    /// Served on `http_listen` during ACME orders.
    pub challenges: Challenges,
    cfg: TlsConfig,
    store: CertsDir,
    /// Why the saved certificate could not be used at start (reported as the first renewal
    /// reason).
    startup_problem: Option<String>,
}

impl Tls {
    /// Loads what can be served now (see the module docs). Fails for `files` mode when the
    /// files are unusable, and when no certificate can be made at all.
    pub fn new(cfg: &TlsConfig) -> Result<Self, TlsError> {
        let store = CertsDir::new(&cfg.certs_dir);
        let status = Arc::new(TlsStatus::new(cfg));
        let resolver = Arc::new(CertResolver::new());
        let mut tls = Self {
            resolver,
            status,
            challenges: Challenges::default(),
            cfg: cfg.clone(),
            store,
            startup_problem: None,
        };
        match cfg.mode {
            TlsMode::Off => {}
            TlsMode::SelfSigned => {
                let (c, made) = self_signed::load_or_create(&tls.store, &tls.self_signed_names(), cfg.renew_before.0)?;
                tracing::info!(made, serial = %c.info.serial, names = ?c.info.names, "self-signed certificate");
                tls.serve(CertSource::SelfSigned, c);
            }
            TlsMode::Files => {
                let c = tls.load_files()?;
                tls.warn_missing_names(&c);
                tls.serve(CertSource::Files, c);
            }
            TlsMode::Acme => match cert::from_files(&tls.store.acme_cert(), &tls.store.acme_key()) {
                Ok(c) => {
                    tracing::info!(serial = %c.info.serial, names = ?c.info.names, not_after = %super::rfc3339(c.info.not_after), "loaded the saved ACME certificate");
                    tls.serve(CertSource::Acme, c);
                }
                Err(e) => {
                    if tls.store.acme_cert().exists() {
                        tracing::warn!("saved ACME certificate unusable ({e}); a new one will be requested");
                        tls.startup_problem = Some(format!("saved certificate unusable: {e}"));
                    }
                    let (c, _) = self_signed::load_or_create(&tls.store, &tls.self_signed_names(), cfg.renew_before.0)?;
                    tracing::info!("serving a self-signed placeholder until the ACME certificate is issued");
                    tls.serve(CertSource::SelfSignedPlaceholder, c);
                }
            },
        }
        Ok(tls)
    }

    /// Starts the check/renew task; it ends when `shutdown` turns true.
    pub fn spawn(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run(shutdown).await })
    }

    async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval = self.cfg.renew_check_interval.0;
        let mut acme = match self.cfg.mode {
            TlsMode::Acme => match AcmeClient::new(&self.cfg, self.store.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.status.attempt_failed(&e.to_string());
                    tracing::error!("ACME disabled: {e}");
                    return;
                }
            },
            _ => None,
        };
        loop {
            let delay = match (&mut acme, self.cfg.mode) {
                (Some(client), _) => self.check_acme(client).await,
                (None, TlsMode::SelfSigned) => self.check_self_signed(),
                (None, TlsMode::Files) => self.check_files(),
                (None, _) => return,
            };
            let delay = delay.min(interval);
            self.status.set_next_check(unix_now().saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX)));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }

    fn serve(&self, source: CertSource, c: LoadedCert) {
        self.resolver.set(c.key);
        self.status.set_cert(source, &c.info);
    }

    fn self_signed_names(&self) -> Vec<String> {
        if self.cfg.domains.is_empty() {
            self_signed::default_names(self.cfg.https_listen)
        } else {
            self.cfg.domains.clone()
        }
    }

    fn load_files(&self) -> Result<LoadedCert, TlsError> {
        match (&self.cfg.cert_file, &self.cfg.key_file) {
            (Some(c), Some(k)) => cert::from_files(c, k),
            _ => Err(TlsError::Certificate("mode \"files\" needs cert_file and key_file".into())),
        }
    }

    fn warn_missing_names(&self, c: &LoadedCert) {
        let missing = c.info.missing(&self.cfg.domains);
        if !missing.is_empty() {
            tracing::warn!(?missing, names = ?c.info.names, "the certificate does not cover every configured domain");
        }
    }

    fn renew_before_s(&self) -> i64 {
        i64::try_from(self.cfg.renew_before.0.as_secs()).unwrap_or(i64::MAX)
    }

    /// Why the ACME certificate must be (re)issued now, or `None` if it is fine.
    fn acme_due(&self, client: &AcmeClient) -> Option<String> {
        let Some((source, info)) = self.status.cert() else {
            return Some("no certificate".into());
        };
        if source != CertSource::Acme {
            return Some(self.startup_problem.clone().unwrap_or_else(|| "no certificate yet".into()));
        }
        let missing = info.missing(&self.cfg.domains);
        if !missing.is_empty() {
            return Some(format!("certificate does not cover {}", missing.join(", ")));
        }
        if let Some(meta) = client.saved_meta()
            && meta.directory != client.directory()
        {
            return Some(format!("certificate was issued by {}", meta.directory));
        }
        let left = info.seconds_left(unix_now());
        if left <= 0 {
            return Some("certificate expired".into());
        }
        if left <= self.renew_before_s() {
            return Some(format!("certificate expires in {}", human(left)));
        }
        None
    }

    async fn check_acme(&self, client: &mut AcmeClient) -> Duration {
        let interval = self.cfg.renew_check_interval.0;
        let Some(reason) = self.acme_due(client) else {
            tracing::debug!("ACME certificate is current");
            return interval;
        };
        self.status.attempt_started(&reason);
        tracing::info!(%reason, domains = ?self.cfg.domains, directory = %client.directory(), "requesting a certificate");
        let result = match tokio::time::timeout(
            ACME_ATTEMPT_TIMEOUT,
            client.obtain(&self.cfg.domains, &self.challenges),
        )
        .await
        {
            Err(_) => Err(TlsError::Timeout(ACME_ATTEMPT_TIMEOUT)),
            Ok(r) => r.and_then(|issued| {
                Ok((cert::from_pem(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())?, issued))
            }),
        };
        match result {
            Ok((loaded, issued)) => {
                if let Err(e) = client.save(&issued, &self.cfg.domains) {
                    // Serve it anyway; the next start will request another one.
                    tracing::error!("could not save the new certificate: {e}");
                }
                tracing::info!(
                    serial = %loaded.info.serial,
                    names = ?loaded.info.names,
                    not_after = %super::rfc3339(loaded.info.not_after),
                    "new certificate in service"
                );
                self.serve(CertSource::Acme, loaded);
                self.status.attempt_ok();
                interval
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Records a failed attempt; returns the delay before the next one.
    fn failed(&self, e: &TlsError) -> Duration {
        let kind = Failure::of(e);
        let e = error_chain(e);
        let n = self.status.attempt_failed(&e);
        let retry = jittered(retry_delay(n, kind), rand::random::<f64>()).min(self.cfg.renew_check_interval.0);
        let serving =
            self.status.cert().map_or_else(|| "none".to_owned(), |(s, c)| format!("{s:?} serial {}", c.serial));
        tracing::warn!(failures = n, retry_in = ?retry, %serving, "certificate renewal failed, keeping the current certificate: {e}");
        retry
    }

    fn check_self_signed(&self) -> Duration {
        match self_signed::load_or_create(&self.store, &self.self_signed_names(), self.cfg.renew_before.0) {
            Ok((c, made)) => {
                if made {
                    self.status.attempt_started("self-signed certificate expiring or names changed");
                    tracing::info!(serial = %c.info.serial, "new self-signed certificate in service");
                    self.serve(CertSource::SelfSigned, c);
                    self.status.attempt_ok();
                }
                self.cfg.renew_check_interval.0
            }
            Err(e) => {
                self.status.attempt_started("self-signed certificate check");
                self.failed(&e)
            }
        }
    }

    fn check_files(&self) -> Duration {
        match self.load_files() {
            Ok(c) => {
                let current = self.status.cert().map(|(_, i)| i);
                if current.as_ref() != Some(&c.info) {
                    self.status.attempt_started("certificate files changed");
                    self.warn_missing_names(&c);
                    tracing::info!(serial = %c.info.serial, "reloaded the certificate files");
                    self.serve(CertSource::Files, c);
                    self.status.attempt_ok();
                } else if c.info.seconds_left(unix_now()) <= self.renew_before_s() {
                    tracing::warn!(
                        expires_in = %human(c.info.seconds_left(unix_now())),
                        "the certificate in cert_file expires soon; vigil does not renew files itself"
                    );
                }
                self.cfg.renew_check_interval.0
            }
            Err(e) => {
                self.status.attempt_started("reloading the certificate files");
                self.failed(&e)
            }
        }
    }
}

/// `e` and its sources, `: `-separated, without repeating a message already included (the
/// HTTP client's top-level message alone, e.g. "client error (Connect)", says too little).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

/// Delay before retry number `failures` (1 = after the first failure) of this kind.
pub fn retry_delay(failures: u32, kind: Failure) -> Duration {
    let (base, max) = match kind {
        Failure::Refused => (RETRY_BASE, RETRY_MAX),
        Failure::Unreached => (RETRY_UNREACHED_BASE, RETRY_UNREACHED_MAX),
    };
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// `d` spread by ±20% (`unit` uniform in [0, 1)), so that many servers that lost their
/// network together do not all ask the CA again in the same second.
pub fn jittered(d: Duration, unit: f64) -> Duration {
    d.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

fn human(secs: i64) -> String {
    if secs >= 2 * 86_400 {
        format!("{} days", secs / 86_400)
    } else if secs >= 2 * 3_600 {
        format!("{} hours", secs / 3_600)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = TlsError::Io { path: "x".into(), source: io };
        assert_eq!(error_chain(&e), "x: connection refused");
    }

    #[test]
    fn backoff() {
        let r = |n| retry_delay(n, Failure::Refused);
        assert_eq!(r(1), Duration::from_secs(600));
        assert_eq!(r(2), Duration::from_secs(1200));
        assert_eq!(r(3), Duration::from_secs(2400));
        assert_eq!(r(8), RETRY_MAX);
        assert_eq!(r(u32::MAX), RETRY_MAX);
        assert_eq!(r(0), Duration::from_secs(600));
        // Not reached: seconds first, capped at 5 minutes.
        let u = |n| retry_delay(n, Failure::Unreached);
        assert_eq!([u(1), u(2), u(3)], [5, 10, 20].map(Duration::from_secs));
        assert_eq!(u(7), RETRY_UNREACHED_MAX);
        assert_eq!(u(u32::MAX), RETRY_UNREACHED_MAX);
        // Jitter stays within ±20%.
        let d = Duration::from_secs(100);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(80));
        assert_eq!(jittered(d, 0.5), d);
        assert!(jittered(d, 0.999_999) <= Duration::from_secs(120));
    }

    #[test]
    fn failures_the_ca_answered_are_slow() {
        assert_eq!(Failure::of(&TlsError::Order("authorization invalid".into())), Failure::Refused);
        assert_eq!(Failure::of(&TlsError::Timeout(ACME_ATTEMPT_TIMEOUT)), Failure::Unreached);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(Failure::of(&TlsError::Io { path: "x".into(), source: io }), Failure::Unreached);
        assert_eq!(Failure::of(&TlsError::Acme(instant_acme::Error::Str("no nonce"))), Failure::Unreached);
    }
}
