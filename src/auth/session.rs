//! Browser sessions: random ids handed out as a cookie, kept server-side with their user and
//! expiry, persisted in `<data_dir>/auth-sessions.json` (0600) so a restart logs nobody out.
//!
//! Only the SHA-256 of an id is kept (in memory and on disk): reading the file does not give
//! anyone a usable cookie. A session also records a fingerprint of its user's password hash;
//! changing the password (or removing the user) ends the user's sessions.
//!
//! Expiry slides: a session lives `ttl` after it was created or last renewed, and a request in
//! the second half of that life renews it (the caller sends the cookie again with the new
//! `Max-Age`). So an idle session ends after at most `ttl`; a session in use never does, and
//! the file is rewritten at most about once per `ttl / 2` per session.
//!
//! Sans-IO core: [`Sessions`] takes `now` (Unix seconds) and never touches the disk itself;
//! [`Sessions::snapshot`] gives what to write and [`persist_task`] writes it when it changed.

use super::password::{hex, random_bytes, sha256, unhex};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The sessions file's name inside `data_dir`.
pub const SESSIONS_FILE: &str = "auth-sessions.json";
/// Sessions kept per user; the one closest to expiry goes first.
pub const MAX_PER_USER: usize = 32;
/// Sessions kept in all.
pub const MAX_TOTAL: usize = 10_000;

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user's name.
    pub user: String,
    /// Fingerprint of the user's password hash when the session began.
    pub fingerprint: String,
    /// Unix seconds after which the session is gone.
    pub expires: i64,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The session (expiry already renewed if it was due).
    pub session: Session,
    /// `true` if this lookup renewed it: send the cookie again.
    pub renewed: bool,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    id_sha256: String,
    #[serde(flatten)]
    session: Session,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    sessions: Vec<FileEntry>,
}

/// The session table.
pub struct Sessions {
    ttl: i64,
    map: Mutex<HashMap<[u8; 32], Session>>,
    changed: tokio::sync::Notify,
}

/// A fingerprint of a password hash (16 hex digits of its SHA-256).
pub fn fingerprint(password_hash: &str) -> String {
    hex(&sha256(password_hash.as_bytes())[..8])
}

impl Sessions {
    /// An empty table; sessions live `ttl_s` seconds.
    pub fn new(ttl_s: i64) -> Self {
        Self { ttl: ttl_s.max(60), map: Mutex::new(HashMap::new()), changed: tokio::sync::Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session lifetime in seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Starts a session for `user`; returns the id to put in the cookie and the session.
    pub fn create(&self, user: &str, fingerprint: String, now: i64) -> Result<(String, Session), String> {
        let id = hex(&random_bytes::<32>()?);
        let session = Session { user: user.to_owned(), fingerprint, expires: now + self.ttl };
        let mut map = self.lock();
        map.retain(|_, s| s.expires >= now);
        let mut mine: Vec<([u8; 32], i64)> =
            map.iter().filter(|(_, s)| s.user == user).map(|(k, s)| (*k, s.expires)).collect();
        if mine.len() >= MAX_PER_USER {
            mine.sort_by_key(|(_, e)| *e);
            for (k, _) in &mine[..=mine.len() - MAX_PER_USER] {
                map.remove(k);
            }
        }
        if map.len() >= MAX_TOTAL
            && let Some(k) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&k);
        }
        map.insert(sha256(id.as_bytes()), session.clone());
        drop(map);
        self.changed.notify_one();
        Ok((id, session))
    }

    /// The live session with this id, renewed if it is in the second half of its life.
    pub fn lookup(&self, id: &str, now: i64) -> Option<Found> {
        let key = sha256(id.as_bytes());
        let mut map = self.lock();
        let s = map.get_mut(&key)?;
        if s.expires < now {
            map.remove(&key);
            drop(map);
            self.changed.notify_one();
            return None;
        }
        let renewed = s.expires - now < self.ttl / 2;
        if renewed {
            s.expires = now + self.ttl;
        }
        let session = s.clone();
        drop(map);
        if renewed {
            self.changed.notify_one();
        }
        Some(Found { session, renewed })
    }

    /// Ends a session (logout). `true` if there was one.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self.lock().remove(&sha256(id.as_bytes())).is_some();
        if removed {
            self.changed.notify_one();
        }
        removed
    }

    /// Sessions alive now.
    pub fn count(&self, now: i64) -> usize {
        self.lock().values().filter(|s| s.expires >= now).count()
    }

    /// The file contents for the live sessions.
    pub fn snapshot(&self, now: i64) -> Vec<u8> {
        let sessions = self
            .lock()
            .iter()
            .filter(|(_, s)| s.expires >= now)
            .map(|(k, s)| FileEntry { id_sha256: hex(k), session: s.clone() })
            .collect();
        serde_json::to_vec_pretty(&File { version: 1, sessions }).unwrap_or_default()
    }

    /// Loads a snapshot (unexpired entries only). A file that does not parse is ignored with
    /// a warning: everyone logs in again.
    pub fn restore(&self, data: &[u8], now: i64) -> usize {
        let file: File = match serde_json::from_slice(data) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable sessions file: everyone has to log in again");
                return 0;
            }
        };
        let mut map = self.lock();
        for e in file.sessions {
            if let Some(k) = unhex::<32>(&e.id_sha256)
                && e.session.expires >= now
                && map.len() < MAX_TOTAL
            {
                map.insert(k, e.session);
            }
        }
        map.len()
    }

    /// Resolves when something changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Loads `<data_dir>/auth-sessions.json` into `sessions`.
pub fn load(sessions: &Sessions, data_dir: &Path) -> usize {
    let path = data_dir.join(SESSIONS_FILE);
    match std::fs::read(&path) {
        Ok(data) => sessions.restore(&data, unix_now()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the sessions file");
            0
        }
    }
}

/// Writes the sessions file each time the table changes (coalescing bursts), until the
/// process ends.
pub async fn persist_task(sessions: Arc<Sessions>, data_dir: PathBuf) {
    let path = data_dir.join(SESSIONS_FILE);
    loop {
        sessions.changed().await;
        let data = sessions.snapshot(unix_now());
        let p = path.clone();
        match tokio::task::spawn_blocking(move || super::files::write_private(&p, &data)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(path = %path.display(), error = %e, "cannot write the sessions file"),
            Err(e) => tracing::warn!(error = %e, "sessions writer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_renew_expire_remove() {
        let s = Sessions::new(1000);
        let (id, sess) = s.create("alice", "fp".into(), 10_000).unwrap();
        assert_eq!(sess.expires, 11_000);
        assert_eq!(id.len(), 64);
        // First half of its life: no renewal.
        let f = s.lookup(&id, 10_400).unwrap();
        assert!(!f.renewed);
        assert_eq!(f.session.expires, 11_000);
        // Second half: renewed to a full ttl from now.
        let f = s.lookup(&id, 10_600).unwrap();
        assert!(f.renewed);
        assert_eq!(f.session.expires, 11_600);
        assert!(s.lookup(&id, 11_601).is_none());
        assert!(s.lookup(&id, 10_700).is_none(), "an expired session came back");
        let (id, _) = s.create("alice", "fp".into(), 20_000).unwrap();
        assert!(s.lookup("nope", 20_000).is_none());
        assert!(s.remove(&id));
        assert!(!s.remove(&id));
        assert!(s.lookup(&id, 20_000).is_none());
    }

    #[test]
    fn per_user_cap() {
        let s = Sessions::new(1000);
        let first = s.create("bob", String::new(), 0).unwrap().0;
        for i in 1..=MAX_PER_USER as i64 {
            s.create("bob", String::new(), i).unwrap();
        }
        assert_eq!(s.count(0), MAX_PER_USER);
        assert!(s.lookup(&first, MAX_PER_USER as i64).is_none(), "the oldest session was not dropped");
    }

    #[test]
    fn snapshot_round_trip_keeps_no_ids() {
        let s = Sessions::new(1000);
        let (id, _) = s.create("alice", "fp".into(), 100).unwrap();
        let snap = s.snapshot(100);
        let text = String::from_utf8(snap.clone()).unwrap();
        assert!(!text.contains(&id), "the file holds a usable session id");
        let t = Sessions::new(1000);
        assert_eq!(t.restore(&snap, 200), 1);
        assert_eq!(t.lookup(&id, 200).unwrap().session.user, "alice");
        assert_eq!(Sessions::new(1000).restore(&snap, 5000), 0, "expired sessions restored");
        assert_eq!(Sessions::new(1000).restore(b"{not json", 0), 0);
    }
}
