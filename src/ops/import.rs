//! What every import (`push`, `load`, `export`) shares: the key the bundle must be signed with,
//! and the importer's state of applied series ([`crate::state`]) with its two overrides. An
//! import locks the state before it reads the bundle, admits the verified bundle against it, and
//! records it only once everything was written.

use std::path::{Path, PathBuf};

use crate::bundle::reader::{Report, Trust};
use crate::bundle::sign::PublicKey;
use crate::error::{Error, Result};
use crate::ops::{Event, Ui};
use crate::state::{Admission, Policy, State};

/// The settings every import shares.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The public key the bundle must be signed with; `None` checks no signature.
    pub public_key: Option<PathBuf>,
    /// The state file (default: [`default_state_path`]).
    pub state: Option<PathBuf>,
    /// Apply a bundle whose sequence is not after the last one applied (a replay or rollback).
    pub allow_rollback: bool,
    /// Apply a bundle past its expiry.
    pub allow_expired: bool,
}

/// An import under way: its key loaded and the state locked; once admitted, the bundle to record
/// when the import has succeeded.
pub struct Import<'u> {
    key: Option<PublicKey>,
    state: State,
    policy: Policy,
    admission: Option<Admission>,
    ui: &'u dyn Ui,
}

impl ImportOptions {
    /// Loads the key and locks the state file (waiting, with an event, if another import holds it).
    pub fn begin<'u>(&self, ui: &'u dyn Ui) -> Result<Import<'u>> {
        let key = super::load_public_key(self.public_key.as_deref())?;
        let path = match &self.state {
            Some(p) => p.clone(),
            None => default_state_path()?,
        };
        let state = State::open(&path, &|| ui.event(Event::WaitingForState(&path)))?;
        let policy =
            Policy { allow_rollback: self.allow_rollback, allow_expired: self.allow_expired, now: super::now() };
        Ok(Import { key, state, policy, admission: None, ui })
    }
}

impl Import<'_> {
    pub fn trust(&self) -> Trust<'_> {
        super::trust(&self.key)
    }

    /// Checks a verified bundle against the state, telling the UI what it should know.
    pub fn admit(&mut self, report: &Report, place: &str) -> Result<()> {
        let admission = self.state.admit(&report.index, report.key_id.as_deref(), place, &self.policy)?;
        for n in &admission.notes {
            self.ui.event(Event::Note(n));
        }
        self.admission = Some(admission);
        Ok(())
    }

    /// Records the admitted bundle as applied; call only after the import fully succeeded.
    pub fn record(mut self) -> Result<()> {
        let Some(mut admission) = self.admission.take() else { return Ok(()) };
        let done = admission.done.take();
        if let Some(applied) = self.state.record(admission)? {
            if let Some(d) = &done {
                self.ui.event(Event::Note(d));
            }
            self.ui.event(Event::Recorded { applied: &applied, state: self.state.path() });
        }
        Ok(())
    }
}

/// `$XDG_STATE_HOME/airlock/state.json` (an absolute XDG_STATE_HOME only, as the spec says), else
/// `$HOME/.local/state/airlock/state.json`.
pub fn default_state_path() -> Result<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let home = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state"));
    match xdg.or_else(home) {
        Some(dir) => Ok(dir.join("airlock").join("state.json")),
        None => Err(Error::bad("--state", "neither XDG_STATE_HOME nor HOME is set; give --state FILE")),
    }
}

/// Where a bundle read from stdin is unpacked while it is verified: `tmp_dir`, else the system's.
pub fn tmp_dir_or_default(tmp_dir: Option<&Path>) -> PathBuf {
    tmp_dir.map_or_else(std::env::temp_dir, Path::to_owned)
}
