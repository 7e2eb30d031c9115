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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::check;
use super::lane::Lane;
use crate::digest::Digest;
use crate::local_file::ReadAt;

/// Size of one read and one turn: large enough that a read and a hand-over cost little next to
/// hashing it, small enough that what was read is still in the cache when it is hashed.
const CHUNK: usize = 256 << 10;

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
pub(super) struct Work<'w, 'r, T> {
    file: &'w dyn ReadAt,
    pub(super) moved: &'w (dyn Fn(u64) + Sync),
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
    Own(&'r Range<T>, Arc<Lane>),
    Help(Arc<Lane>),
}

impl<'r, T: Sync> Work<'_, 'r, T> {
    fn run(&self) {
        let mut scratch = Scratch::default();
        while let Some(task) = self.next() {
            match task {
                Task::Own(r, lane) => self.own(r, &lane, &mut scratch),
                Task::Help(lane) => lane.relay(self, &mut scratch),
            }
        }
    }

    /// The largest blob not started (on the board at once, so another thread looking for a blob
    /// to help with sees it); else a blob being hashed that no one reads ahead for yet, the one
    /// with the most left to read. Nothing after a failure.
    fn next(&self) -> Option<Task<'r, T>> {
        if lock(&self.failed).is_some() {
            return None;
        }
        let mut board = lock(&self.board);
        if let Some(r) = board.todo.pop() {
            let lane = Arc::new(Lane::new(r.offset, r.size, CHUNK));
            board.lanes.push(Arc::clone(&lane));
            return Some(Task::Own(r, lane));
        }
        let lane = board.lanes.iter().filter_map(|l| l.unhelped().map(|left| (left, l))).max_by_key(|(left, _)| *left);
        let lane = Arc::clone(lane?.1);
        lane.join();
        Some(Task::Help(lane))
    }

    /// Hashes one blob, reading what no helper has read; records a failure.
    fn own(&self, r: &'r Range<T>, lane: &Arc<Lane>, scratch: &mut Scratch) {
        let got = lane.hash(self, scratch);
        lock(&self.board).lanes.retain(|l| !Arc::ptr_eq(l, lane));
        if let Err(e) = got.and_then(|got| check(Some(got), &r.digest, r.size)) {
            lock(&self.failed).get_or_insert((&r.tag, e));
        }
    }

    /// Reads up to `buf.len()` bytes at `pos`, as many as there are before the end of the file.
    pub(super) fn read_full(&self, buf: &mut [u8], mut pos: u64) -> io::Result<usize> {
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

pub(super) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread's buffers, allocated once for all the blobs it reads: its own stretch, and a spare
/// to read again a stretch a late thread left.
#[derive(Default)]
pub(super) struct Scratch {
    own: Vec<u8>,
    spare: Vec<u8>,
}

impl Scratch {
    pub(super) fn own(&mut self, len: usize) -> &mut [u8] {
        grown(&mut self.own, len)
    }

    pub(super) fn spare(&mut self, len: usize) -> &mut [u8] {
        grown(&mut self.spare, len)
    }
}

fn grown(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
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

    /// A file whose reads stall: the first read at `stall_at` until the stretch has been read
    /// again (its reader lost its core until the other thread took over; at most 0.5 s, for when
    /// no other thread is there), and with `every`, every so many reads for 1 ms (a busy machine).
    struct Stalling {
        file: std::fs::File,
        stall_at: Option<u64>,
        every: Option<usize>,
        reads: std::sync::Mutex<Vec<u64>>,
        read_again: std::sync::Condvar,
    }

    impl Stalling {
        fn new(file: &std::fs::File, stall_at: Option<u64>, every: Option<usize>) -> Self {
            let reads = std::sync::Mutex::new(Vec::new());
            Stalling { file: file.try_clone().unwrap(), stall_at, every, reads, read_again: std::sync::Condvar::new() }
        }

        fn reads_at(&self, offset: u64) -> usize {
            self.reads.lock().unwrap().iter().filter(|o| **o == offset).count()
        }
    }

    impl ReadAt for Stalling {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let mut reads = self.reads.lock().unwrap();
            reads.push(offset);
            let count = reads.len();
            let at_stall = |reads: &Vec<u64>| reads.iter().filter(|o| Some(**o) == self.stall_at).count();
            if Some(offset) == self.stall_at && at_stall(&reads) == 1 {
                let wait = std::time::Duration::from_millis(500);
                drop(self.read_again.wait_timeout_while(reads, wait, |r| at_stall(r) < 2).unwrap());
            } else {
                self.read_again.notify_all();
                drop(reads);
                if self.every.is_some_and(|e| count.is_multiple_of(e)) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            self.file.read_at(buf, offset)
        }
    }

    /// Hashes `r` with an owner and a helper taking turns, as [`check_ranges`] does with one blob
    /// on two threads (here the helper joins for sure); returns the check of its digest and size
    /// and the bytes counted.
    fn relayed(file: &dyn ReadAt, r: &Range<usize>) -> (io::Result<()>, u64) {
        let moved = std::sync::atomic::AtomicU64::new(0);
        let count = |n| {
            moved.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        let work: Work<'_, '_, usize> = Work {
            file,
            moved: &count,
            board: Mutex::new(Board { todo: Vec::new(), lanes: Vec::new() }),
            failed: Mutex::new(None),
        };
        let lane = Lane::new(r.offset, r.size, CHUNK);
        lane.join();
        let got = thread::scope(|s| {
            s.spawn(|| lane.relay(&work, &mut Scratch::default()));
            lane.hash(&work, &mut Scratch::default())
        });
        (got.and_then(|got| check(Some(got), &r.digest, r.size)), moved.into_inner())
    }

    #[test]
    fn a_stretch_whose_reader_lost_its_core_is_read_again_by_the_other_thread_and_counted_once() {
        let (file, blobs, ranges) = blobs();
        let r = &ranges[6];
        let stall_at = r.offset + 3 * CHUNK as u64;
        let stalling = Stalling::new(&file, Some(stall_at), None);
        let (got, moved) = relayed(&stalling, r);
        got.unwrap();
        assert_eq!(moved, blobs[6].len() as u64);
        assert_eq!(stalling.reads_at(stall_at), 2, "the other thread read the stalled stretch again");
        // The last stretch: if the helper stalls on it, the owner reads it again.
        let (got, moved) = relayed(&Stalling::new(&file, Some(r.offset + 9 * CHUNK as u64), None), r);
        got.unwrap();
        assert_eq!(moved, blobs[6].len() as u64);
    }

    #[test]
    fn a_flipped_byte_or_a_short_file_is_found_in_a_relayed_blob_on_a_busy_machine() {
        let (file, mut blobs, mut ranges) = blobs();
        let mut flipped = tempfile::tempfile().unwrap();
        blobs[6][4 * CHUNK + 9] ^= 1;
        for b in &blobs {
            std::io::Write::write_all(&mut flipped, b).unwrap();
        }
        let stall_at = ranges[6].offset + 4 * CHUNK as u64;
        for stall in [Some(stall_at), None] {
            let (got, _) = relayed(&Stalling::new(&flipped, stall, Some(3)), &ranges[6]);
            assert!(matches!(Mismatch::from_io(&got.unwrap_err()), Some(Mismatch::Digest { .. })));
            let (tag, e) = check_ranges(2, &Stalling::new(&flipped, stall, Some(3)), &ranges, &|_| {}).unwrap_err();
            assert_eq!(*tag, 6);
            assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Digest { .. })));
        }
        // The blob is said to run 1 MiB past the end of the file.
        let short = Stalling::new(&file, Some(stall_at), Some(3));
        ranges[6].size += 1 << 20;
        let at_end = blobs.iter().map(|b| b.len() as u64).sum::<u64>() - ranges[6].offset;
        let (got, _) = relayed(&short, &ranges[6]);
        let found = match Mismatch::from_io(&got.unwrap_err()) {
            Some(Mismatch::Size { found, .. }) => *found,
            other => panic!("{other:?}"),
        };
        assert_eq!(found, at_end);
    }
}
