//! A bundle read from a stream (stdin, a pipe), verified while its blobs are unpacked into a
//! temporary OCI layout beside the output ([`stage`]): a stream can be read only once, and no
//! sink may write before the whole bundle has verified. Sinks then read the blobs from there.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::bundle::bases::{self, Given};
use crate::bundle::format::BundleIndex;
use crate::bundle::reader::{self, Item, Report, Trust};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::sink::Blobs;
use crate::sink::layout::{FILES, Layout};

/// A verified bundle unpacked as an OCI image layout in a temporary directory.
pub struct Staged {
    layout: Layout,
    pub report: Report,
}

impl Staged {
    pub fn index(&self) -> &BundleIndex {
        &self.report.index
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob_path(digest)
    }

    /// Copies a delta's absent blobs from the base bundles given into the layout, each verified
    /// as it is read, so that every sink sees a complete image set; `place` names the delta.
    pub fn fill_from(&self, given: &Given, place: &str) -> Result<()> {
        let index = self.index();
        let missing = bases::missing(index, &|b| given.holder(&b.digest).is_some());
        if !missing.is_empty() {
            return Err(bases::missing_error(place, index, &missing, "in any --base bundle given"));
        }
        for b in index.absent_blobs() {
            let source = given.holder(&b.digest).map_or_else(String::new, |h| h.entry(&b.digest));
            self.layout.put(&b.digest.blob_path(), &source, &mut given.open_blob(b)?)?;
        }
        self.layout.sync();
        Ok(())
    }

    /// Moves the layout to `dest`, which must not exist yet.
    pub fn persist_layout(self, dest: &Path) -> Result<Report> {
        self.layout.persist(dest)?;
        Ok(self.report)
    }
}

impl Blobs for Staged {
    fn index(&self) -> &BundleIndex {
        Staged::index(self)
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.blob_path(digest);
        let f = fs_err::File::open(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }
    fn place(&self) -> String {
        self.report.index.bundle_id.clone()
    }
}

/// Verifies the bundle from `src` while unpacking it into a new temporary directory inside
/// `parent`.
pub fn stage(src: impl Read, place: &str, trust: Trust<'_>, parent: &Path) -> Result<Staged> {
    let layout = Layout::create(parent)?;
    let mut on_entry = |item: Item<'_>, data: &mut dyn Read| -> Result<()> {
        let (name, write) = match item {
            Item::Blob(b) => (b.digest.blob_path(), true),
            Item::File(f) => (f.path.clone(), FILES.contains(&f.path.as_str())),
        };
        if !write {
            return Ok(());
        }
        layout.put(&name, &format!("{place}: entry {name}"), data)
    };
    let report = reader::read(src, place, trust, &mut |_| Ok(()), &mut on_entry)?;
    layout.sync();
    Ok(Staged { layout, report })
}
