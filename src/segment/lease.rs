//! Leases: a reader (live tail, playback, export) holds a lease on the segments it reads,
//! and retention does not delete a leased segment. Leases belong to the segment store so
//! live and history never need to know about each other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The set of leased segments (by `.h264` path). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Leases(Arc<Mutex<HashMap<PathBuf, usize>>>);

/// Holds segments leased until dropped.
#[derive(Debug)]
pub struct Lease {
    leases: Leases,
    paths: Vec<PathBuf>,
}

impl Leases {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leases `paths` until the returned guard is dropped.
    pub fn take(&self, paths: impl IntoIterator<Item = PathBuf>) -> Lease {
        let paths: Vec<PathBuf> = paths.into_iter().collect();
        let mut m = self.lock();
        for p in &paths {
            *m.entry(p.clone()).or_default() += 1;
        }
        Lease { leases: self.clone(), paths }
    }

    /// Whether `path` is leased by anyone.
    pub fn is_leased(&self, path: &Path) -> bool {
        self.lock().contains_key(path)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut m = self.leases.lock();
        for p in &self.paths {
            if let Some(n) = m.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    m.remove(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted() {
        let l = Leases::new();
        let p = PathBuf::from("a");
        let a = l.take([p.clone()]);
        let b = l.take([p.clone()]);
        drop(a);
        assert!(l.is_leased(&p));
        drop(b);
        assert!(!l.is_leased(&p));
    }
}
