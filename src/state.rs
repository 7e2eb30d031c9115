//! The importer's memory of what it applied: for each (signing key, series) the highest sequence
//! number imported here, in a small JSON file (`--state`). It is what turns a replayed old bundle
//! (a rollback of the registry's tags) or a withheld-then-stale one (a freeze) into a refusal,
//! since the isolated side has no return channel to ask the connected side anything.
//!
//! The file is read under an exclusive lock on `FILE.lock`, held for the whole import, so a second
//! importer waits; it is rewritten atomically ([`AtomicFile`]) and only once the import has fully
//! succeeded, so a failed or interrupted import leaves the old state. See docs/one-way-sync.md.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use crate::bundle::format::{BundleIndex, Position, Series, created_rfc3339};
use crate::error::{Error, IoContext, Result};
use crate::json;
use crate::local_file;

/// The largest state file accepted (a few hundred bytes per series).
const MAX_STATE_BYTES: u64 = 4 << 20;
const STATE_VERSION: u32 = 1;

/// What an import may let through.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `--allow-rollback`: apply a bundle whose sequence is not after the last applied.
    pub allow_rollback: bool,
    /// `--allow-expired`: apply a bundle past its expiry.
    pub allow_expired: bool,
    /// Seconds since the epoch.
    pub now: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Doc {
    version: u32,
    applied: Vec<Applied>,
}

/// The last bundle applied from one series signed by one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Applied {
    pub key_id: String,
    pub series: Series,
    pub sequence: u64,
    pub bundle_id: String,
    /// When it was applied, RFC 3339.
    pub at: String,
}

/// The state file, locked for as long as this value lives.
pub struct State {
    path: PathBuf,
    doc: Doc,
    _lock: fs_err::File,
}

/// A bundle let through by [`State::admit`]: what to tell the user now, and what to record (and
/// then tell) once the import has succeeded.
#[derive(Debug)]
pub struct Admission {
    pub notes: Vec<String>,
    /// Told once the import has succeeded: "first bundle applied here" is not true before.
    pub done: Option<String>,
    record: Option<Applied>,
}

impl State {
    /// Locks and reads the state at `path` (none yet: empty). `on_wait` is called once if another
    /// importer holds the lock, before waiting for it.
    pub fn open(path: &Path, on_wait: &dyn Fn()) -> Result<State> {
        let place = || path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir).at(place)?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_place = || PathBuf::from(&lock_path).display().to_string();
        let lock =
            fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).at(lock_place)?;
        if let Err(std::fs::TryLockError::WouldBlock) = lock.file().try_lock() {
            on_wait();
            lock.file().lock().at(lock_place)?;
        }
        let doc = match fs_err::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Doc { version: STATE_VERSION, applied: Vec::new() },
            _ => read(path)?,
        };
        Ok(State { path: path.to_owned(), doc, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last bundle applied from `series` signed by `key_id`.
    pub fn last(&self, key_id: &str, series: &Series) -> Option<&Applied> {
        self.doc.applied.iter().find(|a| a.key_id == key_id && &a.series == series)
    }

    /// Checks a verified bundle's series, sequence and expiry against what was applied before.
    /// `key_id` is the key its signature was checked with (`None`: not checked). A refusal is a
    /// trust error naming both sequence numbers or the expiry.
    pub fn admit(&self, index: &BundleIndex, key_id: Option<&str>, place: &str, policy: &Policy) -> Result<Admission> {
        let mut notes = Vec::new();
        let Some(pos) = index.position() else {
            notes.push(format!(
                "{place}: a schema version 1 bundle has no series or sequence number: it is not checked against \
                 or recorded in {}",
                self.path.display()
            ));
            return Ok(Admission { notes, done: None, record: None });
        };
        check_expiry(&pos, place, policy, &mut notes)?;
        let Some(key_id) = key_id else {
            notes.push(format!(
                "{place}: signature not checked, so its sequence number is neither checked against nor recorded in {}",
                self.path.display()
            ));
            return Ok(Admission { notes, done: None, record: None });
        };
        let (series, sequence) = (&pos.series, pos.sequence);
        if let Some(a) = self.last(key_id, series).filter(|a| a.bundle_id == index.bundle_id && a.sequence == sequence)
        {
            notes.push(format!(
                "{place}: bundle {} (series `{series}`, sequence {sequence}) is the last one applied here, at {}: \
                 applying it again as a re-run",
                a.bundle_id, a.at
            ));
            return Ok(Admission { notes, done: None, record: None });
        }
        let last = self.last(key_id, series).map(|a| a.sequence);
        let done = last
            .is_none()
            .then(|| format!("series `{series}` of key {key_id}: first bundle applied here (sequence {sequence})"));
        match last {
            None => {}
            Some(last) if sequence <= last && !policy.allow_rollback => {
                return Err(Error::trust(format!(
                    "{place}: series `{series}` of key {key_id}: sequence {sequence} is not after {last}, the last \
                     applied here ({}): a replayed or older bundle would roll images back (--allow-rollback \
                     applies it anyway)",
                    self.path.display()
                )));
            }
            Some(last) if sequence <= last => notes.push(format!(
                "series `{series}`: sequence {sequence} is not after {last}; applying it because of --allow-rollback \
                 (the state stays at {last})"
            )),
            Some(last) if sequence > last + 1 => notes.push(format!(
                "series `{series}`: sequence {sequence} follows {last}, a gap of {} (expected with time-based \
                 sequence numbers; otherwise bundles in between were never applied here)",
                sequence - last - 1
            )),
            Some(_) => {}
        }
        let record = last.is_none_or(|l| sequence > l).then(|| Applied {
            key_id: key_id.to_owned(),
            series: series.clone(),
            sequence,
            bundle_id: index.bundle_id.clone(),
            at: created_rfc3339(policy.now).unwrap_or_default(),
        });
        Ok(Admission { notes, done, record })
    }

    /// Records an admitted bundle as applied: call only once its import has fully succeeded.
    /// Returns the entry written, if the state changed.
    pub fn record(&mut self, admission: Admission) -> Result<Option<Applied>> {
        let Some(new) = admission.record else { return Ok(None) };
        self.doc.applied.retain(|a| !(a.key_id == new.key_id && a.series == new.series));
        self.doc.applied.push(new.clone());
        self.doc.applied.sort_by(|a, b| (&a.key_id, &a.series).cmp(&(&b.key_id, &b.series)));
        let mut bytes = serde_json::to_vec_pretty(&self.doc).expect("state serialises");
        bytes.push(b'\n');
        let out = AtomicFile::create(&self.path)?;
        std::io::Write::write_all(&mut out.file(), &bytes).at(|| out.place())?;
        out.commit(0o644)?;
        Ok(Some(new))
    }
}

/// Refuses a bundle past its signed expiry unless `--allow-expired`, which it notes.
fn check_expiry(pos: &Position, place: &str, policy: &Policy, notes: &mut Vec<String>) -> Result<()> {
    let Some(expires) = pos.expires.filter(|&e| policy.now > e) else { return Ok(()) };
    let when = created_rfc3339(expires)?;
    if !policy.allow_expired {
        return Err(Error::trust(format!(
            "{place}: expired at {when}; a stale bundle may hold images with known flaws \
             (--allow-expired applies it anyway)"
        )));
    }
    notes.push(format!("{place}: expired at {when}; applying it because of --allow-expired"));
    Ok(())
}

fn read(path: &Path) -> Result<Doc> {
    let place = path.display().to_string();
    let text = local_file::read_text(path, MAX_STATE_BYTES, "an airlock state file")?;
    let doc: Doc =
        json::parse_as(text.as_bytes()).map_err(|e| Error::bad(&place, format!("not an airlock state file: {e}")))?;
    if doc.version != STATE_VERSION {
        return Err(Error::bad(
            &place,
            format!("state file version {} (this airlock reads {STATE_VERSION})", doc.version),
        ));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(sequence: Option<u64>, expires: Option<&str>) -> BundleIndex {
        let mut doc = serde_json::json!({
            "schemaVersion": 1, "mediaType": crate::bundle::format::MEDIA_TYPE, "bundleId": "b",
            "created": "2026-01-01T00:00:00Z", "tool": "t", "images": [], "blobs": [], "files": [],
        });
        if let Some(s) = sequence {
            doc["schemaVersion"] = 2.into();
            doc["series"] = "nightly".into();
            doc["sequence"] = s.into();
        }
        if let Some(e) = expires {
            doc["expires"] = e.into();
        }
        BundleIndex::parse("i", doc.to_string().as_bytes()).unwrap()
    }

    const POLICY: Policy = Policy { allow_rollback: false, allow_expired: false, now: 1_800_000_000 };

    #[test]
    fn a_sequence_not_after_the_last_is_refused_and_a_gap_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(&dir.path().join("s.json"), &|| {}).unwrap();
        let a = state.admit(&index(Some(5), None), Some("K"), "b5", &POLICY).unwrap();
        state.record(a).unwrap();
        let rerun = state.admit(&index(Some(5), None), Some("K"), "b5", &POLICY).unwrap();
        assert!(
            rerun.record.is_none() && rerun.notes[0].contains("applying it again as a re-run"),
            "{:?}",
            rerun.notes
        );
        let mut other = index(Some(5), None);
        other.bundle_id = "c".into();
        let e = state.admit(&other, Some("K"), "c5", &POLICY).unwrap_err().to_string();
        assert!(e.contains("sequence 5 is not after 5"), "{e}");
        let gap = state.admit(&index(Some(7), None), Some("K"), "b7", &POLICY).unwrap();
        assert!(gap.notes[0].contains("a gap of 1"), "{:?}", gap.notes);
        let other_key = state.admit(&index(Some(1), None), Some("L"), "b1", &POLICY).unwrap();
        assert!(other_key.notes.is_empty(), "{:?}", other_key.notes);
        assert!(other_key.done.as_deref().is_some_and(|d| d.contains("first bundle")), "{other_key:?}");
    }

    #[test]
    fn state_survives_reopening_and_an_expired_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/s.json");
        let mut state = State::open(&path, &|| {}).unwrap();
        let a = state.admit(&index(Some(9), None), Some("K"), "b", &POLICY).unwrap();
        state.record(a).unwrap();
        drop(state);
        let state = State::open(&path, &|| {}).unwrap();
        assert_eq!(state.last("K", &Series::try_from("nightly".to_owned()).unwrap()).unwrap().sequence, 9);
        let old = index(Some(10), Some("2020-01-01T00:00:00Z"));
        assert!(state.admit(&old, Some("K"), "b", &POLICY).unwrap_err().to_string().contains("expired at 2020"));
        let v1 = state.admit(&index(None, None), Some("K"), "b", &POLICY).unwrap();
        assert!(v1.record.is_none() && v1.notes[0].contains("schema version 1"));
    }
}
