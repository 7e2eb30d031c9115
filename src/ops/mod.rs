//! Operations: one function per thing a user asks airlock to do, each taking a plain options
//! struct and returning what happened. The binary only parses arguments into those structs, calls
//! in here and prints the result; nothing below this layer knows about commands.
//!
//! An operation never prints: what the person running it should see while it runs (progress, a
//! bundle verified, a note) goes to a [`Ui`], which the binary turns into terminal output.

pub mod create;
pub mod export;
pub mod import;
pub mod inspect;
pub mod keygen;
pub mod load;
pub mod push;
pub mod verify;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::reader::{Report, Trust};
use crate::bundle::sign::PublicKey;
use crate::error::{Error, Result};
use crate::progress::{Moving, Observer, Phase, Silent};
use crate::sink::{self, verified::VerifiedBundle};
use crate::state::Applied;
use crate::volume::input::Source;

/// What an operation tells the person running it while it runs.
pub enum Event<'a> {
    /// The bundle at `place` verified (signature and every blob): before anything was written
    /// (`load`, a stream), or as the output was written, before it was committed (`export` of a
    /// file).
    Verified { place: &'a str, report: &'a Report },
    /// Something worth knowing, though nothing failed.
    Note(&'a str),
    /// One step of a push (a manifest written, a tag moved).
    Step(&'a str),
    /// Another import holds the state file's lock; the operation waits for it.
    WaitingForState(&'a Path),
    /// The state file now records this sequence as applied.
    Recorded { applied: &'a Applied, state: &'a Path },
    /// What an interruption from now on would leave behind (written, not written).
    Outcome(&'a str),
}

/// Where an operation reports to: progress as bytes move ([`Observer`]) and [`Event`]s.
pub trait Ui: Observer {
    fn event(&self, event: Event<'_>);
}

impl Ui for Silent {
    fn event(&self, _: Event<'_>) {}
}

/// Opens the bundle named on the command line: a file, a split bundle's parts, a pipe or stdin.
pub fn open_source(paths: &[PathBuf], trust: &Trust<'_>) -> Result<Source> {
    crate::volume::input::open(paths, trust)
}

/// A sequential reader of a bundle whose index alone is read (not verified, so a split bundle's
/// part list's signature is not checked either): a file, a split bundle's parts, a pipe or stdin.
pub fn open_bundle(paths: &[PathBuf]) -> Result<(Box<dyn Read>, String)> {
    open_source(paths, &Trust::Insecure)?.reader()
}

/// [`open_bundle`] of one path.
pub fn open_one(path: &Path) -> Result<(Box<dyn Read>, String)> {
    open_bundle(&[path.to_owned()])
}

/// A sequential reader of the bundle, telling `observer` the bytes read (and so verified).
pub fn stream_shown<'o>(source: &'o Source, observer: &'o dyn Observer) -> Result<(Box<dyn Read + 'o>, String)> {
    let (src, place) = source.reader()?;
    let total = source.known_len().unwrap_or(0);
    let moving = Moving::begin(src, observer, Phase::Verify, &place, total);
    Ok((Box::new(moving), place))
}

/// Verifies the whole bundle before anything is written from it (`load`; `export` of a stream):
/// a file or a split bundle's parts in place, on every core; a stream while it is staged in a
/// temporary directory inside `stage_in`. Tells `ui` the bytes checked, then that the bundle verified;
/// returns it with its name for messages.
pub fn verify_whole(
    source: &Source,
    trust: Trust<'_>,
    ui: &dyn Ui,
    stage_in: &Path,
) -> Result<(VerifiedBundle, String)> {
    let (verified, place) = match source {
        Source::Volumes(v) => (VerifiedBundle::file(Arc::clone(v), trust, ui), v.place().to_owned()),
        stream => {
            let (src, place) = stream_shown(stream, ui)?;
            (sink::stage(src, &place, trust, stage_in).map(VerifiedBundle::Staged), place)
        }
    };
    let verified = verified.map_err(|e| source.explain(e))?;
    ui.event(Event::Verified { place: &place, report: verified.report() });
    Ok((verified, place))
}

/// The name of the bundle for messages and the state: its first path.
pub fn bundle_place(paths: &[PathBuf]) -> String {
    paths.first().map(|p| p.display().to_string()).unwrap_or_default()
}

/// Reads a key file, size-capped before it is read; a key that cannot be read is a trust failure.
/// A file too large or not text (a bundle given for the key) is told what a key file is.
pub fn read_key(path: &Path, what: &str) -> Result<String> {
    crate::local_file::read_text(path, crate::local_file::MAX_KEY_BYTES, what).map_err(|e| match e {
        Error::BadInput { place, msg } => {
            Error::trust(format!("{place}: {msg}; {what} is a small text file{}", key_hint(what)))
        }
        other => other,
    })
}

/// Where the key `what` names comes from.
fn key_hint(what: &str) -> &'static str {
    match what {
        "a minisign public key" => " (the PREFIX.pub `airlock keygen -o PREFIX` wrote; the bundle goes last)",
        "a minisign secret key" => " (the PREFIX.key `airlock keygen -o PREFIX` wrote)",
        _ => "",
    }
}

/// Loads the public key a bundle must be signed with (`None`: `--insecure-no-signature`).
pub fn load_public_key(path: Option<&Path>) -> Result<Option<PublicKey>> {
    let Some(p) = path else { return Ok(None) };
    let text = read_key(p, "a minisign public key")?;
    Ok(Some(PublicKey::from_box(&p.display().to_string(), &text)?))
}

/// Loads the cosign public keys of `--cosign-key` / `--require-cosign-key`; a key that cannot be
/// read or parsed is a trust failure naming the file.
pub fn load_cosign_keys(paths: &[PathBuf]) -> Result<Vec<crate::cosign::PublicKey>> {
    paths
        .iter()
        .map(|p| {
            let place = p.display().to_string();
            let text = read_key(p, "a cosign public key")?;
            crate::cosign::PublicKey::from_pem(&place, &text).map_err(|why| Error::trust(format!("{place}: {why}")))
        })
        .collect()
}

/// The trust level for a loaded key (`None`: `--insecure-no-signature`).
pub fn trust(key: &Option<PublicKey>) -> Trust<'_> {
    key.as_ref().map_or(Trust::Insecure, Trust::Key)
}

/// The time now in seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The bundle's creation time in seconds, used as mtime of what is written from it.
pub fn created_epoch(index: &crate::bundle::format::BundleIndex) -> u64 {
    crate::bundle::format::epoch_seconds(&index.created).unwrap_or(0)
}
