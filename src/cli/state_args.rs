//! The flags every importing command (`push`, `load`, `export`) shares: where the state of applied
//! series lives, and the two overrides of its refusals. See [`airlock::state`].

use std::path::PathBuf;

use airlock::bundle::reader::Report;
use airlock::error::Error;
use airlock::state::{Admission, Policy, State};

#[derive(clap::Args)]
pub struct StateArgs {
    /// File recording the highest sequence applied per key and series (default:
    /// $XDG_STATE_HOME/airlock/state.json, else ~/.local/state/airlock/state.json)
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Apply a bundle whose sequence is not after the last one applied (a replay or rollback)
    #[arg(long)]
    allow_rollback: bool,
    /// Apply a bundle past its expiry
    #[arg(long)]
    allow_expired: bool,
}

/// The locked state and what it let through, to be recorded once the import has succeeded.
pub struct Admitted {
    state: State,
    admission: Admission,
}

impl StateArgs {
    /// Locks the state file (waiting, with a note, if another import holds it).
    pub fn open(&self) -> airlock::error::Result<State> {
        let path = self.path()?;
        State::open(&path, &|| eprintln!("waiting for another import to release {}.lock", path.display()))
    }

    /// The state file: `--state`, else the default.
    pub fn path(&self) -> airlock::error::Result<PathBuf> {
        match &self.state {
            Some(p) => Ok(p.clone()),
            None => default_path(),
        }
    }

    /// What `--allow-rollback` and `--allow-expired` let through, now.
    pub fn policy(&self) -> Policy {
        Policy { allow_rollback: self.allow_rollback, allow_expired: self.allow_expired, now: super::now() }
    }

    /// Checks a verified bundle against the state and prints what the user should know.
    pub fn admit(&self, state: State, report: &Report, place: &str) -> airlock::error::Result<Admitted> {
        let admission = state.admit(&report.index, report.key_id.as_deref(), place, &self.policy())?;
        for n in &admission.notes {
            eprintln!("note: {n}");
        }
        Ok(Admitted { state, admission })
    }
}

impl Admitted {
    /// Records the bundle as applied; call only after the import fully succeeded.
    pub fn record(mut self) -> airlock::error::Result<()> {
        if let Some(a) = self.state.record(self.admission)? {
            eprintln!(
                "series `{}` of key {} is now at sequence {} ({})",
                a.series,
                a.key_id,
                a.sequence,
                self.state.path().display()
            );
        }
        Ok(())
    }
}

/// `$XDG_STATE_HOME/airlock/state.json` (an absolute XDG_STATE_HOME only, as the spec says), else
/// `$HOME/.local/state/airlock/state.json`.
fn default_path() -> airlock::error::Result<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let home = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state"));
    match xdg.or_else(home) {
        Some(dir) => Ok(dir.join("airlock").join("state.json")),
        None => Err(Error::bad("--state", "neither XDG_STATE_HOME nor HOME is set; give --state FILE")),
    }
}
