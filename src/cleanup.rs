//! Temporary paths to remove if the process is interrupted. Staging directories and temporary
//! files are removed by their destructors on every normal exit, error included; a signal ends the
//! process without running them, so each one is also registered here, and the binary's signal
//! handler calls [`remove_all`] before it exits. A registration lasts as long as its guard.
//!
//! Once [`remove_all`] has run, a path registered afterwards is removed at once, so a worker
//! thread that creates a file while the handler cleans up does not leave it behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

static PATHS: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Keeps a path registered; dropping it forgets the path (its owner has removed or kept it).
#[must_use = "the path is forgotten when the guard is dropped"]
#[derive(Debug)]
pub struct Registered {
    id: u64,
}

/// Registers `path` (a file or a directory) for removal on interruption.
pub fn register(path: &Path) -> Registered {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut paths = lock();
    if INTERRUPTED.load(Ordering::SeqCst) {
        remove(path);
    } else {
        paths.push((id, path.to_owned()));
    }
    Registered { id }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock().retain(|(id, _)| *id != self.id);
    }
}

/// Whether [`remove_all`] has run: the process is being interrupted.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Removes every registered path and returns those that existed. Meant to be called once, by a
/// signal handler, just before the process exits.
pub fn remove_all() -> Vec<PathBuf> {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let paths = std::mem::take(&mut *lock());
    paths.into_iter().filter_map(|(_, p)| remove(&p).then_some(p)).collect()
}

/// Removes a file or a directory tree; true if it existed and is gone. Other threads may still be
/// writing into a directory being removed, so a removal that fails is tried again a few times.
fn remove(path: &Path) -> bool {
    let Ok(meta) = fs_err::symlink_metadata(path) else { return false };
    for _ in 0..50 {
        let result = match meta.is_dir() {
            true => fs_err::remove_dir_all(path),
            false => fs_err::remove_file(path),
        };
        match result {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    fs_err::symlink_metadata(path).is_err()
}

fn lock() -> MutexGuard<'static, Vec<(u64, PathBuf)>> {
    PATHS.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_lasts_as_long_as_its_guard() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        fs_err::write(&kept, b"x").unwrap();
        drop(register(&kept));
        assert!(!lock().iter().any(|(_, p)| *p == kept), "a dropped guard forgets its path");
        let staged = dir.path().join("stage");
        fs_err::create_dir_all(staged.join("sub")).unwrap();
        let guard = register(&staged);
        assert!(lock().iter().any(|(_, p)| *p == staged));
        drop(guard);
        assert!(staged.exists() && kept.exists());
    }
}
