//! Sinks: where a verified bundle goes on the isolated side.
//!
//! Every sink starts from [`stage`]: the bundle is streamed once through the verifying reader and
//! its blobs are written into a temporary OCI image layout beside the output. Nothing reaches the
//! output (a directory, a docker-archive file, a Docker Engine) until the whole bundle, signature
//! included, has verified; an error or an interruption leaves only the temporary directory, which
//! is removed.

pub mod absent;
pub mod attachments;
mod claims;
pub mod docker_archive;
pub mod push;

use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::atomic::sync_dir;
use crate::bundle::bases::{self, Given};
use crate::bundle::format::BundleIndex;
use crate::bundle::reader::{self, Item, Report, Trust};
use crate::error::{Error, IoContext, Result};

/// A verified bundle unpacked as an OCI image layout in a temporary directory.
pub struct Staged {
    pub dir: tempfile::TempDir,
    pub report: Report,
    /// After `dir`, so it is forgotten only once the directory is gone or kept.
    _registered: crate::cleanup::Registered,
}

impl Staged {
    pub fn index(&self) -> &BundleIndex {
        &self.report.index
    }

    pub fn blob_path(&self, digest: &crate::digest::Digest) -> PathBuf {
        self.dir.path().join(digest.blob_path())
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
            let source = given.holder(&b.digest).map_or_else(String::new, |h| h.place().to_owned());
            let source = format!("{source}: entry {}", b.digest.blob_path());
            write_synced(&self.blob_path(&b.digest), &source, &mut given.open_blob(b)?)?;
        }
        sync_dir(&self.dir.path().join("blobs").join("sha256"));
        Ok(())
    }

    /// Moves the layout to `dest`, which must not exist yet.
    pub fn persist_layout(self, dest: &Path) -> Result<Report> {
        let place = dest.display().to_string();
        if dest.exists() {
            return Err(Error::bad(place, "already exists; export writes a new OCI layout directory"));
        }
        // tempfile makes the directory 0700; a layout is as readable as any output file.
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        fs_err::set_permissions(self.dir.path(), perms).at(|| place.clone())?;
        let tmp = self.dir.keep();
        match fs_err::rename(&tmp, dest) {
            Ok(()) => {
                sync_dir(dest.parent().unwrap_or(Path::new(".")));
                Ok(self.report)
            }
            Err(e) => {
                let _ = fs_err::remove_dir_all(&tmp);
                Err(Error::io(place, e))
            }
        }
    }
}

/// Verifies the bundle from `src` while unpacking it into a new temporary directory inside
/// `parent`.
pub fn stage(src: impl Read, place: &str, trust: Trust<'_>, parent: &Path) -> Result<Staged> {
    let dir =
        tempfile::Builder::new().prefix(".airlock-export-").tempdir_in(parent).at(|| parent.display().to_string())?;
    let _registered = crate::cleanup::register(dir.path());
    let blobs = dir.path().join("blobs").join("sha256");
    fs_err::create_dir_all(&blobs).at(|| blobs.display().to_string())?;
    let root = dir.path().to_owned();
    let mut on_entry = |item: Item<'_>, data: &mut dyn Read| -> Result<()> {
        let (name, write) = match item {
            Item::Blob(b) => (b.digest.blob_path(), true),
            Item::File(f) => (f.path.clone(), f.path == "oci-layout" || f.path == "index.json"),
        };
        if !write {
            return Ok(());
        }
        write_synced(&root.join(&name), &format!("{place}: entry {name}"), data)
    };
    let report = reader::read(src, place, trust, &mut |_| Ok(()), &mut on_entry)?;
    sync_dir(&blobs);
    sync_dir(dir.path());
    Ok(Staged { dir, report, _registered })
}

/// Writes `data` (read from `source`) to `path` through a temporary name in the same directory,
/// and fsyncs it. A read error names the source; a write error names the file.
fn write_synced(path: &Path, source: &str, data: &mut dyn Read) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let place = || path.display().to_string();
    let tmp = tempfile::NamedTempFile::new_in(dir).at(|| dir.display().to_string())?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
    copy(data, &mut w, source, path)?;
    w.into_inner().map_err(|e| Error::io(place(), e.into_error()))?;
    tmp.as_file().sync_all().at(place)?;
    tmp.persist(path).map_err(|e| Error::io(place(), e.error))?;
    Ok(())
}

/// Copies with a large buffer; errors name the side that failed.
pub fn copy(src: &mut dyn Read, dst: &mut dyn std::io::Write, src_place: &str, dst_path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(src_place, e)),
        };
        dst.write_all(&buf[..n]).at(|| dst_path.display().to_string())?;
        total += n as u64;
    }
}
