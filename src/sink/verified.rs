//! A bundle verified whole before `load` or `export` writes anything from it. A bundle file (or a
//! split bundle's parts) is checked in place, every blob hashed on its own core, and the output is
//! then written from the file itself, each blob verified again as it is read (the file may change
//! in between; then the write fails and leaves nothing): no copy and no temporary space. A stream
//! can be read only once, so it is verified while it is staged ([`super::stage`]).

use std::path::Path;
use std::sync::Arc;

use crate::bundle::bases::{self, Given};
use crate::bundle::format::BundleIndex;
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::{Report, Trust};
use crate::error::Result;
use crate::progress::Observer;
use crate::sink::{Blobs, Staged, WithBases, layout};
use crate::volume::input::Volumes;

pub enum VerifiedBundle {
    /// A bundle file or a split bundle's parts, read in place.
    File(IndexedBundle),
    /// A bundle read from a stream, unpacked into a temporary layout.
    Staged(Staged),
}

impl VerifiedBundle {
    /// Opens the bundle in `volumes` (signature, headers, manifests) and checks the content of
    /// every blob and file on every core, telling `observer` the bytes checked.
    pub fn file(volumes: Arc<Volumes>, trust: Trust<'_>, observer: &dyn Observer) -> Result<Self> {
        let mut bundle = IndexedBundle::open(volumes, trust)?;
        bundle.check_contents(observer)?;
        Ok(VerifiedBundle::File(bundle))
    }

    pub fn report(&self) -> &Report {
        match self {
            VerifiedBundle::File(b) => b.report(),
            VerifiedBundle::Staged(s) => &s.report,
        }
    }

    pub fn index(&self) -> &BundleIndex {
        &self.report().index
    }

    /// Checks that every blob a delta (at `place`) leaves out is in a bundle of `given` and has
    /// its digest there (hashed in place, on every core); nothing to do for a full bundle.
    pub fn check_bases(&self, given: &Given, place: &str, observer: &dyn Observer) -> Result<()> {
        if self.index().absent_blobs().next().is_none() {
            return Ok(());
        }
        bases::check_state(given, self.index(), place, observer).map(drop)
    }

    /// Every blob of the images: from the bundle, and those a delta leaves out from `given`.
    pub fn blobs<'a>(&'a self, given: &'a Given) -> WithBases<'a> {
        WithBases::new(self.inner(), given)
    }

    fn inner(&self) -> &dyn Blobs {
        match self {
            VerifiedBundle::File(b) => b,
            VerifiedBundle::Staged(s) => s,
        }
    }

    /// Writes the bundle's OCI layout to `dest`, a new directory: from the bundle file, or by
    /// moving the staged layout (a delta's blobs from `given` copied in first). `place` names the
    /// bundle; `observer` is told the bytes written.
    pub fn write_layout(self, given: &Given, dest: &Path, place: &str, observer: &dyn Observer) -> Result<()> {
        match self {
            VerifiedBundle::File(b) => layout::write(&b, &WithBases::new(&b, given), dest, observer),
            VerifiedBundle::Staged(s) => {
                layout::refuse_existing(dest)?;
                s.fill_from(given, place)?;
                s.persist_layout(dest).map(drop)
            }
        }
    }
}
