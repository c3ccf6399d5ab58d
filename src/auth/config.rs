//! `[auth]` in `vigil.toml`, and the users file that `vigil user add` / `vigil token add`
//! write (`users_file`, default `users.toml` next to the config file).
//!
//! Users and tokens may sit in either place (`[[auth.users]]` / `[[auth.tokens]]` in the
//! config, or `[[users]]` / `[[tokens]]` in the users file); a name must be unique across
//! both. The users file belongs to the CLI: it is rewritten whole (mode 0600), so comments in
//! it are not kept. This module parses and checks; it never touches the network or sessions.

use crate::config::HumanDuration;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `true`: every request but the login page, `/healthz` and WHIP needs a user or token;
    /// `false`: nobody is asked. Unset: required as soon as any listener (`[server] listen`,
    /// or `[tls] https_listen` when TLS is on) is not a loopback address.
    pub required: Option<bool>,
    /// The file `vigil user add` and `vigil token add` write. Relative paths are relative to
    /// the config file's directory (the working directory without one). Default `users.toml`.
    pub users_file: Option<PathBuf>,
    /// A browser session ends after this long without being used (`"7d"`). Using it in the
    /// second half of its life extends it to a full `session_ttl` again.
    pub session_ttl: HumanDuration,
    /// The longest lifetime a shared (signed) link may be given (`"7d"`).
    pub share_max_ttl: HumanDuration,
    /// Failed logins allowed per client address, and per user name, within `login_window`;
    /// the next attempt gets `429` until the oldest failure leaves the window.
    pub login_max_failures: u32,
    /// The window failed logins are counted in (`"15m"`).
    pub login_window: HumanDuration,
    /// Users defined in the config file itself.
    pub users: Vec<UserEntry>,
    /// API tokens defined in the config file itself.
    pub tokens: Vec<TokenEntry>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: None,
            users_file: None,
            session_ttl: HumanDuration(Duration::from_secs(7 * 86_400)),
            share_max_ttl: HumanDuration(Duration::from_secs(7 * 86_400)),
            login_max_failures: 5,
            login_window: HumanDuration(Duration::from_secs(15 * 60)),
            users: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

/// What a user or token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watch live video and recordings, export clips and snapshots, share links to them, for
    /// the cameras it is allowed.
    #[default]
    Viewer,
    /// A viewer that may also publish (WHIP) to its cameras: an API token of this role works
    /// as a bearer token for `POST /whip/{camera}`, besides the camera's `publish_token`.
    Publisher,
    /// Everything, on every camera (its `cameras` list is ignored), plus `/metrics` and
    /// `/api/status`.
    Admin,
}

impl Role {
    /// The name used in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "publisher" => Ok(Role::Publisher),
            "admin" => Ok(Role::Admin),
            other => Err(format!("role {other:?}: expected viewer, publisher or admin")),
        }
    }
}

fn all_cameras() -> Vec<String> {
    vec!["*".into()]
}

/// A user who logs in with a password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// Login name: 1-64 of `A-Z a-z 0-9 . _ @ -`.
    pub name: String,
    /// The argon2id PHC string (`$argon2id$v=19$m=...`), as `vigil user add` writes it.
    pub password_hash: String,
    /// `viewer` (default), `publisher` or `admin`.
    #[serde(default)]
    pub role: Role,
    /// Camera names this user may see, or `["*"]` (default) for all.
    #[serde(default = "all_cameras")]
    pub cameras: Vec<String>,
}

/// An API token (`Authorization: Bearer ...`). Only its SHA-256 is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A label for the token (same characters as user names); shown in logs, never secret.
    pub name: String,
    /// `sha256:<64 hex digits>` of the token.
    pub hash: String,
    /// `viewer` (default), `publisher` or `admin`.
    #[serde(default)]
    pub role: Role,
    /// Camera names the token may see, or `["*"]` (default) for all.
    #[serde(default = "all_cameras")]
    pub cameras: Vec<String>,
}

/// The users file: `[[users]]` and `[[tokens]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Users.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

/// Errors reading, checking or writing users and tokens.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The users file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The users file does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is wrong (names the entry).
    #[error("{0}")]
    Invalid(String),
}

/// A user or token name: 1-64 of `A-Z a-z 0-9 . _ @ -`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// Checks a camera list: `*` or camera names.
fn check_cameras(what: &str, cameras: &[String]) -> Result<(), String> {
    for c in cameras {
        if c != "*" && !crate::segment::path::valid_camera_name(c) {
            return Err(format!("{what}: cameras: {c:?} is neither \"*\" nor a camera name"));
        }
    }
    Ok(())
}

/// Checks a token hash string: `sha256:` and 64 lowercase hex digits.
pub fn valid_token_hash(h: &str) -> bool {
    h.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl UserEntry {
    /// Checks name, hash and cameras.
    pub fn check(&self) -> Result<(), String> {
        let what = format!("user {:?}", self.name);
        if !valid_name(&self.name) {
            return Err(format!("{what}: name must be 1-64 characters of A-Z a-z 0-9 . _ @ -"));
        }
        super::password::check_hash(&self.password_hash).map_err(|e| format!("{what}: password_hash: {e}"))?;
        check_cameras(&what, &self.cameras)
    }
}

impl TokenEntry {
    /// Checks name, hash and cameras.
    pub fn check(&self) -> Result<(), String> {
        let what = format!("token {:?}", self.name);
        if !valid_name(&self.name) {
            return Err(format!("{what}: name must be 1-64 characters of A-Z a-z 0-9 . _ @ -"));
        }
        if !valid_token_hash(&self.hash) {
            return Err(format!("{what}: hash must be \"sha256:\" and 64 hex digits"));
        }
        check_cameras(&what, &self.cameras)
    }
}

impl AuthConfig {
    /// Checks the section (not the users file, which only `serve` and the CLI read).
    pub fn validate(&self) -> Result<(), String> {
        let ttl_ok = |d: &HumanDuration| d.0 >= Duration::from_secs(60) && d.0 <= Duration::from_secs(366 * 86_400);
        if !ttl_ok(&self.session_ttl) {
            return Err("session_ttl must be between 1m and 366d".into());
        }
        if !ttl_ok(&self.share_max_ttl) {
            return Err("share_max_ttl must be between 1m and 366d".into());
        }
        if self.login_max_failures == 0 {
            return Err("login_max_failures must be at least 1".into());
        }
        if self.login_window.0 < Duration::from_secs(1) || self.login_window.0 > Duration::from_secs(86_400) {
            return Err("login_window must be between 1s and 1d".into());
        }
        for u in &self.users {
            u.check()?;
        }
        for t in &self.tokens {
            t.check()?;
        }
        check_unique(&self.users, &self.tokens, "the config file")
    }

    /// Where the users file is: `users_file` (relative to the config file's directory), or
    /// `users.toml` there.
    pub fn users_file_path(&self, config_path: Option<&Path>) -> PathBuf {
        let file = self.users_file.clone().unwrap_or_else(|| PathBuf::from("users.toml"));
        if file.is_absolute() {
            return file;
        }
        match config_path.and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(file),
            _ => file,
        }
    }
}

/// No two users, and no two tokens, share a name.
fn check_unique(users: &[UserEntry], tokens: &[TokenEntry], place: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for u in users {
        if !seen.insert(u.name.as_str()) {
            return Err(format!("user {:?} is defined twice ({place})", u.name));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for t in tokens {
        if !seen.insert(t.name.as_str()) {
            return Err(format!("token {:?} is defined twice ({place})", t.name));
        }
    }
    Ok(())
}

impl UsersFile {
    /// Reads and checks the file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(UsersError::Io { path: path.to_owned(), source }),
        };
        let file: UsersFile = toml::from_str(&text).map_err(|e| UsersError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let place = path.display().to_string();
        for u in &file.users {
            u.check().map_err(|m| UsersError::Invalid(format!("{place}: {m}")))?;
        }
        for t in &file.tokens {
            t.check().map_err(|m| UsersError::Invalid(format!("{place}: {m}")))?;
        }
        check_unique(&file.users, &file.tokens, &place).map_err(UsersError::Invalid)?;
        Ok(file)
    }

    /// Writes the file whole: a temporary file (mode 0600) renamed over it.
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let body = toml::to_string(self).map_err(|e| UsersError::Invalid(format!("serializing users: {e}")))?;
        let text = format!(
            "# vigil users and API tokens, written by `vigil user ...` and `vigil token ...`.\n\
             # Rewritten whole by those commands: comments here are not kept. See docs/auth.md.\n\n{body}"
        );
        super::files::write_private(path, text.as_bytes())
            .map_err(|source| UsersError::Io { path: path.to_owned(), source })
    }
}

/// Users and tokens from the config and the users file together, checked for clashes.
pub fn merged(cfg: &AuthConfig, file: &UsersFile, file_path: &Path) -> Result<UsersFile, UsersError> {
    let mut all = UsersFile { users: cfg.users.clone(), tokens: cfg.tokens.clone() };
    all.users.extend(file.users.iter().cloned());
    all.tokens.extend(file.tokens.iter().cloned());
    check_unique(&all.users, &all.tokens, &format!("the config file and {}", file_path.display()))
        .map_err(UsersError::Invalid)?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_defaults_and_errors() {
        let cfg: AuthConfig = toml::from_str("required = true\n").unwrap();
        assert_eq!(cfg.required, Some(true));
        assert_eq!(cfg.login_max_failures, 5);
        cfg.validate().unwrap();
        assert!(toml::from_str::<AuthConfig>("requried = true\n").unwrap_err().to_string().contains("requried"));
        let bad = "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n";
        let cfg: AuthConfig = toml::from_str(bad).unwrap();
        assert!(cfg.validate().unwrap_err().contains("password_hash"));
        let bad = "[[tokens]]\nname = \"t\"\nhash = \"sha256:00\"\n";
        let cfg: AuthConfig = toml::from_str(bad).unwrap();
        assert!(cfg.validate().unwrap_err().contains("hash"));
        let bad = "[[tokens]]\nname = \"t\"\nrole = \"root\"\nhash = \"x\"\n";
        assert!(toml::from_str::<AuthConfig>(bad).unwrap_err().to_string().contains("root"));
        let h = format!("sha256:{}", "a".repeat(64));
        let bad = format!("[[tokens]]\nname = \"t\"\nhash = \"{h}\"\ncameras = [\"../x\"]\n");
        let cfg: AuthConfig = toml::from_str(&bad).unwrap();
        assert!(cfg.validate().unwrap_err().contains("cameras"));
        let dup = format!("[[tokens]]\nname = \"t\"\nhash = \"{h}\"\n[[tokens]]\nname = \"t\"\nhash = \"{h}\"\n");
        let cfg: AuthConfig = toml::from_str(&dup).unwrap();
        assert!(cfg.validate().unwrap_err().contains("twice"));
    }

    #[test]
    fn users_file_path_is_relative_to_the_config() {
        let cfg = AuthConfig::default();
        assert_eq!(cfg.users_file_path(Some(Path::new("/etc/vigil/vigil.toml"))), Path::new("/etc/vigil/users.toml"));
        assert_eq!(cfg.users_file_path(None), Path::new("users.toml"));
        let cfg = AuthConfig { users_file: Some("/var/lib/vigil/u.toml".into()), ..Default::default() };
        assert_eq!(cfg.users_file_path(Some(Path::new("/etc/vigil/vigil.toml"))), Path::new("/var/lib/vigil/u.toml"));
    }

    #[test]
    fn names() {
        assert!(valid_name("alice"));
        assert!(valid_name("a.b-c_d@e"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
