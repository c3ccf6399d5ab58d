//! Access control: who may reach which route and camera. Design and operation:
//! `docs/auth.md`.
//!
//! This module owns users (argon2id passwords), API tokens (stored as SHA-256), browser
//! sessions (cookie, server-side table), login rate limiting, shared links (HMAC-signed
//! URLs that expire) and the middleware that applies all of it to the router
//! ([`guard::protect`]). It decides; it never serves media, and it does not touch the WHIP
//! routes (`/whip/...`: the WHIP backend checks publishers itself, with each camera's
//! `publish_token` or [`Auth::token`]) or CORS preflights.
//!
//! - [`config`]: `[auth]` and the users file.
//! - [`password`]: hashing, tokens, constant-time comparison.
//! - [`session`]: the session table and its file.
//! - [`limit`]: failed-login counting.
//! - [`share`]: signing and checking shared links.
//! - [`guard`]: the middleware: identify, authorize, refuse.
//! - [`routes`]: `/login`, `/logout`, `/api/session`, `/api/share`.
//! - [`manage`]: what `vigil user ...` / `vigil token ...` do to the users file.
//!
//! Whether authentication is on is decided once at start ([`Auth::required`]): on when any
//! listener is not loopback, unless `[auth] required` says otherwise. Users and tokens are
//! read again whenever the users file changes ([`Auth::watch_users_file`]), so `vigil user`
//! and `vigil token` apply to a running server. It then applies to every
//! listener alike (a loopback listener may sit behind a reverse proxy, so it is not trusted).

pub mod config;
pub mod error;
pub mod files;
pub mod guard;
pub mod limit;
pub mod manage;
pub mod password;
pub mod routes;
pub mod session;
pub mod share;

pub use config::{AuthConfig, Role};
pub use error::AuthError;
pub use guard::protect;
pub use routes::router;

use crate::config::{Config, TlsMode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Password verifications running at once (each takes ~19 MiB and tens of ms of CPU).
const VERIFY_SLOTS: usize = 2;

/// Why the auth state could not be set up (the server does not start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The users file is unreadable or wrong.
    #[error(transparent)]
    Users(#[from] config::UsersError),
    /// Authentication is required and nobody could log in.
    #[error("{0}")]
    NoCredentials(String),
    /// The share key or the random source failed.
    #[error("{0}")]
    Key(String),
}

/// Which cameras a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraScope {
    /// Every camera.
    All,
    /// These cameras only.
    Only(Vec<String>),
}

impl CameraScope {
    fn from_list(role: Role, list: &[String]) -> Self {
        if role == Role::Admin || list.iter().any(|c| c == "*") {
            CameraScope::All
        } else {
            CameraScope::Only(list.to_vec())
        }
    }

    /// Whether `camera` is in scope.
    pub fn contains(&self, camera: &str) -> bool {
        match self {
            CameraScope::All => true,
            CameraScope::Only(list) => list.iter().any(|c| c == camera),
        }
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user with a password (browser session cookie).
    User,
    /// An API token.
    Token,
}

/// A user or a token, with what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User or token name.
    pub name: String,
    /// User or token.
    pub kind: PrincipalKind,
    /// Its role.
    pub role: Role,
    /// Its cameras.
    pub cameras: CameraScope,
}

/// What the current request may see: put in request extensions by the guard for every
/// request it lets through.
#[derive(Debug, Clone)]
pub struct Access {
    /// The caller, if it identified itself.
    pub principal: Option<Arc<Principal>>,
    open: bool,
}

impl Access {
    /// Authentication is off: everything is visible.
    pub fn open() -> Self {
        Self { principal: None, open: true }
    }

    /// What `p` may see.
    pub fn of(p: Arc<Principal>) -> Self {
        Self { principal: Some(p), open: false }
    }

    /// Nobody identified: nothing is visible. Also what a shared link gets (the guard has
    /// already checked that the signature covers this one path).
    pub fn none() -> Self {
        Self { principal: None, open: false }
    }

    /// Whether authentication is off.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether the caller may see `camera`.
    pub fn may_see(&self, camera: &str) -> bool {
        self.open || self.principal.as_ref().is_some_and(|p| p.cameras.contains(camera))
    }

    /// Whether the caller may see `/metrics` and `/api/status`.
    pub fn is_admin(&self) -> bool {
        self.open || self.principal.as_ref().is_some_and(|p| p.role == Role::Admin)
    }
}

struct UserRecord {
    password_hash: String,
    principal: Arc<Principal>,
}

struct TokenRecord {
    hash: [u8; 32],
    principal: Arc<Principal>,
}

/// Users and tokens as last read from the config file and the users file.
struct Credentials {
    users: HashMap<String, UserRecord>,
    tokens: Vec<TokenRecord>,
}

/// Where the credentials come from, to read them again when the users file changes.
struct CredentialSource {
    auth: config::AuthConfig,
    users_path: PathBuf,
    cameras: Vec<String>,
}

impl CredentialSource {
    /// Reads and checks the users file and `[auth]`'s own entries.
    fn load(&self) -> Result<(Credentials, config::UsersFile), SetupError> {
        let file = config::UsersFile::load(&self.users_path)?;
        let all = config::merged(&self.auth, &file, &self.users_path)?;
        let principal = |name: &str, kind, role, cameras: &[String]| {
            for c in cameras {
                if c != "*" && !self.cameras.contains(c) {
                    tracing::warn!(name, camera = %c, "auth: a user or token names a camera that is not configured");
                }
            }
            Arc::new(Principal { name: name.to_owned(), kind, role, cameras: CameraScope::from_list(role, cameras) })
        };
        let users = all
            .users
            .iter()
            .map(|u| {
                let p = principal(&u.name, PrincipalKind::User, u.role, &u.cameras);
                (u.name.clone(), UserRecord { password_hash: u.password_hash.clone(), principal: p })
            })
            .collect();
        let tokens = all
            .tokens
            .iter()
            .filter_map(|t| {
                let hash = password::unhex::<32>(t.hash.strip_prefix("sha256:")?)?;
                Some(TokenRecord { hash, principal: principal(&t.name, PrincipalKind::Token, t.role, &t.cameras) })
            })
            .collect();
        Ok((Credentials { users, tokens }, all))
    }

    /// What identifies the users file's current version (missing: `None`).
    fn version(&self) -> Option<(std::time::SystemTime, u64)> {
        let m = std::fs::metadata(&self.users_path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }
}

/// How often the users file is checked for changes (`vigil user ...`, `vigil token ...`).
const USERS_FILE_POLL: Duration = Duration::from_secs(2);

/// The access-control state shared by the guard and the auth routes.
pub struct Auth {
    required: bool,
    creds: RwLock<Arc<Credentials>>,
    source: CredentialSource,
    dummy_hash: String,
    /// Browser sessions.
    pub sessions: Arc<session::Sessions>,
    limiter: Mutex<limit::LoginLimiter>,
    /// Shared-link signatures.
    pub signer: share::Signer,
    share_max_ttl: Duration,
    verify_slots: tokio::sync::Semaphore,
}

/// Whether `cfg` needs authentication: `[auth] required`, else "some listener is not
/// loopback".
pub fn required_by(cfg: &Config) -> bool {
    cfg.auth.required.unwrap_or_else(|| {
        !cfg.server.listen.ip().is_loopback()
            || (cfg.tls.mode != TlsMode::Off && !cfg.tls.https_listen.ip().is_loopback())
    })
}

impl Auth {
    /// Sets up access control for `serve`: reads the users file, loads or creates the share
    /// key and the sessions in `data_dir`. Refuses when authentication is required and no
    /// user or token exists.
    pub fn from_config(cfg: &Config, config_path: Option<&Path>, data_dir: &Path) -> Result<Arc<Self>, SetupError> {
        let required = required_by(cfg);
        let users_path = cfg.auth.users_file_path(config_path);
        let source = CredentialSource {
            auth: cfg.auth.clone(),
            users_path: users_path.clone(),
            cameras: cfg.cameras.iter().map(|c| c.name.clone()).collect(),
        };
        let (creds, all) = source.load()?;
        if required && all.users.is_empty() && all.tokens.is_empty() {
            let why = match cfg.auth.required {
                Some(true) => "[auth] required = true".to_owned(),
                _ => format!("a listener is not on loopback ({})", listeners(cfg)),
            };
            let config_arg = config_path.map(|p| format!(" --config {}", p.display())).unwrap_or_default();
            return Err(SetupError::NoCredentials(format!(
                "authentication is required ({why}) but no users or API tokens are configured \
                 (looked in the config file and {}): add one with `vigil user add NAME --role admin{config_arg}`, \
                 or set [auth] required = false to serve without authentication",
                std::path::absolute(&users_path).unwrap_or_else(|_| users_path.clone()).display()
            )));
        }
        if users_path.exists() && files::readable_by_others(&users_path) {
            tracing::warn!(path = %users_path.display(), "the users file is readable by other users: chmod 600 it");
        }
        // Unknown names are checked against this, so failing takes as long for them as for
        // real users.
        let dummy_hash = if required {
            let pw = password::hex(&password::random_bytes::<16>().map_err(SetupError::Key)?);
            password::hash_password(&pw).map_err(SetupError::Key)?
        } else {
            String::new()
        };
        let sessions = Arc::new(session::Sessions::new(cfg.auth.session_ttl.0.as_secs() as i64));
        if required {
            let n = session::load(&sessions, data_dir);
            tracing::info!(
                users = all.users.len(),
                tokens = all.tokens.len(),
                sessions = n,
                users_file = %users_path.display(),
                "authentication required"
            );
        } else {
            tracing::info!("authentication off (loopback only; set [auth] required = true to turn it on)");
        }
        Ok(Arc::new(Self {
            required,
            creds: RwLock::new(Arc::new(creds)),
            source,
            dummy_hash,
            sessions,
            limiter: Mutex::new(limit::LoginLimiter::new(cfg.auth.login_max_failures, cfg.auth.login_window.0)),
            signer: share::Signer::load_or_create(data_dir).map_err(SetupError::Key)?,
            share_max_ttl: cfg.auth.share_max_ttl.0,
            verify_slots: tokio::sync::Semaphore::new(VERIFY_SLOTS),
        }))
    }

    /// Whether requests need credentials.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The longest a shared link may live.
    pub fn share_max_ttl(&self) -> Duration {
        self.share_max_ttl
    }

    fn creds(&self) -> Arc<Credentials> {
        self.creds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the users file again and applies it: added users and tokens work, removed ones
    /// (and their sessions) stop working, changed roles and cameras apply to the next
    /// request. On an error the previous credentials stay. Returns (users, tokens).
    pub fn reload(&self) -> Result<(usize, usize), SetupError> {
        let (creds, all) = self.source.load()?;
        *self.creds.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(creds);
        Ok((all.users.len(), all.tokens.len()))
    }

    /// Reloads the users file whenever it changes, until `shutdown` turns true.
    pub async fn watch_users_file(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut seen = self.source.version();
        loop {
            tokio::select! {
                () = tokio::time::sleep(USERS_FILE_POLL) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
            let now = self.source.version();
            if now == seen {
                continue;
            }
            seen = now;
            match self.reload() {
                Ok((users, tokens)) => {
                    tracing::info!(users, tokens, file = %self.source.users_path.display(), "users file reloaded");
                    if self.required && users == 0 && tokens == 0 {
                        tracing::warn!("no users or tokens left: nobody can log in until one is added");
                    }
                }
                Err(e) => tracing::warn!(
                    file = %self.source.users_path.display(),
                    error = %e,
                    "users file changed but cannot be used; keeping the previous users and tokens"
                ),
            }
        }
    }

    /// The principal of an API token, comparing against every stored hash in constant time.
    pub fn token(&self, presented: &str) -> Option<Arc<Principal>> {
        let h = password::sha256(presented.as_bytes());
        let mut found = None;
        for t in &self.creds().tokens {
            // No early exit: the time taken does not depend on which token matched.
            if password::ct_eq(&t.hash, &h) {
                found = Some(t.principal.clone());
            }
        }
        found
    }

    /// The principal behind a session, if the session is alive and its user unchanged.
    pub fn session(&self, id: &str, now: i64) -> Option<(Arc<Principal>, session::Found)> {
        let found = self.sessions.lookup(id, now)?;
        let creds = self.creds();
        let Some(user) = creds.users.get(&found.session.user) else {
            // The user was removed.
            self.sessions.remove(id);
            return None;
        };
        if session::fingerprint(&user.password_hash) != found.session.fingerprint {
            self.sessions.remove(id);
            return None;
        }
        Some((user.principal.clone(), found))
    }

    /// Checks a password login; on success a new session (cookie id, session).
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        addr: Option<IpAddr>,
    ) -> Result<(String, session::Session, Arc<Principal>), AuthError> {
        if !self.required {
            return Err(AuthError::NotFound("authentication is not enabled on this server".into()));
        }
        // The limit is checked once a verification slot is ours, so a burst of parallel
        // attempts cannot all pass the check before the first failure is counted.
        let _slot = self.verify_slots.acquire().await.map_err(|_| AuthError::Internal("verifier closed".into()))?;
        let check = self.limiter.lock().unwrap_or_else(|p| p.into_inner()).check(addr, user, Instant::now());
        if let Err(wait) = check {
            metrics::counter!("vigil_auth_logins_total", "result" => "limited").increment(1);
            let secs = wait.as_secs().max(1);
            return Err(AuthError::TooManyRequests(
                format!("too many failed logins; try again in {secs} s"),
                Duration::from_secs(secs),
            ));
        }
        let creds = self.creds();
        let record = creds.users.get(user);
        let hash = record.map_or_else(|| self.dummy_hash.clone(), |r| r.password_hash.clone());
        let pw = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || password::verify_password(&pw, &hash))
            .await
            .map_err(|e| AuthError::Internal(format!("password check: {e}")))?;
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        match (record, ok) {
            (Some(r), true) => {
                limiter.success(user);
                drop(limiter);
                let fp = session::fingerprint(&r.password_hash);
                let (id, s) = self.sessions.create(user, fp, session::unix_now()).map_err(AuthError::Internal)?;
                metrics::counter!("vigil_auth_logins_total", "result" => "ok").increment(1);
                tracing::info!(user, ?addr, "login");
                Ok((id, s, r.principal.clone()))
            }
            _ => {
                limiter.failure(addr, user, Instant::now());
                drop(limiter);
                metrics::counter!("vigil_auth_logins_total", "result" => "failed").increment(1);
                tracing::warn!(user = %user.chars().take(64).collect::<String>(), ?addr, "failed login");
                Err(AuthError::Unauthorized("wrong user name or password".into()))
            }
        }
    }
}

fn listeners(cfg: &Config) -> String {
    let mut s = format!("[server] listen {}", cfg.server.listen);
    if cfg.tls.mode != TlsMode::Off {
        s.push_str(&format!(", [tls] https_listen {}", cfg.tls.https_listen));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_by_listen_address() {
        let mut cfg = Config::default_with_test_camera();
        assert!(!required_by(&cfg));
        cfg.server.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(required_by(&cfg));
        cfg.auth.required = Some(false);
        assert!(!required_by(&cfg));
        let mut cfg = Config::default_with_test_camera();
        cfg.tls.mode = TlsMode::SelfSigned;
        assert!(required_by(&cfg), "https_listen defaults to 0.0.0.0:443");
        cfg.tls.https_listen = "127.0.0.1:8443".parse().unwrap();
        assert!(!required_by(&cfg));
        cfg.auth.required = Some(true);
        assert!(required_by(&cfg));
    }

    #[test]
    fn refuses_to_start_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default_with_test_camera();
        cfg.auth.required = Some(true);
        let cfg_path = dir.path().join("vigil.toml");
        let e = Auth::from_config(&cfg, Some(&cfg_path), dir.path()).err().unwrap().to_string();
        assert!(e.contains("no users or API tokens") && e.contains("vigil user add"), "{e}");
        let (token, hash) = password::new_token().unwrap();
        cfg.auth.tokens.push(config::TokenEntry {
            name: "t".into(),
            hash,
            role: Role::Viewer,
            cameras: vec!["test".into()],
        });
        let auth = Auth::from_config(&cfg, Some(&cfg_path), dir.path()).unwrap();
        let p = auth.token(&token).unwrap();
        assert_eq!(p.name, "t");
        assert!(Access::of(p.clone()).may_see("test") && !Access::of(p).may_see("other"));
        assert!(auth.token("vigil_wrong").is_none());
    }
}
