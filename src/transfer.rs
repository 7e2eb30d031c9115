//! How much registry traffic runs at once, decided in one place.
//!
//! Against a registry 50 ms away, airlock's time goes into round trips, not bytes, so every
//! command that talks to registries runs its requests on one [`Pool`] of `jobs` workers shared by
//! all images: `create` resolves the images' manifests and configs on it, then fetches every
//! layer on it; `push` asks what the registry holds, uploads and writes manifests on it. The
//! registry client keeps as many idle connections per host as there are workers, so each worker
//! keeps its connection, and it slows the whole pool when the registry answers `429`
//! (`registry::throttle`).
//!
//! The default, [`DEFAULT_JOBS`] = 16, sits below what public registries tolerate from one
//! client: Docker Hub, GHCR and Quay rate-limit manifest pulls per hour and per account, not
//! requests in flight; browsers open up to 6 connections per host and HTTP/2 clients run ~100
//! streams on one; `docker pull` runs 3 layer downloads per image and several images at once.
//! Sixteen keeps a push or pull of many small images near its latency floor (round trips per
//! image × images / 16) without looking like a flood, and `--jobs` changes it.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Requests in flight at once by default (see the module docs for why 16).
pub const DEFAULT_JOBS: usize = 16;

/// A fixed set of workers for blocking registry (and bundle) I/O.
pub struct Pool {
    pool: rayon::ThreadPool,
}

impl Pool {
    /// A pool of `jobs` workers (at least one).
    pub fn new(jobs: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .thread_name(|i| format!("airlock-transfer-{i}"))
            .build()
            .map_err(|e| Error::bad("--jobs", e.to_string()))?;
        Ok(Pool { pool })
    }

    /// Runs `f` on every item, `jobs` at a time; the first error stops what has not started.
    pub fn try_for_each<T: Sync>(&self, items: &[T], f: impl Fn(&T) -> Result<()> + Sync + Send) -> Result<()> {
        self.pool.install(|| items.par_iter().with_max_len(1).try_for_each(f))
    }

    /// `f` of every item, in the items' order; the first error (in that order) wins.
    pub fn try_map<T: Sync, U: Send>(&self, items: &[T], f: impl Fn(&T) -> Result<U> + Sync + Send) -> Result<Vec<U>> {
        let all: Vec<Result<U>> = self.pool.install(|| items.par_iter().with_max_len(1).map(f).collect());
        all.into_iter().collect()
    }
}

/// `f` of every item at once, in the items' order, on the pool the caller is a worker of (a
/// source resolved on a [`Pool`] fetching an index's children), so nested work shares the
/// pool's bound; called elsewhere, on rayon's global pool.
pub fn map_within<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync + Send) -> Vec<U> {
    items.par_iter().with_max_len(1).map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn a_pool_runs_jobs_at_once_and_no_more() {
        let pool = Pool::new(4).unwrap();
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let items: Vec<usize> = (0..16).collect();
        // Each job stays until four have been in at once (a loaded machine may start the pool's
        // threads late), or until a deadline a pool of fewer workers runs into.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        pool.try_for_each(&items, |_| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            while peak.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(5));
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn try_map_keeps_order_and_reports_the_first_error() {
        let pool = Pool::new(3).unwrap();
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(pool.try_map(&items, |i| Ok(i * 2)).unwrap(), (0..10).map(|i| i * 2).collect::<Vec<_>>());
        let err = pool
            .try_map(&items, |&i| if i % 4 == 3 { Err(Error::bad(format!("item {i}"), "no")) } else { Ok(i) })
            .unwrap_err();
        assert_eq!(err.to_string(), "item 3: no");
    }
}
