//! What `vigil user ...` and `vigil token ...` do to the users file. No terminal I/O here:
//! `main.rs` prompts for passwords and prints tokens.

use super::config::{TokenEntry, UserEntry, UsersError, UsersFile, valid_name};
use super::password;
use super::{AuthConfig, Role};
use crate::config::Config;
use std::path::{Path, PathBuf};

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted (the login form refuses longer ones).
pub const MAX_PASSWORD: usize = 1024;

/// The users file of a configuration, loaded for editing.
pub struct UsersStore {
    /// The file.
    pub path: PathBuf,
    /// Its contents.
    pub file: UsersFile,
    auth: AuthConfig,
    cameras: Vec<String>,
}

/// Checks a new password.
pub fn check_password(pw: &str) -> Result<(), UsersError> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD {
        return Err(UsersError::Invalid(format!("the password must have at least {MIN_PASSWORD} characters")));
    }
    if pw.len() > MAX_PASSWORD {
        return Err(UsersError::Invalid(format!("the password must have at most {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

impl UsersStore {
    /// Loads the configuration (`None`: the built-in default) and its users file.
    pub fn open(config_path: Option<&Path>) -> Result<Self, UsersError> {
        let cfg = Config::load(config_path).map_err(|e| UsersError::Invalid(e.to_string()))?;
        let path = cfg.auth.users_file_path(config_path);
        let file = UsersFile::load(&path)?;
        Ok(Self { path, file, auth: cfg.auth, cameras: cfg.cameras.into_iter().map(|c| c.name).collect() })
    }

    fn check_new_name(&self, kind: &str, name: &str) -> Result<(), UsersError> {
        if !valid_name(name) {
            return Err(UsersError::Invalid(format!(
                "{kind} name {name:?}: use 1-64 characters of A-Z a-z 0-9 . _ @ -"
            )));
        }
        let in_config = match kind {
            "user" => self.auth.users.iter().any(|u| u.name == name),
            _ => self.auth.tokens.iter().any(|t| t.name == name),
        };
        if in_config {
            return Err(UsersError::Invalid(format!("{kind} {name:?} is defined in the config file; edit it there")));
        }
        let in_file = match kind {
            "user" => self.file.users.iter().any(|u| u.name == name),
            _ => self.file.tokens.iter().any(|t| t.name == name),
        };
        if in_file {
            return Err(UsersError::Invalid(format!("{kind} {name:?} already exists in {}", self.path.display())));
        }
        Ok(())
    }

    /// Camera names in `cameras` that are not configured (warn about them).
    pub fn unknown_cameras(&self, cameras: &[String]) -> Vec<String> {
        cameras.iter().filter(|c| *c != "*" && !self.cameras.contains(c)).cloned().collect()
    }

    fn check_cameras(cameras: &[String]) -> Result<(), UsersError> {
        if cameras.is_empty() {
            return Err(UsersError::Invalid("--cameras: name at least one camera, or \"*\" for all".into()));
        }
        for c in cameras {
            if c != "*" && !crate::segment::path::valid_camera_name(c) {
                return Err(UsersError::Invalid(format!("--cameras: {c:?} is neither \"*\" nor a camera name")));
            }
        }
        Ok(())
    }

    /// Adds a user with this password and writes the file.
    pub fn add_user(&mut self, name: &str, role: Role, cameras: Vec<String>, pw: &str) -> Result<(), UsersError> {
        self.check_new_name("user", name)?;
        Self::check_cameras(&cameras)?;
        check_password(pw)?;
        let password_hash = password::hash_password(pw).map_err(UsersError::Invalid)?;
        self.file.users.push(UserEntry { name: name.to_owned(), password_hash, role, cameras });
        self.file.save(&self.path)
    }

    /// Sets a user's password (ending the user's sessions) and writes the file.
    pub fn set_password(&mut self, name: &str, pw: &str) -> Result<(), UsersError> {
        check_password(pw)?;
        let path = self.path.display().to_string();
        let user = self.file.users.iter_mut().find(|u| u.name == name).ok_or_else(|| {
            UsersError::Invalid(format!("no user {name:?} in {path} (users in the config file are edited there)"))
        })?;
        user.password_hash = password::hash_password(pw).map_err(UsersError::Invalid)?;
        self.file.save(&self.path)
    }

    /// Adds a token; returns the token (shown once, never stored).
    pub fn add_token(&mut self, name: &str, role: Role, cameras: Vec<String>) -> Result<String, UsersError> {
        self.check_new_name("token", name)?;
        Self::check_cameras(&cameras)?;
        let (token, hash) = password::new_token().map_err(UsersError::Invalid)?;
        self.file.tokens.push(TokenEntry { name: name.to_owned(), hash, role, cameras });
        self.file.save(&self.path)?;
        Ok(token)
    }

    /// Removes a user or token (`kind` = "user" or "token") and writes the file.
    pub fn remove(&mut self, kind: &str, name: &str) -> Result<(), UsersError> {
        let before = self.file.users.len() + self.file.tokens.len();
        match kind {
            "user" => self.file.users.retain(|u| u.name != name),
            _ => self.file.tokens.retain(|t| t.name != name),
        }
        if self.file.users.len() + self.file.tokens.len() == before {
            return Err(UsersError::Invalid(format!("no {kind} {name:?} in {}", self.path.display())));
        }
        self.file.save(&self.path)
    }

    /// One line per user and token, from the config file and the users file.
    pub fn list(&self) -> Vec<String> {
        let mut out = Vec::new();
        let place = |in_config: bool| if in_config { "config" } else { "users file" };
        for (u, c) in self.auth.users.iter().map(|u| (u, true)).chain(self.file.users.iter().map(|u| (u, false))) {
            out.push(format!("user  {:<24} {:<9} cameras={} ({})", u.name, u.role, u.cameras.join(","), place(c)));
        }
        for (t, c) in self.auth.tokens.iter().map(|t| (t, true)).chain(self.file.tokens.iter().map(|t| (t, false))) {
            out.push(format!("token {:<24} {:<9} cameras={} ({})", t.name, t.role, t.cameras.join(","), place(c)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_passwd_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("vigil.toml");
        std::fs::write(&cfg, "[[cameras]]\nname = \"front\"\n").unwrap();
        let mut s = UsersStore::open(Some(&cfg)).unwrap();
        assert_eq!(s.path, dir.path().join("users.toml"));
        assert!(s.add_user("alice", Role::Admin, vec!["*".into()], "short").is_err());
        s.add_user("alice", Role::Admin, vec!["*".into()], "long enough").unwrap();
        assert!(s.add_user("alice", Role::Viewer, vec!["*".into()], "long enough").is_err());
        let token = s.add_token("cam", Role::Viewer, vec!["front".into()]).unwrap();
        assert_eq!(s.unknown_cameras(&["front".into(), "back".into(), "*".into()]), vec!["back".to_owned()]);

        let s2 = UsersStore::open(Some(&cfg)).unwrap();
        assert_eq!(s2.list().len(), 2);
        let text = std::fs::read_to_string(dir.path().join("users.toml")).unwrap();
        assert!(!text.contains(&token), "the token itself was written");
        assert!(text.contains(&password::token_hash(&token)));
        let h = s2.file.users[0].password_hash.clone();
        assert!(password::verify_password("long enough", &h));

        let mut s3 = UsersStore::open(Some(&cfg)).unwrap();
        s3.set_password("alice", "another one").unwrap();
        assert!(password::verify_password("another one", &s3.file.users[0].password_hash));
        s3.remove("token", "cam").unwrap();
        assert!(s3.remove("token", "cam").is_err());
        assert!(s3.set_password("bob", "whatever1").is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("users.toml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
