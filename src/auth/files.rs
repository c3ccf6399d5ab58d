//! Private files of the auth module: written atomically (temporary file in the same
//! directory, fsync, rename, fsync of the directory) and readable by the owner only (0600).
//! Replacing a file keeps its owner and group, so `sudo vigil user add` leaves a users file
//! made for the service account readable by that account.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `data`, mode 0600.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let owner = std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        // An older temporary file may have had looser permissions.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            let mine = f.metadata()?;
            if (mine.uid(), mine.gid()) != (uid, gid) {
                std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("keeping the owner {uid}:{gid} of {}: {e}", path.display()))
                })?;
            }
        }
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether group or others may read `path` (to warn about).
pub fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o077 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!readable_by_others(&p));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
    }

    #[test]
    fn replacing_keeps_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        write_private(&p, b"one").unwrap();
        if std::fs::metadata(&p).unwrap().uid() != 0 {
            return; // only root can give a file away
        }
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        write_private(&p, b"two").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid(), m.permissions().mode() & 0o777), (65534, 65534, 0o600));
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
    }
}
