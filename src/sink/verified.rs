//! A bundle verified before `load` or `export` writes anything from it, and the bundle file that
//! `export` verifies while it writes.
//!
//! `load` verifies the whole bundle first ([`VerifiedBundle`]): the Docker Engine is not an
//! atomic sink for every image store (the containerd store ingests content as it arrives), so
//! nothing is sent until every blob and the signature verified. A bundle file (or a split
//! bundle's parts) is checked in place, every blob hashed on its own core, and the archive is then
//! written from the file itself, each blob verified again as it is read (the file may change in
//! between; then the write fails). A stream can be read only once, so it is verified while it is
//! staged ([`super::stage`]); `export` of a stream does the same.
//!
//! `export` of a bundle file reads each blob once ([`OnePass`]): its output appears only when it
//! is committed (a temporary file or directory renamed into place), so the blobs it holds are
//! verified as they are written, and only the rest (other platforms, attachments, the bundle's own
//! files) is hashed on every core beforehand. A mismatch still leaves no output.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::bundle::bases::{self, Given};
use crate::bundle::format::BundleIndex;
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::{Report, Trust};
use crate::digest::Digest;
use crate::error::Result;
use crate::image::Platform;
use crate::progress::Observer;
use crate::sink::docker_archive::{self, DockerImage};
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

/// A bundle file (or a split bundle's parts) opened for `export`, which writes each blob of its
/// output from the file once, verified as it is read, and commits the output only once everything
/// verified: its signature, headers and manifests on opening, the blobs and files the output does
/// not hold hashed on every core before the first byte is written (and a delta's bases checked to
/// hold every blob it leaves out), the rest while it is written.
pub struct OnePass(IndexedBundle);

impl OnePass {
    pub fn open(volumes: Arc<Volumes>, trust: Trust<'_>) -> Result<Self> {
        IndexedBundle::open(volumes, trust).map(OnePass)
    }

    /// What opening established (signature, key id, index); no blob content checked yet.
    pub fn report(&self) -> &Report {
        self.0.report()
    }

    pub fn place(&self) -> &str {
        self.0.place()
    }

    /// Writes the bundle's OCI layout to `dest`, a new directory (see [`layout::write`]); returns
    /// the report of the bundle, every blob and file of which has then been checked.
    pub fn write_layout(self, given: &Given, dest: &Path, observer: &dyn Observer) -> Result<Report> {
        let written = self.0.index().blobs.iter().map(|b| &b.digest).collect();
        self.check_rest(given, &written, &layout::FILES, observer)?;
        layout::write(&self.0, &WithBases::new(&self.0, given), dest, observer)?;
        Ok(self.0.into_checked_report())
    }

    /// Writes a docker-archive of the images for `platform` to `dest` (see
    /// [`docker_archive::write_file`]); returns them and the report of the bundle, every blob and
    /// file of which has then been checked.
    pub fn write_docker_archive(
        self,
        given: &Given,
        platform: &Platform,
        (dest, mtime): (&Path, u64),
        observer: &dyn Observer,
    ) -> Result<(Vec<DockerImage>, Report)> {
        let blobs = WithBases::new(&self.0, given);
        let images = docker_archive::plan(&blobs, platform)?;
        let written = docker_archive::blobs_written(&images).into_keys().collect();
        self.check_rest(given, &written, &[], observer)?;
        docker_archive::write_file(&blobs, &images, dest, mtime, observer)?;
        Ok((images, self.0.into_checked_report()))
    }

    /// Before anything is written: every blob a delta leaves out is in a given base, and every
    /// blob and file but those the output holds (`written`, `files_written`), in the bundle and in
    /// its bases, has its digest.
    fn check_rest(
        &self,
        given: &Given,
        written: &HashSet<&Digest>,
        files_written: &[&str],
        observer: &dyn Observer,
    ) -> Result<()> {
        let index = self.0.index();
        if index.absent_blobs().next().is_some() {
            bases::check_state_except(given, index, self.place(), written, observer)?;
        }
        self.0.check_except(written, files_written, observer).map(drop)
    }
}
