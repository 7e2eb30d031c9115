//! The flags every importing command (`push`, `load`, `export`, `serve`) shares: where the state
//! of applied series lives, and the two overrides of its refusals. See [`airlock::ops::import`].

use std::path::PathBuf;

use airlock::ops::import::{ImportOptions, default_state_path};
use airlock::state::{Policy, State};

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

impl StateArgs {
    /// The import's settings, with the key the bundle must be signed with.
    pub fn import(&self, trust: &super::trust::TrustArgs) -> ImportOptions {
        ImportOptions {
            public_key: trust.public_key().map(Into::into),
            state: self.state.clone(),
            allow_rollback: self.allow_rollback,
            allow_expired: self.allow_expired,
        }
    }

    /// The state file: `--state`, else the default.
    pub fn path(&self) -> airlock::error::Result<PathBuf> {
        self.state.clone().map_or_else(default_state_path, Ok)
    }

    /// Locks the state file (waiting, with a note, if another import holds it).
    pub fn open(&self) -> airlock::error::Result<State> {
        let path = self.path()?;
        State::open(&path, &|| tell!("waiting for another import to release {}.lock", path.display()))
    }

    /// What `--allow-rollback` and `--allow-expired` let through, now.
    pub fn policy(&self) -> Policy {
        Policy { allow_rollback: self.allow_rollback, allow_expired: self.allow_expired, now: airlock::ops::now() }
    }
}
