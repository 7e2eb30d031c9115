//! Which of the images being pushed side by side uploads each blob.
//!
//! `push` runs one pipeline per image on the shared pool, and many images name the same blob (a
//! base layer). The first image to reach a blob claims it and uploads it (or finds it in its own
//! repository); the others wait for that one upload and then mount the blob from where it
//! landed, so each blob crosses the network once however many repositories need it. A claim
//! whose owner fails marks the whole push as failed: waiters and images not yet started stop
//! instead of repeating the work, and the owner's error is the one reported.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::digest::Digest;
use crate::error::Error;

/// Why an image's pipeline stopped: its own error, or another image's failure.
pub(super) enum Stop {
    Own(Error),
    /// Another task failed first; its error is the one to report.
    Elsewhere,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Own(e)
    }
}

/// Where a blob is known to be whole in the target registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Holder {
    pub repo: String,
    /// Uploaded by this push (so no other repository of the registry had it before).
    pub fresh: bool,
    /// Mounted into `repo` by this push, from another repository.
    pub mounted: bool,
}

#[derive(Default)]
enum State {
    #[default]
    Working,
    Held(Holder),
    Failed,
}

#[derive(Default)]
struct Cell {
    state: Mutex<State>,
    settled: Condvar,
}

/// The blobs of one push and who handles each: by digest (who gets a blob into the registry), or
/// by repository and digest (who gets it into one repository where another holds it).
pub(super) struct Claims<K = Digest> {
    cells: Mutex<HashMap<K, Arc<Cell>>>,
    failed: AtomicBool,
}

impl<K> Default for Claims<K> {
    fn default() -> Self {
        Claims { cells: Mutex::new(HashMap::new()), failed: AtomicBool::new(false) }
    }
}

/// What [`Claims::enter`] found.
pub(super) enum Claim<'a> {
    /// The caller handles the blob and must [`Token::settle`] it (dropping the token fails it).
    Mine(Token<'a>),
    /// The blob is whole in this repository of the registry.
    Held(Holder),
}

impl Claims<Digest> {
    /// Claims where blobs are known to be held already, found before the push (a delta's absent
    /// blobs): mounted from there, never uploaded.
    pub fn holding(held: &BTreeSet<(String, Digest)>) -> Self {
        let claims = Claims::default();
        {
            let mut cells = claims.cells.lock().unwrap_or_else(PoisonError::into_inner);
            for (repo, digest) in held {
                let holder = Holder { repo: repo.clone(), fresh: false, mounted: false };
                let cell = Cell { state: Mutex::new(State::Held(holder)), settled: Condvar::new() };
                cells.entry(digest.clone()).or_insert_with(|| Arc::new(cell));
            }
        }
        claims
    }
}

impl<K: std::hash::Hash + Eq + Clone> Claims<K> {
    /// Claims `key`, or waits until whoever claimed it has settled it.
    pub fn enter(&self, key: &K) -> Result<Claim<'_>, Stop> {
        self.check()?;
        let (cell, mine) = {
            let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
            match cells.get(key) {
                Some(cell) => (Arc::clone(cell), false),
                None => {
                    let cell = Arc::new(Cell::default());
                    cells.insert(key.clone(), Arc::clone(&cell));
                    (cell, true)
                }
            }
        };
        if mine {
            return Ok(Claim::Mine(Token { failed: &self.failed, cell, settled: false }));
        }
        let mut state = cell.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*state {
                State::Working => state = cell.settled.wait(state).unwrap_or_else(PoisonError::into_inner),
                State::Held(holder) => return Ok(Claim::Held(holder.clone())),
                State::Failed => return Err(Stop::Elsewhere),
            }
        }
    }

    /// `Err(Stop::Elsewhere)` once any claim has failed: work not yet started is not started.
    pub fn check(&self) -> Result<(), Stop> {
        if self.failed.load(Ordering::SeqCst) { Err(Stop::Elsewhere) } else { Ok(()) }
    }

    /// Marks the push as failed (an error outside any claim).
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }
}

/// The duty to settle one claimed blob.
pub(super) struct Token<'a> {
    /// Its claims' mark of a failed push.
    failed: &'a AtomicBool,
    cell: Arc<Cell>,
    settled: bool,
}

impl Token<'_> {
    /// The blob is now whole in `holder.repo`: every waiter goes on.
    pub fn settle(mut self, holder: Holder) {
        self.finish(State::Held(holder));
    }

    fn finish(&mut self, to: State) {
        self.settled = true;
        *self.cell.state.lock().unwrap_or_else(PoisonError::into_inner) = to;
        self.cell.settled.notify_all();
    }
}

impl Drop for Token<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.failed.store(true, Ordering::SeqCst);
            self.finish(State::Failed);
        }
    }
}

/// One repair at a time in each repository. A repair (after a manifest `PUT` found blobs missing)
/// asks the registry again for each of the image's blobs and uploads what it lacks, so two at once
/// in one repository (two tags of one image) would both upload the same blobs; and a registry that
/// rewrites a blob's link in place as it takes it again (distribution 2.8's filesystem driver)
/// shows that blob missing meanwhile to the other image's manifest `PUT`, which then fails. Taking
/// turns, the second repair finds what the first uploaded and sends nothing again.
#[derive(Default)]
pub(super) struct Repairs {
    turns: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Repairs {
    /// Runs `repair` once no other repair of `repo` is running.
    pub fn in_turn<T>(&self, repo: &str, repair: impl FnOnce() -> T) -> T {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(turns.entry(repo.to_owned()).or_default())
        };
        let _mine = turn.lock().unwrap_or_else(PoisonError::into_inner);
        repair()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn digest(s: &str) -> Digest {
        Digest::of_bytes(s.as_bytes())
    }

    #[test]
    fn the_first_claims_and_the_others_wait_for_its_holder() {
        let claims = Claims::default();
        let d = digest("base");
        let Ok(Claim::Mine(token)) = claims.enter(&d) else { panic!("the first must claim") };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| match claims.enter(&d) {
                Ok(Claim::Held(h)) => h,
                _ => panic!("a waiter must get the holder"),
            });
            std::thread::sleep(Duration::from_millis(30));
            assert!(!waiter.is_finished(), "a waiter must wait for the upload");
            token.settle(Holder { repo: "a".into(), fresh: true, mounted: false });
            assert_eq!(waiter.join().unwrap(), Holder { repo: "a".into(), fresh: true, mounted: false });
        });
    }

    #[test]
    fn a_dropped_claim_stops_its_waiters_and_everything_after() {
        let claims = Claims::default();
        let d = digest("base");
        let Ok(Claim::Mine(token)) = claims.enter(&d) else { panic!("the first must claim") };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| matches!(claims.enter(&d), Err(Stop::Elsewhere)));
            std::thread::sleep(Duration::from_millis(10));
            drop(token);
            assert!(waiter.join().unwrap());
        });
        assert!(matches!(claims.enter(&digest("other")), Err(Stop::Elsewhere)));
    }
}
