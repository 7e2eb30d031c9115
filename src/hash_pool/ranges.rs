//! Checks stretches of one file (the blobs of a bundle) against their digests on every core.
//!
//! sha256 of one blob cannot be split, so a bundle takes at least the time its largest blob takes
//! to hash; the work here is to keep every core hashing and never let a hasher wait. Each thread
//! owns one blob at a time, largest first, and reads and hashes it itself: the bytes it hashes are
//! the ones its own read just put in its cache, and nothing is handed over. A thread that finds no
//! blob left to start helps one still being hashed by reading ahead for it, into a few small
//! buffers (a [`Lane`]), so that the owner only hashes; an owner whose helper falls behind (a busy
//! machine) reads the next buffer itself rather than waiting. With as many blobs as cores every
//! core reads and hashes; with one blob, one core hashes while the other reads.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::check;
use crate::digest::{Digest, Hasher};
use crate::local_file::ReadAt;

/// Size of one read: large enough that a read costs little next to hashing it.
const CHUNK: usize = 256 << 10;
/// Buffers a helper reads ahead of the owner. Kept small on purpose: the owner hashes bytes
/// another core wrote, and with more than about 1 MiB in flight they are no longer in a cache
/// when it gets to them (sha256 then ran 15 % slower here; with 4 MiB, 50 %).
const AHEAD: usize = 4;
/// A helper that filled [`AHEAD`] buffers sleeps until the owner is down to this many, so it is
/// woken once per few buffers, not once per buffer.
const LOW: usize = 2;

/// One stretch of a file whose size and digest are known.
pub struct Range<T> {
    pub offset: u64,
    pub size: u64,
    pub digest: Digest,
    /// What the caller names the stretch by in an error.
    pub tag: T,
}

/// Checks every range of `file` with positional reads on `threads` threads, largest first, so a
/// bundle takes little more than the time of its largest blob; `moved` hears of every read.
/// Returns the first failure found (a short stretch is a size mismatch, as from a stream).
pub fn check_ranges<'r, T: Sync>(
    threads: usize,
    file: &dyn ReadAt,
    ranges: &'r [Range<T>],
    moved: &(dyn Fn(u64) + Sync),
) -> Result<(), (&'r T, io::Error)> {
    let mut todo: Vec<&Range<T>> = ranges.iter().collect();
    todo.sort_by_key(|r| r.size);
    let work = Work { file, moved, board: Mutex::new(Board { todo, lanes: Vec::new() }), failed: Mutex::new(None) };
    thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| work.run());
        }
    });
    match work.failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// What the threads share.
struct Work<'w, 'r, T> {
    file: &'w dyn ReadAt,
    moved: &'w (dyn Fn(u64) + Sync),
    board: Mutex<Board<'r, T>>,
    failed: Mutex<Option<(&'r T, io::Error)>>,
}

/// The blobs not started yet (smallest first, so the largest pops first) and those being hashed.
struct Board<'r, T> {
    todo: Vec<&'r Range<T>>,
    lanes: Vec<Arc<Lane>>,
}

/// What a thread does next.
enum Task<'r, T> {
    Own(&'r Range<T>),
    Help(Arc<Lane>),
}

impl<'r, T: Sync> Work<'_, 'r, T> {
    fn run(&self) {
        while let Some(task) = self.next() {
            match task {
                Task::Own(r) => self.own(r),
                Task::Help(lane) => lane.help(self),
            }
        }
    }

    /// The largest blob not started; else a blob being hashed that no one reads ahead for yet,
    /// the one with the most left to read. Nothing after a failure.
    fn next(&self) -> Option<Task<'r, T>> {
        if lock(&self.failed).is_some() {
            return None;
        }
        let mut board = lock(&self.board);
        if let Some(r) = board.todo.pop() {
            return Some(Task::Own(r));
        }
        let lane = board.lanes.iter().filter_map(|l| l.unhelped().map(|left| (left, l))).max_by_key(|(left, _)| *left);
        let lane = Arc::clone(lane?.1);
        lock(&lane.state).helped = true;
        Some(Task::Help(lane))
    }

    /// Hashes one blob, reading what no helper has read; records a failure.
    fn own(&self, r: &'r Range<T>) {
        let lane = Arc::new(Lane::new(r.offset, r.size));
        lock(&self.board).lanes.push(Arc::clone(&lane));
        let got = lane.hash(self);
        lock(&self.board).lanes.retain(|l| !Arc::ptr_eq(l, &lane));
        if let Err(e) = got.and_then(|got| check(Some(got), &r.digest, r.size)) {
            lock(&self.failed).get_or_insert((&r.tag, e));
        }
    }

    /// Reads up to `buf.len()` bytes at `pos`, as many as there are before the end of the file.
    fn read_full(&self, buf: &mut [u8], mut pos: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read_at(&mut buf[filled..], pos) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One blob being hashed: how far its owner has hashed, and what a helper has read ahead for it.
/// The owner never waits for the helper: when the next bytes are not ready it reads them itself
/// (even the very stretch the helper is reading, whose copy is then dropped), so a helper that a
/// busy machine deschedules costs a read, never a stall.
struct Lane {
    state: Mutex<LaneState>,
    /// A helper waits here for the owner to use up what it read.
    for_helper: Condvar,
    end: u64,
    chunk: usize,
}

struct LaneState {
    /// Everything before this is hashed.
    hashed: u64,
    /// Where a helper reads next (never behind `hashed`).
    next: u64,
    /// What a helper read and the owner has not hashed, in order.
    ready: VecDeque<Chunk>,
    spare: Vec<Vec<u8>>,
    /// A helper reads ahead for this blob.
    helped: bool,
    helper_waits: bool,
    /// The owner is done (or failed): a helper leaves.
    closed: bool,
}

/// A stretch read: where it starts, the buffer, how many bytes it holds, and whether that is
/// fewer than were asked for (the file ended).
struct Chunk {
    pos: u64,
    buf: Vec<u8>,
    len: usize,
    short: bool,
}

impl Lane {
    fn new(offset: u64, size: u64) -> Self {
        let state = LaneState {
            hashed: offset,
            next: offset,
            ready: VecDeque::new(),
            spare: Vec::new(),
            helped: false,
            helper_waits: false,
            closed: false,
        };
        let chunk = usize::try_from(size).map_or(CHUNK, |s| s.clamp(1, CHUNK));
        Lane { state: Mutex::new(state), for_helper: Condvar::new(), end: offset.saturating_add(size), chunk }
    }

    /// Bytes not yet read, if no helper reads ahead for this blob yet.
    fn unhelped(&self) -> Option<u64> {
        let st = lock(&self.state);
        let left = self.end.saturating_sub(st.next);
        (!st.helped && !st.closed && left > 0).then_some(left)
    }

    /// A buffer and the length to read at `pos` (0 at the end of the blob).
    fn buffer(&self, st: &mut LaneState, pos: u64) -> (Vec<u8>, usize) {
        let buf = st.spare.pop().unwrap_or_else(|| vec![0; self.chunk]);
        let want = usize::try_from(self.end.saturating_sub(pos)).map_or(buf.len(), |left| left.min(buf.len()));
        (buf, want)
    }

    /// Reads `want` bytes at `pos` into `buf`.
    fn read<T: Sync>(work: &Work<'_, '_, T>, pos: u64, mut buf: Vec<u8>, want: usize) -> io::Result<Chunk> {
        let len = work.read_full(&mut buf[..want], pos)?;
        Ok(Chunk { pos, buf, len, short: len < want })
    }

    /// The owner's side: hashes the blob's bytes in order, from what a helper read where it can,
    /// reading them itself where not.
    fn hash<T: Sync>(&self, work: &Work<'_, '_, T>) -> io::Result<(Digest, u64)> {
        let mut hasher = Hasher::default();
        let result = loop {
            let chunk = match self.take_ready() {
                Ok(chunk) => chunk,
                Err((_, 0)) => break Ok(()),
                Err((pos, want)) => {
                    let (buf, _) = self.buffer(&mut lock(&self.state), pos);
                    match Self::read(work, pos, buf, want) {
                        Ok(chunk) => chunk,
                        Err(e) => break Err(e),
                    }
                }
            };
            hasher.update(&chunk.buf[..chunk.len]);
            (work.moved)(chunk.len as u64);
            let mut st = lock(&self.state);
            st.hashed += chunk.len as u64;
            st.spare.push(chunk.buf);
            if chunk.short {
                break Ok(());
            }
        };
        let mut st = lock(&self.state);
        st.closed = true;
        self.wake_helper(&st);
        result.map(|()| hasher.finish())
    }

    /// The chunk a helper read at the owner's position; else that position and how much to read
    /// there, claimed so a helper reads on after it.
    fn take_ready(&self) -> Result<Chunk, (u64, usize)> {
        let mut st = lock(&self.state);
        while let Some(chunk) = st.ready.pop_front() {
            if chunk.pos == st.hashed {
                self.wake_helper(&st);
                return Ok(chunk);
            }
            // Read by the owner too, while the helper was at it; or past a gap a failed read left.
            if chunk.pos > st.hashed {
                st.ready.push_front(chunk);
                break;
            }
            st.spare.push(chunk.buf);
        }
        let pos = st.hashed;
        let want = usize::try_from(self.end - pos).map_or(self.chunk, |left| left.min(self.chunk));
        st.next = st.next.max(pos + want as u64);
        Err((pos, want))
    }

    /// Wakes a waiting helper once the owner is down to [`LOW`] buffers, or done.
    fn wake_helper(&self, st: &LaneState) {
        if st.helper_waits && (st.ready.len() <= LOW || st.closed) {
            self.for_helper.notify_one();
        }
    }

    /// A helper's side: reads ahead until the blob is read, its owner stops, or a read fails or
    /// comes back short (the owner then reads that stretch itself and reports what it finds).
    fn help<T: Sync>(&self, work: &Work<'_, '_, T>) {
        let mut st = lock(&self.state);
        loop {
            if st.closed {
                return;
            }
            if st.ready.len() >= AHEAD {
                st.helper_waits = true;
                st = self
                    .for_helper
                    .wait_while(st, |st| !st.closed && st.ready.len() > LOW)
                    .unwrap_or_else(PoisonError::into_inner);
                st.helper_waits = false;
                continue;
            }
            let pos = st.next.max(st.hashed);
            let (buf, want) = self.buffer(&mut st, pos);
            if want == 0 {
                st.spare.push(buf);
                return;
            }
            st.next = pos + want as u64;
            drop(st);
            let read = Self::read(work, pos, buf, want);
            st = lock(&self.state);
            match read {
                Ok(chunk) if chunk.pos >= st.hashed && !chunk.short => st.ready.push_back(chunk),
                Ok(chunk) => {
                    let stop = chunk.short;
                    st.spare.push(chunk.buf);
                    if stop {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Mismatch;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// A file of blobs of many sizes (empty, one byte, around a chunk, several chunks) and their
    /// ranges.
    fn blobs() -> (std::fs::File, Vec<Vec<u8>>, Vec<Range<usize>>) {
        let mut file = tempfile::tempfile().unwrap();
        let sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK / 2, 9 * CHUNK + 17, 5];
        let blobs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| data(*n, i as u8)).collect();
        let mut ranges = Vec::new();
        let mut offset = 0;
        for (i, b) in blobs.iter().enumerate() {
            std::io::Write::write_all(&mut file, b).unwrap();
            ranges.push(Range { offset, size: b.len() as u64, digest: Digest::of_bytes(b), tag: i });
            offset += b.len() as u64;
        }
        (file, blobs, ranges)
    }

    #[test]
    fn ranges_of_a_file_are_checked_on_any_number_of_threads_and_every_byte_is_counted() {
        let (file, blobs, ranges) = blobs();
        let total: usize = blobs.iter().map(Vec::len).sum();
        for threads in [1, 2, 3, 8] {
            let moved = std::sync::atomic::AtomicU64::new(0);
            let count = |n| {
                moved.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            };
            check_ranges(threads, &file, &ranges, &count).unwrap();
            assert_eq!(moved.into_inner(), total as u64, "{threads} threads");
            // One blob alone: the other threads only read ahead for its owner.
            check_ranges(threads, &file, &ranges[6..7], &|_| {}).unwrap();
        }
    }

    #[test]
    fn a_bad_range_is_named_whichever_thread_reads_it() {
        let (file, blobs, mut ranges) = blobs();
        for threads in [1, 2, 4] {
            ranges[6].digest = Digest::of_bytes(b"other");
            let (tag, e) = check_ranges(threads, &file, &ranges, &|_| {}).unwrap_err();
            assert_eq!(*tag, 6);
            assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Digest { .. })));
            let (tag, _) = check_ranges(threads, &file, &ranges[6..7], &|_| {}).unwrap_err();
            assert_eq!(*tag, 6, "alone, {threads} threads");
            ranges[6].digest = Digest::of_bytes(&blobs[6]);
        }
        // The last range runs past the end of the file: it is short, a size mismatch.
        ranges[7].size += 1;
        let (tag, e) = check_ranges(2, &file, &ranges, &|_| {}).unwrap_err();
        assert_eq!(*tag, 7);
        assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Size { expected: 6, found: 5 })));
    }

    /// A file whose reads of one byte fail.
    struct Failing(std::fs::File, u64);

    impl ReadAt for Failing {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            if (offset..offset + buf.len() as u64).contains(&self.1) {
                return Err(io::Error::other("disk on fire"));
            }
            self.0.read_at(buf, offset)
        }
    }

    #[test]
    fn a_failed_read_is_reported_for_the_range_it_was_reading() {
        let (file, _, ranges) = blobs();
        let at = ranges[6].offset + 5 * CHUNK as u64 + 3;
        for threads in [1, 2] {
            let (tag, e) =
                check_ranges(threads, &Failing(file.try_clone().unwrap(), at), &ranges, &|_| {}).unwrap_err();
            assert_eq!(*tag, 6);
            assert_eq!(e.to_string(), "disk on fire");
        }
    }
}
