//! Delta bundles on the isolated side: the base bundles given with `--base`, and the blobs a delta
//! relies on that are nowhere at hand.
//!
//! A given base is opened like any bundle (signature first, every header against its index) and
//! must be of the delta's series; if the delta records a base of the same bundle id, its signed
//! index must be the one recorded, byte for byte (its sha256). A blob is taken from whichever given
//! bundle carries it (the recorded base, or a later full bundle), through a verifying reader.
//! [`missing_error`] is the one message every command gives when blobs are missing, naming each
//! blob and the base bundle that carries it, so the operator knows which transfer to bring.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::bundle::format::{BlobEntry, BundleIndex};
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::Trust;
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::progress::Observer;

/// The bundles given with `--base`, opened and checked against the delta.
#[derive(Default)]
pub struct Given {
    bundles: Vec<IndexedBundle>,
}

impl Given {
    pub fn open(paths: &[PathBuf], trust: Trust<'_>, delta: &BundleIndex) -> Result<Given> {
        let mut bundles = Vec::new();
        for path in paths {
            let bundle = IndexedBundle::open_path(path, trust)?;
            check_base(&bundle, delta)?;
            bundles.push(bundle);
        }
        Ok(Given { bundles })
    }

    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    /// The first given bundle whose archive holds the blob.
    pub fn holder(&self, digest: &Digest) -> Option<&IndexedBundle> {
        self.bundles.iter().find(|b| b.carries(digest))
    }

    /// A verifying reader of a blob from the bundle that holds it.
    pub fn open_blob(&self, blob: &BlobEntry) -> Result<VerifyingReader<Box<dyn std::io::Read + Send>>> {
        match self.holder(&blob.digest) {
            Some(b) => b.open_blob(&blob.digest),
            None => Err(Error::bad(format!("blob {}", blob.digest), "is in none of the --base bundles given")),
        }
    }

    /// The delta's absent blobs by the given bundle that holds them; those none holds are left out.
    pub fn by_holder<'a>(&'a self, delta: &'a BundleIndex) -> Vec<(&'a IndexedBundle, Vec<&'a Digest>)> {
        self.bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let first_holder = |d: &Digest| self.bundles.iter().position(|o| o.carries(d)) == Some(i);
                (b, delta.absent_blobs().map(|e| &e.digest).filter(|d| first_holder(d)).collect())
            })
            .collect()
    }
}

/// What [`check_state`] established: the delta's absent blobs, checked in the given bases.
#[derive(Debug, Clone, Copy)]
pub struct StateChecked {
    pub blobs: usize,
    pub bytes: u64,
}

/// `verify --base`: every blob the delta (at `place`) leaves out is in a given base and has its
/// digest there (hashed on every core), so the whole state it lists is at hand.
pub fn check_state(given: &Given, delta: &BundleIndex, place: &str, observer: &dyn Observer) -> Result<StateChecked> {
    check_state_except(given, delta, place, &HashSet::new(), observer)
}

/// [`check_state`], hashing none of the blobs `skip` names (a sink verifies those as it reads
/// them): each must still be in a given base, so a missing one is named before anything is
/// written.
pub fn check_state_except(
    given: &Given,
    delta: &BundleIndex,
    place: &str,
    skip: &HashSet<&Digest>,
    observer: &dyn Observer,
) -> Result<StateChecked> {
    let missing = missing(delta, &|b| given.holder(&b.digest).is_some());
    if !missing.is_empty() {
        return Err(missing_error(place, delta, &missing, "in any --base bundle given"));
    }
    let mut checked = StateChecked { blobs: 0, bytes: 0 };
    for (holder, mut digests) in given.by_holder(delta) {
        digests.retain(|d| !skip.contains(d));
        checked.bytes += holder.check_blobs(&digests, observer)?;
        checked.blobs += digests.len();
    }
    Ok(checked)
}

/// A given base belongs to the delta's series, and is the very bundle the delta recorded if it
/// has a recorded base's id.
fn check_base(base: &IndexedBundle, delta: &BundleIndex) -> Result<()> {
    let index = base.index();
    if index.series.is_some() && index.series != delta.series {
        let series = index.series.as_ref().map_or("", |s| s.as_str());
        let msg = format!(
            "is of series `{series}`, the delta of series `{}`",
            delta.series.as_ref().map_or("", |s| s.as_str())
        );
        return Err(Error::bad(base.place(), msg));
    }
    let recorded = delta.bases.iter().find(|b| b.bundle_id == index.bundle_id);
    if let Some(r) = recorded.filter(|r| r.index_digest != base.report().index_digest) {
        let msg = format!(
            "bundle {} has signed index {}, the delta records {} for it",
            index.bundle_id,
            base.report().index_digest,
            r.index_digest
        );
        return Err(Error::integrity(base.place(), msg));
    }
    Ok(())
}

/// The blobs of `index` that neither its archive holds nor `available` finds.
pub fn missing<'a>(index: &'a BundleIndex, available: &dyn Fn(&BlobEntry) -> bool) -> Vec<&'a BlobEntry> {
    index.absent_blobs().filter(|b| !available(b)).collect()
}

/// How many missing blobs a message names one by one.
const SHOWN: usize = 20;

/// The error for a delta whose absent blobs `missing` are not where they were looked for
/// (`looked`, e.g. "in registry.internal:5000 or a --base bundle"): each blob with the base
/// bundle (id and sequence) that carries it.
pub fn missing_error(place: &str, index: &BundleIndex, missing: &[&BlobEntry], looked: &str) -> Error {
    let sequence = |id: &str| index.bases.iter().find(|b| b.bundle_id == id).map_or(0, |b| b.sequence);
    let lines: Vec<String> = missing
        .iter()
        .take(SHOWN)
        .map(|b| {
            let id = b.carried_by.as_deref().unwrap_or_default();
            format!("{} ({} bytes) is carried by base bundle {id} (sequence {})", b.digest, b.size, sequence(id))
        })
        .collect();
    let more = missing.len().saturating_sub(SHOWN);
    let more = if more > 0 { format!("; and {more} more") } else { String::new() };
    let mut ids: Vec<&str> = missing.iter().filter_map(|b| b.carried_by.as_deref()).collect();
    ids.sort_unstable();
    ids.dedup();
    Error::bad(
        place,
        format!(
            "a delta: {} blobs it relies on are not {looked}: {}{more}. Give base bundle {} with --base, or apply a \
             delta made against an older base (or a full bundle)",
            missing.len(),
            lines.join("; "),
            ids.join(", ")
        ),
    )
}
