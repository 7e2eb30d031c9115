//! `airlock serve`: verified bundles served in place as a read-only OCI registry, for hosts and
//! clusters that pull from a registry but have none.
//!
//! [`open`] verifies each bundle (signature, headers, manifests, every blob) before anything
//! listens, then keeps one open file per bundle; [`content`] maps repositories, tags and blobs onto
//! (bundle, offset); [`routes`] parses the distribution API's URLs; [`api`] answers them; [`body`]
//! streams blobs from the files, hashing what it sends whole; [`server`] runs the connections.

pub mod api;
pub mod body;
pub mod chunks;
pub mod client_config;
pub mod content;
pub mod limits;
pub mod routes;
pub mod server;
mod stall;
pub mod tls;
pub mod verified;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::format::created_rfc3339;
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::Trust;
use crate::error::{Error, IoContext, Result};
use crate::progress::Observer;
use crate::serve::api::{BundleFile, Bundles};
use crate::serve::content::{Content, Naming};
use crate::serve::verified::{Identity, Record};
use crate::state::{Applied, Policy, State};
use crate::volume::input::{self, Source, Volumes};

/// Which bundles to serve and how.
pub struct Options<'a> {
    pub bundles: Vec<PathBuf>,
    pub trust: Trust<'a>,
    pub naming: Naming,
    /// The record of earlier full verifications ([`verified`]) to use and update; `None` reads
    /// every blob.
    pub record: Option<PathBuf>,
    /// Seconds since the epoch, for the record.
    pub now: u64,
}

/// The verified bundles, ready to serve, and what opening them established.
pub struct Opened {
    pub bundles: Bundles,
    /// In sequence order, as [`Content`] numbers them.
    pub reports: Vec<Checked>,
}

/// One bundle as opening left it.
pub struct Checked {
    /// Its signature, headers and manifests checked; blobs counted if they were read now.
    pub bundle: IndexedBundle,
    /// When its blobs were verified before, if the record let this start skip them.
    pub verified_before: Option<String>,
}

/// Verifies every bundle and opens it for serving: nothing listens before all of them hold.
pub fn open(opts: &Options<'_>, observer: &dyn Observer) -> Result<Opened> {
    let mut record = opts.record.as_deref().map(Record::open);
    let mut opened = Vec::new();
    for path in &opts.bundles {
        opened.push(open_one(path, opts, record.as_mut(), observer)?);
    }
    if let Some(r) = &record {
        r.save()?;
    }
    // Sequence order decides which bundle's tag wins; a stable sort keeps the command line's order
    // among equals.
    opened.sort_by_key(|(c, _)| c.bundle.index().sequence.unwrap_or(0));
    let mut content = Content::new(opts.naming);
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for (n, (checked, file)) in opened.into_iter().enumerate() {
        content.add(n, &checked.bundle)?;
        files.push(BundleFile { file, place: checked.bundle.place().to_owned() });
        reports.push(checked);
    }
    check_complete(&content, &reports)?;
    Ok(Opened { bundles: Bundles { content, files }, reports })
}

/// Every blob an image uses must be carried by one of the bundles: a delta needs its bases.
fn check_complete(content: &Content, reports: &[Checked]) -> Result<()> {
    let Some(missing) = content.missing().into_iter().next() else { return Ok(()) };
    let indexes = || reports.iter().map(|c| (c.bundle.place(), c.bundle.index()));
    let needs = indexes().find_map(|(place, index)| {
        let blob = index.blobs.iter().find(|b| &b.digest == missing)?;
        let base = index.bases.iter().find(|b| Some(&b.bundle_id) == blob.carried_by.as_ref())?;
        Some((place, base))
    });
    Err(match needs {
        Some((place, base)) => Error::bad(
            place,
            format!(
                "blob {missing} is carried by its base bundle {} (series `{}`, sequence {}), which is not among the \
                 bundles given: serve the delta together with its bases",
                base.bundle_id, base.series, base.sequence
            ),
        ),
        None => {
            let places: Vec<&str> = indexes().map(|(p, _)| p).collect();
            Error::integrity(places.join(", "), format!("blob {missing} is used by an image but carried by no bundle"))
        }
    })
}

/// Opens one bundle (a file, or a split bundle's parts): the signature, headers and manifests
/// always; every blob unless the record says these very files were verified before. The files
/// served are the ones checked, and must not have changed while they were.
fn open_one(
    path: &Path,
    opts: &Options<'_>,
    record: Option<&mut Record>,
    observer: &dyn Observer,
) -> Result<(Checked, Arc<Volumes>)> {
    let place = || path.display().to_string();
    let volumes = match input::open(&[path.to_owned()], &opts.trust)? {
        Source::Volumes(v) => v,
        Source::Stdin | Source::Pipe(_) => {
            let msg = "is not a file: serve reads blobs at their offsets, from a bundle file or a split bundle's parts";
            return Err(Error::bad(place(), msg));
        }
    };
    let before = identities(&volumes)?;
    let mut bundle = IndexedBundle::open(Arc::clone(&volumes), opts.trust).map_err(|e| volumes.explain(e))?;
    let index = bundle.report().index_digest.clone();
    let first = volumes.members().next().map_or_else(|| path.to_owned(), |(p, _)| p.to_owned());
    let canonical = fs_err::canonicalize(&first).at(place)?;
    let key = bundle.report().key_id.clone();
    let verified_before = match (&record, &key) {
        (Some(r), Some(k)) => r.verified_at(&canonical, &before, &index, k).map(str::to_owned),
        _ => None,
    };
    if verified_before.is_none() {
        bundle.check_contents(observer).map_err(|e| volumes.explain(e))?;
    }
    if identities(&volumes)? != before {
        return Err(Error::integrity(volumes.place(), "changed while it was being verified"));
    }
    if let (Some(r), Some(k), None) = (record, &key, &verified_before) {
        r.remember(&canonical, before, index, k, created_rfc3339(opts.now)?);
    }
    Ok((Checked { bundle, verified_before }, volumes))
}

/// What identifies the state of each file of a bundle, from the open files themselves.
fn identities(volumes: &Volumes) -> Result<Vec<Identity>> {
    let of = |(path, file): (&Path, &std::fs::File)| {
        file.metadata().map(|m| Identity::of(&m)).map_err(|e| Error::io(path.display().to_string(), e))
    };
    volumes.members().map(of).collect()
}

/// Checks the served bundles against the importers' state, as an import would: per signing key and
/// series, the newest bundle given must not be older than the last one served or imported here
/// (the same bundle again is fine: a restart); older ones given with it are its bases. The newest
/// is recorded as applied. Returns the notes for the user and what was recorded.
pub fn admit(state: &mut State, bundles: &[Checked], policy: &Policy) -> Result<(Vec<String>, Vec<Applied>)> {
    let bundles: Vec<&IndexedBundle> = bundles.iter().map(|c| &c.bundle).collect();
    let mut admissions = Vec::new();
    for b in &bundles {
        let key = b.report().key_id.as_deref();
        let pos = b.index().position();
        let superseded = bundles.iter().any(|other| {
            let same_series = other.report().key_id.as_deref() == key
                && pos.as_ref().is_some_and(|p| other.index().series.as_ref() == Some(&p.series));
            same_series && other.index().sequence > b.index().sequence
        });
        if superseded {
            continue;
        }
        admissions.push(state.admit(b.index(), key, b.place(), policy)?);
    }
    // Recorded only once every bundle is let through.
    let notes = admissions.iter().flat_map(|a| a.notes.iter().chain(&a.done).cloned()).collect();
    let mut recorded = Vec::new();
    for a in admissions {
        recorded.extend(state.record(a)?);
    }
    Ok((notes, recorded))
}

/// The original registry hosts of the images in `bundles` (signatures checked, no blob read): what
/// a client's configuration sends here.
pub fn registries(bundles: &[PathBuf], trust: Trust<'_>) -> Result<Vec<String>> {
    let mut hosts = std::collections::BTreeSet::new();
    for path in bundles {
        let bundle = IndexedBundle::open_path(path, trust)?;
        // The signed index holds only normalised references (checked when it was parsed).
        let names = bundle.index().images.iter().filter_map(|i| crate::reference::Reference::parse(&i.name).ok());
        hosts.extend(names.map(|r| r.registry().to_owned()));
    }
    Ok(hosts.into_iter().collect())
}
