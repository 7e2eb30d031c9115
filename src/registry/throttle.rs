//! Backpressure shared by every request to one registry. A `429 Too Many Requests` means the
//! registry wants less from this client, not from one request: so it halves how many requests
//! may be in flight at once and holds back every new one until its `Retry-After` (or a second)
//! has passed; the limit then grows back by one each time as many requests succeed in a row. The
//! retry of the refused request itself stays with `transport::retrying`.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::transport::MAX_RETRY_AFTER;

/// The pause after a 429 that names no `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

pub(super) struct Throttle {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    max: usize,
    limit: usize,
    in_flight: usize,
    resume_at: Option<Instant>,
    /// Successes since the limit last changed.
    streak: usize,
}

/// A request in flight; dropping it frees its place.
pub(super) struct Slot<'a>(&'a Throttle);

impl Throttle {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        let state = State { max, limit: max, in_flight: 0, resume_at: None, streak: 0 };
        Throttle { state: Mutex::new(state), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the registry's pause (if any) is over and fewer than the limit are in flight.
    pub fn enter(&self) -> Slot<'_> {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            match st.resume_at {
                Some(t) if t > now => {
                    st = self.changed.wait_timeout(st, t - now).unwrap_or_else(PoisonError::into_inner).0;
                }
                _ if st.in_flight < st.limit => {
                    st.in_flight += 1;
                    return Slot(self);
                }
                _ => st = self.changed.wait(st).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }

    /// The registry answered 429: fewer at once, and nobody starts before `after` has passed.
    pub fn too_many(&self, after: Option<Duration>) {
        let mut st = self.lock();
        st.limit = (st.limit / 2).max(1);
        st.streak = 0;
        let until = Instant::now() + after.unwrap_or(DEFAULT_PAUSE).min(MAX_RETRY_AFTER);
        st.resume_at = Some(st.resume_at.map_or(until, |t| t.max(until)));
        self.changed.notify_all();
    }

    /// A request got an answer other than 429.
    pub fn answered(&self) {
        let mut st = self.lock();
        st.streak += 1;
        if st.limit < st.max && st.streak >= st.limit {
            st.limit += 1;
            st.streak = 0;
            self.changed.notify_all();
        }
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.lock().limit
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight -= 1;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_halves_the_limit_and_success_grows_it_back() {
        let t = Throttle::new(16);
        t.too_many(Some(Duration::ZERO));
        assert_eq!(t.limit(), 8);
        t.too_many(Some(Duration::ZERO));
        assert_eq!(t.limit(), 4);
        for _ in 0..4 {
            t.answered();
        }
        assert_eq!(t.limit(), 5);
    }

    #[test]
    fn a_429_holds_back_every_new_request_until_retry_after() {
        let t = Throttle::new(4);
        let start = Instant::now();
        t.too_many(Some(Duration::from_millis(300)));
        let waited: Vec<Duration> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let _slot = t.enter();
                        start.elapsed()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(waited.iter().all(|w| *w >= Duration::from_millis(300)), "{waited:?}");
    }

    #[test]
    fn no_more_than_the_limit_are_in_flight() {
        let t = Throttle::new(2);
        let a = t.enter();
        let _b = t.enter();
        let started = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _c = t.enter();
                started.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!started.load(std::sync::atomic::Ordering::SeqCst), "a third request started");
            drop(a);
        });
        assert!(started.load(std::sync::atomic::Ordering::SeqCst));
    }
}
