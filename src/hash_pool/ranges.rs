//! Checks stretches of one file (the blobs of a bundle) against their digests on every core.
//!
//! sha256 of one blob cannot be split, so a bundle takes at least the time its largest blob takes
//! to hash; the work here is to keep every core hashing at full speed. Each thread owns one blob
//! at a time, largest first, and reads and hashes it itself: the bytes it hashes are the ones its
//! own read just put in its cache. A thread that finds no blob left to start joins one still being
//! hashed, and the two take turns in a relay (a [`Lane`]): each reads the next stretch into its
//! own buffer while the other hashes, then takes the hash state and hashes its stretch. Handing
//! over the bytes instead (one core reads, the other hashes) cost sha256 a fifth of its speed
//! here, hashing what another core's cache held; handing over the 100-odd bytes of hash state
//! costs nothing. With as many blobs as cores every core reads and hashes its own; with one
//! blob, it hashes at the speed of sha256 while the reads hide behind the hashing.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::check;
use crate::digest::{Digest, Hasher};
use crate::local_file::ReadAt;

/// Size of one read and one turn: large enough that a read and a hand-over cost little next to
/// hashing it, small enough that what was read is still in the cache when it is hashed.
const CHUNK: usize = 256 << 10;
/// How long a thread whose stretch is read waits for its turn busily before it sleeps: a turn
/// normally comes within the ~0.1 ms the other thread needs to finish hashing, and waking a
/// sleeping thread costs more than that.
const SPIN: Duration = Duration::from_micros(500);
/// The turn once the relay stopped: a read failed or came back short (the file ended).
const STOPPED: u64 = u64::MAX;

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

/// One blob being hashed, by its owner and perhaps a helper taking turns: each claims the next
/// stretch, reads it, waits until `turn` reaches it, hashes it with the one hash state and moves
/// `turn` on. Claims are made in order, so the stretches are hashed in order.
struct Lane {
    state: Mutex<LaneState>,
    /// Where the next stretch to hash starts; [`STOPPED`] once a read failed or ended early.
    turn: AtomicU64,
    /// Threads asleep waiting for their turn.
    sleepers: AtomicUsize,
    woken: Condvar,
    end: u64,
    chunk: usize,
}

struct LaneState {
    /// Where the next stretch to claim starts.
    next: u64,
    /// Taken by whoever's turn it is.
    hasher: Option<Hasher>,
    failed: Option<io::Error>,
    /// A helper has joined.
    helped: bool,
}

impl Lane {
    fn new(offset: u64, size: u64) -> Self {
        let state = LaneState { next: offset, hasher: Some(Hasher::default()), failed: None, helped: false };
        let chunk = usize::try_from(size).map_or(CHUNK, |s| s.clamp(1, CHUNK));
        Lane {
            state: Mutex::new(state),
            turn: AtomicU64::new(offset),
            sleepers: AtomicUsize::new(0),
            woken: Condvar::new(),
            end: offset.saturating_add(size),
            chunk,
        }
    }

    /// Bytes not yet claimed, if no helper has joined yet.
    fn unhelped(&self) -> Option<u64> {
        let st = lock(&self.state);
        let left = self.end.saturating_sub(st.next);
        let stopped = self.turn.load(Ordering::SeqCst) == STOPPED;
        (!st.helped && !stopped && left > 0).then_some(left)
    }

    /// The owner's side: takes turns until the blob is claimed, waits for the last turn, and
    /// returns the digest (of fewer bytes than the blob's size if the file ended early).
    fn hash<T: Sync>(&self, work: &Work<'_, '_, T>) -> io::Result<(Digest, u64)> {
        self.relay(work);
        self.await_turn(|t| t >= self.end);
        let mut st = lock(&self.state);
        if let Some(e) = st.failed.take() {
            return Err(e);
        }
        Ok(st.hasher.take().unwrap_or_default().finish())
    }

    /// A helper's side: takes turns until the blob is claimed or the relay stops.
    fn help<T: Sync>(&self, work: &Work<'_, '_, T>) {
        self.relay(work);
    }

    /// Claims, reads and hashes stretches in turn until none is left to claim or the relay stops.
    fn relay<T: Sync>(&self, work: &Work<'_, '_, T>) {
        let mut buf = vec![0; self.chunk];
        while let Some((pos, want)) = self.claim() {
            let got = work.read_full(&mut buf[..want], pos);
            if self.await_turn(|t| t == pos || t == STOPPED) != pos {
                return;
            }
            let n = match got {
                Ok(n) => n,
                Err(e) => {
                    lock(&self.state).failed.get_or_insert(e);
                    self.pass(pos, STOPPED);
                    return;
                }
            };
            // Only the thread whose turn it is touches the hash state.
            let mut hasher = lock(&self.state).hasher.take().unwrap_or_default();
            hasher.update(&buf[..n]);
            lock(&self.state).hasher = Some(hasher);
            (work.moved)(n as u64);
            let short = n < want;
            self.pass(pos, if short { STOPPED } else { pos + n as u64 });
            if short {
                return;
            }
        }
    }

    /// The next stretch to read: where it starts and its length; `None` when the blob is all
    /// claimed or the relay stopped.
    fn claim(&self) -> Option<(u64, usize)> {
        let mut st = lock(&self.state);
        if st.next >= self.end || self.turn.load(Ordering::SeqCst) == STOPPED {
            return None;
        }
        let pos = st.next;
        let want = usize::try_from(self.end - pos).map_or(self.chunk, |left| left.min(self.chunk));
        st.next = pos + want as u64;
        Some((pos, want))
    }

    /// Moves the turn from `pos` to `to`, unless the relay stopped meanwhile, and wakes sleepers.
    fn pass(&self, pos: u64, to: u64) {
        let _ = self.turn.compare_exchange(pos, to, Ordering::SeqCst, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this after a sleeper's last look at the turn.
            drop(lock(&self.state));
            self.woken.notify_all();
        }
    }

    /// Waits until the turn satisfies `done` (spinning for [`SPIN`], then asleep); returns it.
    fn await_turn(&self, done: impl Fn(u64) -> bool) -> u64 {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let t = self.turn.load(Ordering::SeqCst);
            if done(t) {
                return t;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let st = lock(&self.state);
        let st = self
            .woken
            .wait_while(st, |_| !done(self.turn.load(Ordering::SeqCst)))
            .unwrap_or_else(PoisonError::into_inner);
        drop(st);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        self.turn.load(Ordering::SeqCst)
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
            // One blob alone: the other threads take turns with its owner.
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
