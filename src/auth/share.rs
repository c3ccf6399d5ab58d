//! Shared links: a URL for one export or snapshot that works without a login until it
//! expires, signed with HMAC-SHA256 under a server key.
//!
//! The key is 32 random bytes in `<data_dir>/auth.key` (mode 0600), made at the first start.
//! Deleting that file (and restarting) invalidates every link ever shared.
//!
//! A link is the target's path and query with `exp` (Unix seconds) and then `sig` appended:
//! `/api/cameras/front/video.mp4?start=..&end=..&exp=1767225600&sig=<64 hex>`, where
//! `sig = HMAC-SHA256(key, "GET\n" + path + "\n" + query up to and including exp)`. The
//! signature covers the method, the exact path and the exact query bytes, so a link opens
//! that one range of that one camera; changing any byte (a later `end`, another camera, a
//! later `exp`) makes it fail. Only [`shareable`] paths can be signed.

use super::password::{hex, random_bytes, unhex};
use ring::hmac;
use std::path::Path;

/// The key file's name inside `data_dir` (camera directories cannot contain a dot).
pub const KEY_FILE: &str = "auth.key";

/// Why a shared link is refused (all `403`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The query has no well-formed `exp` and `sig` at its end.
    #[error("malformed share link (expected exp and sig at the end of the query)")]
    Malformed,
    /// The signature does not match (the link was altered, or the key changed).
    #[error("share link signature does not match")]
    BadSignature,
    /// Past `exp`.
    #[error("share link expired")]
    Expired,
    /// The path is not one that can be shared.
    #[error("this path cannot be shared")]
    NotShareable,
}

/// The signing key.
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// The camera of a path that can be shared: `/api/cameras/{camera}/video.mp4` (export) or
/// `/api/cameras/{camera}/snapshot.jpg`.
pub fn shareable(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/cameras/")?;
    let (camera, file) = rest.split_once('/')?;
    (matches!(file, "video.mp4" | "snapshot.jpg") && crate::segment::path::valid_camera_name(camera)).then_some(camera)
}

impl Signer {
    /// A signer with this key (tests).
    pub fn new(key: &[u8; 32]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    /// Reads `<data_dir>/auth.key`, creating it (0600) on the first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = unhex::<32>(text.trim()).ok_or_else(|| {
                    format!("{}: expected 64 hex digits (delete it to make a new key)", path.display())
                })?;
                if super::files::readable_by_others(&path) {
                    tracing::warn!(path = %path.display(), "the share-link key is readable by other users: chmod 600 it");
                }
                Ok(Self::new(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>()?;
                super::files::write_private(&path, format!("{}\n", hex(&key)).as_bytes())
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "created the share-link key");
                Ok(Self::new(&key))
            }
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    fn mac(&self, path: &str, signed_query: &str) -> hmac::Tag {
        hmac::sign(&self.key, format!("GET\n{path}\n{signed_query}").as_bytes())
    }

    /// The query of a link to `path?query` that expires at `exp` (Unix seconds).
    pub fn sign(&self, path: &str, query: &str, exp: i64) -> String {
        let signed = if query.is_empty() { format!("exp={exp}") } else { format!("{query}&exp={exp}") };
        let tag = self.mac(path, &signed);
        format!("{signed}&sig={}", hex(tag.as_ref()))
    }

    /// Checks a link at `now` (Unix seconds); on success, the query without `exp` and `sig`
    /// (what the target handler should see).
    pub fn verify(&self, path: &str, query: &str, now: i64) -> Result<String, ShareError> {
        if shareable(path).is_none() {
            return Err(ShareError::NotShareable);
        }
        let (signed, sig) = split_last(query, "sig").ok_or(ShareError::Malformed)?;
        let sig = unhex::<32>(sig).ok_or(ShareError::Malformed)?;
        let (original, exp) = split_last(signed, "exp").ok_or(ShareError::Malformed)?;
        let exp: i64 = exp.parse().map_err(|_| ShareError::Malformed)?;
        let msg = format!("GET\n{path}\n{signed}");
        // Constant time (ring compares the tags without early exit).
        hmac::verify(&self.key, msg.as_bytes(), &sig).map_err(|_| ShareError::BadSignature)?;
        if now > exp {
            return Err(ShareError::Expired);
        }
        Ok(original.to_owned())
    }
}

/// Splits `...&name=value` (or `name=value` alone) into what precedes it and `value`.
fn split_last<'a>(query: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let (before, last) = match query.rfind('&') {
        Some(i) => (&query[..i], &query[i + 1..]),
        None => ("", query),
    };
    let value = last.strip_prefix(name)?.strip_prefix('=')?;
    Some((before, value))
}

/// Whether a query carries a share signature (its last parameter is `sig=`).
pub fn has_signature(query: &str) -> bool {
    split_last(query, "sig").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/api/cameras/front/video.mp4";

    #[test]
    fn sign_verify_tamper_expire() {
        let s = Signer::new(&[7; 32]);
        let q = s.sign(P, "start=1000&end=2000", 500);
        assert!(q.starts_with("start=1000&end=2000&exp=500&sig="), "{q}");
        assert_eq!(s.verify(P, &q, 499), Ok("start=1000&end=2000".into()));
        assert_eq!(s.verify(P, &q, 500), Ok("start=1000&end=2000".into()));
        assert_eq!(s.verify(P, &q, 501), Err(ShareError::Expired));
        // Another range, camera, expiry or key: refused.
        assert_eq!(s.verify(P, &q.replace("end=2000", "end=3000"), 0), Err(ShareError::BadSignature));
        assert_eq!(s.verify(P, &q.replace("exp=500", "exp=900"), 0), Err(ShareError::BadSignature));
        assert_eq!(s.verify("/api/cameras/back/video.mp4", &q, 0), Err(ShareError::BadSignature));
        assert_eq!(s.verify("/api/cameras/front/snapshot.jpg", &q, 0), Err(ShareError::BadSignature));
        assert_eq!(Signer::new(&[8; 32]).verify(P, &q, 0), Err(ShareError::BadSignature));
        let flipped = format!("{}{}", &q[..q.len() - 1], if q.ends_with('0') { '1' } else { '0' });
        assert_eq!(s.verify(P, &flipped, 0), Err(ShareError::BadSignature));
        // Parameters added after the signature, or none at all.
        assert_eq!(s.verify(P, &format!("{q}&end=9"), 0), Err(ShareError::Malformed));
        assert_eq!(s.verify(P, "start=1", 0), Err(ShareError::Malformed));
        assert_eq!(s.verify(P, "", 0), Err(ShareError::Malformed));
        assert_eq!(s.verify("/metrics", &q, 0), Err(ShareError::NotShareable));
        // No query of its own.
        let q = s.sign("/api/cameras/front/snapshot.jpg", "", 10);
        assert!(q.starts_with("exp=10&sig="));
        assert_eq!(s.verify("/api/cameras/front/snapshot.jpg", &q, 0), Ok(String::new()));
    }

    #[test]
    fn shareable_paths() {
        assert_eq!(shareable("/api/cameras/front/video.mp4"), Some("front"));
        assert_eq!(shareable("/api/cameras/front/snapshot.jpg"), Some("front"));
        assert_eq!(shareable("/api/cameras/front/recordings"), None);
        assert_eq!(shareable("/api/cameras/../video.mp4"), None);
        assert_eq!(shareable("/api/cameras/a/b/video.mp4"), None);
        assert_eq!(shareable("/api/status"), None);
    }

    #[test]
    fn key_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_create(dir.path()).unwrap();
        let b = Signer::load_or_create(dir.path()).unwrap();
        let q = a.sign(P, "", 10);
        assert!(b.verify(P, &q, 0).is_ok(), "the key changed between starts");
        let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), "short").unwrap();
        assert!(Signer::load_or_create(dir.path()).is_err());
    }
}
