//! Sinks: where a verified bundle goes on the isolated side (a registry, the Docker Engine, a
//! docker-archive file, an OCI layout).
//!
//! Every sink reads blobs through [`Blobs`], from one of two places. A bundle file (or a split
//! bundle's parts) is read in place ([`IndexedBundle`]): by offset, each blob verified again as
//! it is read, with no copy. A bundle read from a stream can be read only once, so [`stage`]
//! verifies it while unpacking its blobs into a temporary OCI layout beside the output, and the
//! sink reads them from there. `load` sends nothing until the whole bundle, signature included,
//! has verified, and `export` commits nothing until then (it verifies a file's blobs as it writes
//! them: [`verified`]); an error or an interruption leaves nothing at the output, and no
//! temporary directory.

pub mod absent;
pub mod attachments;
mod claims;
pub mod docker_archive;
pub mod layout;
pub mod push;
mod read_ahead;
mod stage;
pub mod verified;

use std::collections::HashMap;
use std::io::Read;

pub use stage::{Staged, stage};

use crate::bundle::bases::Given;
use crate::bundle::format::{BlobEntry, BundleIndex};
use crate::bundle::indexed::IndexedBundle;
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Where a sink reads blobs from: the bundle file itself, or a verified staging directory when
/// the bundle came from a stream.
pub trait Blobs: Sync {
    fn index(&self) -> &BundleIndex;
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;
    fn place(&self) -> String;

    /// How messages name one blob: the bundle (or base bundle) that holds it, and its entry.
    fn entry(&self, digest: &Digest) -> String {
        format!("{}: entry {}", self.place(), digest.blob_path())
    }

    /// Reads a small blob (a manifest, an index, a signature) whole, verified as [`Blobs::open`]
    /// verifies it; one larger than any JSON document airlock reads is refused, never held.
    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        let max = crate::json::MAX_JSON_BYTES;
        let mut bytes = Vec::new();
        let read = self.open(digest)?.take(max + 1).read_to_end(&mut bytes);
        read.map_err(|e| Error::io(self.entry(digest), e).into_integrity())?;
        if bytes.len() as u64 > max {
            return Err(Error::integrity(self.entry(digest), format!("too large for a manifest (over {max} bytes)")));
        }
        Ok(bytes)
    }
}

impl Blobs for IndexedBundle {
    fn index(&self) -> &BundleIndex {
        IndexedBundle::index(self)
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.open_blob(digest)?))
    }
    fn place(&self) -> String {
        IndexedBundle::place(self).to_owned()
    }
}

/// A delta with the base bundles given for it: reads each blob from whichever holds it.
pub struct WithBases<'a> {
    delta: &'a dyn Blobs,
    given: &'a Given,
    absent: HashMap<&'a Digest, &'a BlobEntry>,
}

impl<'a> WithBases<'a> {
    pub fn new(delta: &'a dyn Blobs, given: &'a Given) -> Self {
        let absent = delta.index().absent_blobs().map(|b| (&b.digest, b)).collect();
        WithBases { delta, given, absent }
    }
}

impl Blobs for WithBases<'_> {
    fn index(&self) -> &BundleIndex {
        self.delta.index()
    }

    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        match self.absent.get(digest) {
            Some(b) => Ok(Box::new(self.given.open_blob(b)?)),
            None => self.delta.open(digest),
        }
    }

    fn place(&self) -> String {
        self.delta.place()
    }

    fn entry(&self, digest: &Digest) -> String {
        match self.given.holder(digest).filter(|_| self.absent.contains_key(digest)) {
            Some(base) => base.entry(digest),
            None => self.delta.entry(digest),
        }
    }
}
