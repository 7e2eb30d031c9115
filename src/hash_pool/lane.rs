//! One blob hashed by its owner and perhaps one helper taking turns: a relay whose baton is the
//! blob's one hash state.
//!
//! Each thread claims the next stretch of the blob, reads it into its own buffer, and waits for
//! the turn to reach it; then it takes the baton, hashes its stretch and passes the turn on. While
//! one hashes, the other reads, so on a quiet machine the reads hide behind the hashing and every
//! byte is hashed on the core whose read just put it in its cache.
//!
//! On a busy machine a thread can lose its core at any moment, and a relay that waits for it
//! stalls (one busy process cost the plain relay a third of its speed). So nobody waits for a
//! thread that is not there: when the turn sits at a stretch whose reader has not taken it within
//! [`STEAL`], the other thread takes the baton there, reads that stretch again itself and hashes
//! it; the late thread, back on a core, finds its stretch passed and claims a new one. A thread
//! that waits long for a baton the other holds (it lost its core while hashing) sleeps rather
//! than spins, which leaves its core to the thread it waits for. The relay thus degrades towards
//! one thread reading and hashing alone instead of far below it. (Sending the helper away for a
//! while after either sign of a busy machine was tried: slower on a quiet machine, where such
//! signs come now and then too, and no faster on a busy one.)

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ranges::{Scratch, Work, lock};
use crate::digest::{Digest, Hasher};

/// How long a stretch whose turn has come may wait for its reader to take it before the other
/// thread hashes it instead: a thread waiting for its turn takes it within a microsecond, and a
/// read of a whole stretch takes ~40 µs, so a turn left for this long has lost its core.
const STEAL: Duration = Duration::from_micros(100);
/// How long a thread waits busily for a baton the other holds before it sleeps: a turn normally
/// comes within the ~0.15 ms the other needs to hash its stretch, and waking a sleeping thread
/// costs more than that; a longer wait means the holder lost its core, and a sleeping waiter
/// gives that core back.
const SPIN: Duration = Duration::from_micros(300);
/// How long a sleeping waiter sleeps before it looks again (a pass wakes it sooner).
const NAP: Duration = Duration::from_millis(1);
/// The highest position a turn can hold (one bit of [`Turn`] says whether it is held); no file
/// is that long, so a blob said to reach past it ends short, as past the end of any file.
const MAX_POS: u64 = u64::MAX >> 2;

/// The turn: where the next stretch to hash starts, and whether a thread holds the baton to hash
/// it. Only the holder moves it on, so waiters can tell a passed stretch from one still to come.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Turn(u64);

impl Turn {
    /// Once a read failed or the file ended before the blob did.
    const STOPPED: Turn = Turn(u64::MAX);

    fn free(pos: u64) -> Self {
        Turn(pos << 1)
    }

    fn held(pos: u64) -> Self {
        Turn((pos << 1) | 1)
    }

    fn pos(self) -> u64 {
        self.0 >> 1
    }

    fn is_held(self) -> bool {
        self.0 & 1 == 1 && self != Turn::STOPPED
    }
}

/// One blob being hashed, by its owner and at most one helper.
pub(super) struct Lane {
    state: Mutex<LaneState>,
    turn: AtomicU64,
    /// Threads asleep waiting for the turn to move.
    sleepers: AtomicUsize,
    woken: Condvar,
    end: u64,
    chunk: usize,
}

struct LaneState {
    /// Where the next stretch to claim starts.
    next: u64,
    /// Taken by the holder of the baton.
    hasher: Option<Hasher>,
    failed: Option<io::Error>,
    /// A helper has joined.
    helped: bool,
}

impl Lane {
    /// The blob at `offset` of `size` bytes, read `chunk` bytes at a time.
    pub(super) fn new(offset: u64, size: u64, chunk: usize) -> Self {
        let offset = offset.min(MAX_POS);
        let state = LaneState { next: offset, hasher: Some(Hasher::default()), failed: None, helped: false };
        Lane {
            state: Mutex::new(state),
            turn: AtomicU64::new(Turn::free(offset).0),
            sleepers: AtomicUsize::new(0),
            woken: Condvar::new(),
            end: offset.saturating_add(size).min(MAX_POS),
            chunk: usize::try_from(size).map_or(chunk, |s| s.clamp(1, chunk)),
        }
    }

    fn turn(&self) -> Turn {
        Turn(self.turn.load(Ordering::SeqCst))
    }

    /// Bytes not yet claimed, if no helper has joined yet; marks the lane helped when `join`.
    pub(super) fn unhelped(&self) -> Option<u64> {
        let st = lock(&self.state);
        let left = self.end.saturating_sub(st.next);
        (!st.helped && self.turn() != Turn::STOPPED && left > 0).then_some(left)
    }

    pub(super) fn join(&self) {
        lock(&self.state).helped = true;
    }

    /// The owner's side: takes turns until the blob is claimed, then makes sure the turn reaches
    /// the end (hashing what a late helper left) and returns the digest (of fewer bytes than the
    /// blob's size if the file ended early).
    pub(super) fn hash<T: Sync>(&self, work: &Work<'_, '_, T>, scratch: &mut Scratch) -> io::Result<(Digest, u64)> {
        self.relay(work, scratch);
        if let Some(from) = self.take_baton(self.end) {
            self.hash_turn(work, scratch, from, self.end, Ok(0));
        }
        let mut st = lock(&self.state);
        if let Some(e) = st.failed.take() {
            return Err(e);
        }
        Ok(st.hasher.take().unwrap_or_default().finish())
    }

    /// Claims, reads and hashes stretches in turn until none is left to claim or the relay stops.
    pub(super) fn relay<T: Sync>(&self, work: &Work<'_, '_, T>, scratch: &mut Scratch) {
        while let Some((pos, want)) = self.claim() {
            let got = work.read_full(scratch.own(want), pos);
            if let Some(from) = self.take_baton(pos) {
                self.hash_turn(work, scratch, from, pos, got);
            }
        }
    }

    /// The next stretch to read: where it starts and its length; `None` when the blob is all
    /// claimed or the relay stopped.
    fn claim(&self) -> Option<(u64, usize)> {
        let mut st = lock(&self.state);
        if st.next >= self.end || self.turn() == Turn::STOPPED {
            return None;
        }
        let pos = st.next;
        let want = usize::try_from(self.end - pos).map_or(self.chunk, |left| left.min(self.chunk));
        st.next = pos + want as u64;
        Some((pos, want))
    }

    /// Holding the baton at `from`: hashes what lies between `from` and `pos` (stretches a late
    /// thread did not take, read again here), then the stretch at `pos` this thread read (`got`
    /// bytes of its own buffer, asked for up to the next claim), and passes the turn on; a failed
    /// read or an early end of the file stops the relay.
    fn hash_turn<T: Sync>(
        &self,
        work: &Work<'_, '_, T>,
        scratch: &mut Scratch,
        from: u64,
        pos: u64,
        got: io::Result<usize>,
    ) {
        let mut hasher = lock(&self.state).hasher.take().unwrap_or_default();
        let want = self.end.min(pos + self.chunk as u64) - pos;
        let reached = self.catch_up(work, scratch, &mut hasher, from, pos).and_then(|at| {
            let n = got?;
            if at < pos || n == 0 {
                return Ok(at);
            }
            hasher.update(scratch.own(n));
            (work.moved)(n as u64);
            Ok(pos + n as u64)
        });
        let mut st = lock(&self.state);
        st.hasher = Some(hasher);
        let next = match reached {
            Ok(at) if at == pos + want => Turn::free(at),
            Ok(_) => Turn::STOPPED,
            Err(e) => {
                st.failed.get_or_insert(e);
                Turn::STOPPED
            }
        };
        drop(st);
        self.pass(next);
    }

    /// Reads and hashes `from..pos` into the spare buffer; returns where it got to (short of
    /// `pos` if the file ends first).
    fn catch_up<T: Sync>(
        &self,
        work: &Work<'_, '_, T>,
        scratch: &mut Scratch,
        hasher: &mut Hasher,
        mut at: u64,
        pos: u64,
    ) -> io::Result<u64> {
        while at < pos {
            let want = usize::try_from(pos - at).map_or(self.chunk, |left| left.min(self.chunk));
            let n = work.read_full(scratch.spare(want), at)?;
            hasher.update(scratch.spare(n));
            (work.moved)(n as u64);
            at += n as u64;
            if n < want {
                break;
            }
        }
        Ok(at)
    }

    /// Waits until this thread holds the baton for the stretch at `pos`: returns where the turn
    /// was when it took it, `pos` itself or an earlier stretch left untaken for [`STEAL`]. `None`
    /// when another thread hashed past `pos` or the relay stopped.
    fn take_baton(&self, pos: u64) -> Option<u64> {
        let start = Instant::now();
        let mut untaken: Option<(Turn, Instant)> = None;
        for round in 0u32.. {
            let t = self.turn();
            if t == Turn::STOPPED || t.pos() > pos {
                return None;
            }
            if !t.is_held() {
                let late = untaken.filter(|(u, _)| *u == t).map_or(Duration::ZERO, |(_, since)| since.elapsed());
                if (t.pos() == pos || late > STEAL) && self.cas(t, Turn::held(t.pos())) {
                    return Some(t.pos());
                }
                if untaken.is_none_or(|(u, _)| u != t) {
                    untaken = Some((t, Instant::now()));
                }
            } else if round % 16 == 15 && start.elapsed() > SPIN {
                self.nap(t);
                continue;
            }
            for _ in 0..8 {
                std::hint::spin_loop();
            }
        }
        unreachable!("the rounds of a wait outnumber u32")
    }

    fn cas(&self, from: Turn, to: Turn) -> bool {
        self.turn.compare_exchange(from.0, to.0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Moves the turn on (only the holder of the baton does) and wakes sleepers.
    fn pass(&self, to: Turn) {
        self.turn.store(to.0, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this after a sleeper's last look at the turn.
            drop(lock(&self.state));
            self.woken.notify_all();
        }
    }

    /// Sleeps until the turn is no longer `t`, or [`NAP`] passed.
    fn nap(&self, t: Turn) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let st = lock(&self.state);
        let still = |_: &mut LaneState| self.turn() == t;
        drop(self.woken.wait_timeout_while(st, NAP, still).unwrap_or_else(PoisonError::into_inner));
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_keeps_its_position_whether_held_or_free_and_stopped_is_neither() {
        for pos in [0, 1, 1 << 40, MAX_POS] {
            assert_eq!(Turn::free(pos).pos(), pos);
            assert_eq!(Turn::held(pos).pos(), pos);
            assert!(Turn::held(pos).is_held() && !Turn::free(pos).is_held());
            assert_ne!(Turn::held(pos), Turn::STOPPED);
        }
        assert!(!Turn::STOPPED.is_held());
    }
}
