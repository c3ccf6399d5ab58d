//! The certificate directory (`[tls] certs_dir`).
//!
//! ```text
//! certs/
//!   acme-account.json     ACME account credentials (0600)
//!   acme-cert.pem         certificate chain from the ACME CA, leaf first (0644)
//!   acme-key.pem          its private key (0600)
//!   acme-cert.json        which directory issued it, for which names (0644)
//!   self-signed-cert.pem  the self-signed certificate (0644)
//!   self-signed-key.pem   its private key (0600)
//! ```
//! Every file is written to a temporary name and renamed into place, so a crash never
//! leaves half a file; private keys are created 0600 (never world-readable, not even briefly).

use super::TlsError;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of private keys and account credentials.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificates and metadata.
pub const PUBLIC_MODE: u32 = 0o644;

/// Paths inside the certificate directory.
#[derive(Debug, Clone)]
pub struct CertsDir {
    dir: PathBuf,
}

impl CertsDir {
    /// The directory `dir` (not created yet: see [`CertsDir::ensure`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Creates the directory (0700) if missing.
    pub fn ensure(&self) -> Result<(), TlsError> {
        if !self.dir.is_dir() {
            std::fs::create_dir_all(&self.dir).map_err(|source| TlsError::Io { path: self.dir.clone(), source })?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|source| TlsError::Io { path: self.dir.clone(), source })?;
        }
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// ACME account credentials.
    pub fn acme_account(&self) -> PathBuf {
        self.dir.join("acme-account.json")
    }
    /// ACME certificate chain.
    pub fn acme_cert(&self) -> PathBuf {
        self.dir.join("acme-cert.pem")
    }
    /// ACME certificate key.
    pub fn acme_key(&self) -> PathBuf {
        self.dir.join("acme-key.pem")
    }
    /// ACME certificate metadata.
    pub fn acme_meta(&self) -> PathBuf {
        self.dir.join("acme-cert.json")
    }
    /// Self-signed certificate.
    pub fn self_signed_cert(&self) -> PathBuf {
        self.dir.join("self-signed-cert.pem")
    }
    /// Self-signed certificate key.
    pub fn self_signed_key(&self) -> PathBuf {
        self.dir.join("self-signed-key.pem")
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename; the file has `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_owned(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have narrowed `mode`; make it exact.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Reads `path`; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Io { path: path.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_with_modes() {
        let dir = std::env::temp_dir().join(format!("vigil-store-test-{}", std::process::id()));
        let store = CertsDir::new(dir.join("certs"));
        store.ensure().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o700);
        write_atomic(&store.acme_key(), b"secret", SECRET_MODE).unwrap();
        assert_eq!(mode(&store.acme_key()), 0o600);
        write_atomic(&store.acme_key(), b"secret2", SECRET_MODE).unwrap();
        assert_eq!(std::fs::read(store.acme_key()).unwrap(), b"secret2");
        write_atomic(&store.acme_cert(), b"cert", PUBLIC_MODE).unwrap();
        assert_eq!(mode(&store.acme_cert()), 0o644);
        assert_eq!(read_optional(&store.self_signed_cert()).unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(store.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
