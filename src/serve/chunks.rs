//! The read buffers every blob response draws from: a fixed budget of [`CHUNK`]-sized buffers
//! shared by all connections, so the server's memory does not grow with the number of clients.
//!
//! A [`Chunk`] is a buffer read from a bundle file and handed to the connection as it is (no
//! copy); it goes back to the pool when the connection has written it. Taking one waits, in
//! order, for one to come back; a read ahead takes one only if nobody is waiting. A client that
//! stops reading keeps the chunk its connection was writing: while others wait for a chunk, such a
//! connection is closed after [`Pressure::starved`] has been true for a short while (see
//! `crate::serve::stall`), so idle clients cannot starve the rest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The size of one read: large enough that the per-read costs (a wake-up, a syscall) vanish
/// next to hashing it, small enough that the budget holds many at once.
pub const CHUNK: usize = 1 << 20;
/// The default budget: the most memory blob reads hold at once, whatever the number of clients.
pub const BUDGET: usize = 16 << 20;
/// How long a read waits for a free chunk before its response is given up.
const CHUNK_WAIT: Duration = Duration::from_secs(60);

/// Whether connections are waiting for read buffers that stalled connections hold.
pub trait Pressure: Send + Sync {
    fn starved(&self) -> bool;
}

/// The pool: permits for the budget, and the buffers that came back, reused.
pub struct Chunks {
    permits: Arc<Semaphore>,
    count: usize,
    free: Mutex<Vec<Vec<u8>>>,
    /// Reads waiting for a permit.
    waiting: AtomicUsize,
}

impl Chunks {
    /// A pool of `budget` bytes (at least four chunks).
    pub fn new(budget: usize) -> Arc<Self> {
        let count = (budget / CHUNK).max(4);
        let permits = Arc::new(Semaphore::new(count));
        Arc::new(Chunks { permits, count, free: Mutex::new(Vec::new()), waiting: 0.into() })
    }

    /// A permit now for reading ahead: only while nobody waits for one and more than half the
    /// pool is free, so that reads ahead never hold what a new response needs for its first chunk.
    pub fn spare(&self) -> Option<OwnedSemaphorePermit> {
        if self.starved() || self.permits.available_permits() * 2 <= self.count {
            return None;
        }
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// A permit, waiting in order for one to come back (at most `CHUNK_WAIT`).
    pub async fn permit(self: Arc<Self>) -> std::io::Result<OwnedSemaphorePermit> {
        let _waiting = Waiting::new(&self.waiting);
        match tokio::time::timeout(CHUNK_WAIT, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(std::io::Error::other(format!("no read buffer came free in {} s", CHUNK_WAIT.as_secs()))),
        }
    }

    /// Fills a chunk by `read` with a buffer of the pool; the buffer comes back when the chunk
    /// is dropped, even if the read failed.
    pub fn fill(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        len: usize,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
    ) -> std::io::Result<Chunk> {
        let buf = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_else(|| vec![0; CHUNK]);
        let mut chunk = Chunk { buf, len: len.min(CHUNK), pool: Arc::clone(self), _permit: permit };
        let n = chunk.len;
        read(&mut chunk.buf[..n])?;
        Ok(chunk)
    }
}

impl Pressure for Chunks {
    fn starved(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// Counts a read waiting for a permit while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes read into a pooled buffer; the buffer (then its permit) goes back when dropped.
pub struct Chunk {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<Chunks>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.pool.free.lock().unwrap_or_else(PoisonError::into_inner).push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_reads_ahead_leave_half_the_pool_to_first_chunks() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let pool = Chunks::new(4 * CHUNK);
        let a = pool
            .fill(pool.spare().unwrap(), 10, |b| {
                b.fill(1);
                Ok(())
            })
            .unwrap();
        assert_eq!(a.as_ref(), &[1u8; 10][..]);
        let b = pool.fill(pool.spare().unwrap(), CHUNK * 2, |_| Ok(())).unwrap();
        assert_eq!(b.as_ref().len(), CHUNK, "a read never passes its chunk");
        assert!(pool.spare().is_none(), "2 of 4 free: not more than half");
        let first = pool.fill(rt.block_on(Arc::clone(&pool).permit()).unwrap(), 1, |_| Ok(())).unwrap();
        drop((b, first));
        let ptr = a.as_ref().as_ptr();
        drop(a);
        let failed = pool.fill(pool.spare().unwrap(), 4, |_| Err(std::io::Error::other("x")));
        assert!(failed.is_err());
        let c = pool.fill(pool.spare().unwrap(), 4, |_| Ok(())).unwrap();
        assert_eq!(c.as_ref().as_ptr(), ptr, "a buffer that came back is reused, also after a failed read");
        let _waiting = Waiting::new(&pool.waiting);
        assert!(pool.starved());
        assert!(pool.spare().is_none(), "a free permit goes to the one waiting, not to a read ahead");
    }
}
