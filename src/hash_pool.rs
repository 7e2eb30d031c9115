//! Hashing on other cores while the caller reads.
//!
//! Reading a blob and hashing it used to take turns on one thread: a read from the page cache
//! costs about a third of what sha256 does, so verification ran at two thirds of the hash's own
//! speed. A [`HashPool`] moves the hashing onto worker threads: the reader fills large owned
//! buffers, drawn from a fixed set so memory stays bounded whatever the blob size, hands each to
//! the worker hashing that blob, and reads on while it hashes. Different blobs go to different
//! workers. Blobs read from different places of one file are checked by [`check_ranges`] instead,
//! each thread reading and hashing its own (positional reads). A [`Pending`] result turns a size or digest mismatch into the same
//! [`Mismatch`] error a [`crate::digest::VerifyingReader`] gives.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use crate::archive::read_some;
use crate::digest::{Digest, Hasher, Mismatch};

mod lane;
mod ranges;
pub use ranges::{Range, check_ranges};

/// Size of one buffer: large enough that a read or a hand-over costs nothing next to hashing it,
/// small enough that the few in flight stay in the CPU's cache until they are hashed (with 14
/// buffers of 1 MiB, sha256 itself ran 50 % slower, reading its input back from memory).
const BUF_SIZE: usize = 256 << 10;

/// Buffers filled and not yet hashed, at most (and one more per extra hashing thread): a hasher
/// reads bytes another core wrote, and once more than about 1 MiB waits they have left the
/// cache when it gets to them (4 x 256 KiB cost sha256 nothing here, 8 x 256 KiB 14 %).
const IN_FLIGHT: usize = 4;

/// Worker threads that hash, one per core.
pub struct HashPool {
    jobs: Option<Sender<Job>>,
    buffers: Arc<Buffers>,
    workers: Vec<JoinHandle<()>>,
}

/// One blob's stream of filled buffers and where its digest goes.
struct Job {
    data: Receiver<Chunk>,
    done: Sender<(Digest, u64)>,
}

/// A buffer and how much of it holds data (buffers keep their full length so they are zeroed
/// only once).
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Default for HashPool {
    fn default() -> Self {
        Self::new(cores())
    }
}

/// How many threads hash at once: one per core, at most 16.
pub fn cores() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get()).min(16)
}

impl HashPool {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        // One more is being filled; with several workers, one more each so all can be busy.
        let buffers = Arc::new(Buffers::new(IN_FLIGHT + threads));
        let workers = (0..threads)
            .map(|_| {
                let (rx, buffers) = (Arc::clone(&rx), Arc::clone(&buffers));
                thread::spawn(move || work(&rx, &buffers))
            })
            .collect();
        HashPool { jobs: Some(tx), buffers, workers }
    }

    /// Hashes everything read from `src`, on a worker, while the caller reads it through the
    /// returned [`Feed`] (or not at all: [`Feed::finish`] reads the rest).
    pub fn feed<R: Read>(&self, src: R) -> Feed<'_, R> {
        let (data, rx) = mpsc::channel();
        let (done, result) = mpsc::channel();
        if let Some(jobs) = &self.jobs {
            // Workers only stop when the pool is dropped; a failed send shows up in `Pending`.
            let _ = jobs.send(Job { data: rx, done });
        }
        Feed { src, pool: self, data: Some(data), result: Some(result), cur: None, pos: 0, total: 0 }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Takes blobs in the order they were started, so the oldest open blob always has a worker and
/// no feed can wait forever for a buffer.
fn work(jobs: &Mutex<Receiver<Job>>, buffers: &Buffers) {
    loop {
        let job = match jobs.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut hasher = Hasher::default();
        for chunk in &job.data {
            hasher.update(&chunk.buf[..chunk.len]);
            buffers.give(chunk.buf);
        }
        let _ = job.done.send(hasher.finish());
    }
}

/// A fixed number of buffers of [`BUF_SIZE`] bytes, allocated when first needed.
pub(crate) struct Buffers {
    free: Mutex<(Vec<Vec<u8>>, usize)>,
    returned: Condvar,
    max: usize,
}

impl Buffers {
    pub(crate) fn new(max: usize) -> Self {
        Buffers { free: Mutex::new((Vec::new(), 0)), returned: Condvar::new(), max }
    }

    fn take(&self) -> Vec<u8> {
        // Without a deadline the wait only ends with a buffer.
        self.take_until(None).unwrap_or_else(|| vec![0; BUF_SIZE])
    }

    fn take_until(&self, deadline: Option<std::time::Instant>) -> Option<Vec<u8>> {
        let mut state = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(buf) = state.0.pop() {
                return Some(buf);
            }
            if state.1 < self.max {
                state.1 += 1;
                return Some(vec![0; BUF_SIZE]);
            }
            state = match deadline {
                None => self.returned.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.checked_duration_since(std::time::Instant::now())?;
                    self.returned.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }

    pub(crate) fn give(&self, buf: Vec<u8>) {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).0.push(buf);
        self.returned.notify_one();
    }
}

/// Reads `src` in whole buffers for the hashing worker; reading through it hands the same bytes
/// to the caller.
pub struct Feed<'p, R> {
    src: R,
    pool: &'p HashPool,
    data: Option<Sender<Chunk>>,
    result: Option<Receiver<(Digest, u64)>>,
    cur: Option<Chunk>,
    pos: usize,
    total: u64,
}

impl<R: Read> Feed<'_, R> {
    /// Sends the current buffer to the worker and fills a new one; `false` at the end of `src`.
    fn refill(&mut self) -> io::Result<bool> {
        self.send_current();
        let mut buf = self.pool.buffers.take();
        let len = match read_some(&mut self.src, &mut buf) {
            Ok(len) => len,
            Err(e) => {
                self.pool.buffers.give(buf);
                return Err(e);
            }
        };
        self.total += len as u64;
        self.pos = 0;
        self.cur = Some(Chunk { buf, len });
        Ok(len > 0)
    }

    fn send_current(&mut self) {
        if let Some(chunk) = self.cur.take() {
            if chunk.len == 0 {
                self.pool.buffers.give(chunk.buf);
            } else if let Some(data) = &self.data
                && let Err(mpsc::SendError(chunk)) = data.send(chunk)
            {
                self.pool.buffers.give(chunk.buf);
            }
        }
    }

    /// Reads what the caller left unread; the digest of everything `src` held comes later.
    pub fn finish(mut self) -> io::Result<Pending> {
        while self.refill()? {}
        self.send_current();
        self.data = None;
        Ok(Pending { result: self.result.take(), len: self.total })
    }
}

impl<R: Read> Read for Feed<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let left = self.cur.as_ref().map_or(0, |c| c.len - self.pos);
        if left == 0 && !self.refill()? {
            return Ok(0);
        }
        let Some(chunk) = &self.cur else { return Ok(0) };
        let n = out.len().min(chunk.len - self.pos);
        out[..n].copy_from_slice(&chunk.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R> Drop for Feed<'_, R> {
    fn drop(&mut self) {
        if let Some(chunk) = self.cur.take() {
            self.pool.buffers.give(chunk.buf);
        }
    }
}

/// The digest of a fed stream, computed by a worker.
pub struct Pending {
    result: Option<Receiver<(Digest, u64)>>,
    len: u64,
}

impl Pending {
    /// How many bytes the stream held (known as soon as it was read).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for the digest and checks it and the size; a mismatch is the [`Mismatch`] a
    /// [`crate::digest::VerifyingReader`] would have failed with.
    pub fn check(self, expected: &Digest, size: u64) -> io::Result<()> {
        let got = self.result.and_then(|r| r.recv().ok());
        check(got, expected, size)
    }

    /// Like [`Pending::check`] if the digest is ready; gives itself back if not.
    pub fn try_check(self, expected: &Digest, size: u64) -> Result<io::Result<()>, Self> {
        let got = match self.result.as_ref().map(Receiver::try_recv) {
            Some(Ok(got)) => Some(got),
            Some(Err(TryRecvError::Empty)) => return Err(self),
            Some(Err(TryRecvError::Disconnected)) | None => None,
        };
        Ok(check(got, expected, size))
    }
}

fn check(got: Option<(Digest, u64)>, expected: &Digest, size: u64) -> io::Result<()> {
    let Some((found, len)) = got else {
        return Err(io::Error::other("the hashing thread stopped"));
    };
    Mismatch::check(expected, size, found, len)
}

/// Streams fed one after another whose digests are still being computed, oldest first.
pub struct Queue<T> {
    waiting: VecDeque<(Pending, Digest, u64, T)>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { waiting: VecDeque::new() }
    }
}

impl<T> Queue<T> {
    /// Adds a stream that must hash to `digest` and hold `size` bytes, and checks those that are
    /// done already, so a mismatch is reported while later blobs are still being read (a wrong
    /// size at once).
    pub fn push(&mut self, pending: Pending, digest: &Digest, size: u64, tag: T) -> Result<(), (T, io::Error)> {
        if pending.len != size {
            let m = Mismatch::Size { expected: size, found: pending.len };
            return Err((tag, io::Error::new(io::ErrorKind::InvalidData, m)));
        }
        self.waiting.push_back((pending, digest.clone(), size, tag));
        while let Some((pending, digest, size, tag)) = self.waiting.pop_front() {
            match pending.try_check(&digest, size) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err((tag, e)),
                Err(pending) => {
                    self.waiting.push_front((pending, digest, size, tag));
                    break;
                }
            }
        }
        Ok(())
    }

    /// Waits for every digest.
    pub fn finish(self) -> Result<(), (T, io::Error)> {
        for (pending, digest, size, tag) in self.waiting {
            pending.check(&digest, size).map_err(|e| (tag, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn a_fed_stream_hashes_to_the_digest_of_its_bytes_whether_read_or_not() {
        let pool = HashPool::new(2);
        for n in [0, 1, BUF_SIZE - 1, BUF_SIZE, 3 * BUF_SIZE + 17] {
            let bytes = data(n, 7);
            let want = Digest::of_bytes(&bytes);
            let mut feed = pool.feed(&bytes[..]);
            let mut head = vec![0u8; n / 3];
            feed.read_exact(&mut head).unwrap();
            assert_eq!(head, bytes[..n / 3]);
            let pending = feed.finish().unwrap();
            assert_eq!(pending.len(), n as u64);
            pending.check(&want, n as u64).unwrap();
        }
    }

    #[test]
    fn a_flipped_byte_or_a_short_stream_is_a_mismatch() {
        let pool = HashPool::new(1);
        let bytes = data(2 * BUF_SIZE + 5, 1);
        let want = Digest::of_bytes(&bytes);
        let mut bad = bytes.clone();
        bad[BUF_SIZE + 3] ^= 1;
        let e = pool.feed(&bad[..]).finish().unwrap().check(&want, bytes.len() as u64).unwrap_err();
        assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Digest { .. })));
        let e = pool.feed(&bytes[..10]).finish().unwrap().check(&want, bytes.len() as u64).unwrap_err();
        assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Size { found: 10, .. })));
    }
}
