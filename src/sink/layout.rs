//! OCI image layouts written beside their destination: a temporary directory `.airlock-export-*`
//! in the destination's directory (registered with [`crate::cleanup`], so an interruption removes
//! it), each file written under a temporary name and fsynced ([`Layout::put`]), then the whole
//! directory renamed into place ([`Layout::persist`]). [`super::stage`] fills one from a stream
//! while it verifies it; [`write()`] writes one from a bundle file already verified, reading each
//! blob from the file by offset and verifying it again as it is read.

use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::atomic::{parent_dir, sync_dir};
use crate::bundle::indexed::IndexedBundle;
use crate::cleanup::Registered;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::progress::{Moving, Observer, Phase};
use crate::sink::Blobs;
use crate::sink::read_ahead::ReadAhead;

/// The bundle's files that belong in an OCI layout, beside `blobs/`.
pub const FILES: [&str; 2] = ["oci-layout", "index.json"];

/// An OCI layout being written in a temporary directory; dropped before [`Layout::persist`], it
/// is removed.
pub struct Layout {
    dir: tempfile::TempDir,
    /// After `dir`, so it is forgotten only once the directory is gone or kept.
    _registered: Registered,
}

impl Layout {
    /// A new empty layout (with its `blobs/sha256/`) in a temporary directory inside `parent`.
    pub fn create(parent: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".airlock-export-")
            .tempdir_in(parent)
            .at(|| parent.display().to_string())?;
        let _registered = crate::cleanup::register(dir.path());
        let blobs = dir.path().join("blobs").join("sha256");
        fs_err::create_dir_all(&blobs).at(|| blobs.display().to_string())?;
        Ok(Layout { dir, _registered })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.path().join(digest.blob_path())
    }

    /// Writes the file `name` (a blob's path or one of [`FILES`]) from `data`, read from
    /// `source` (named in read errors), through a temporary name, and fsyncs it.
    pub fn put(&self, name: &str, source: &str, data: &mut dyn Read) -> Result<()> {
        write_synced(&self.dir.path().join(name), source, data)
    }

    /// Makes the names written durable.
    pub fn sync(&self) {
        sync_dir(&self.dir.path().join("blobs").join("sha256"));
        sync_dir(self.dir.path());
    }

    /// Moves the layout to `dest`, which must not exist yet.
    pub fn persist(self, dest: &Path) -> Result<()> {
        refuse_existing(dest)?;
        let place = dest.display().to_string();
        // tempfile makes the directory 0700; a layout is as readable as any output file.
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        fs_err::set_permissions(self.dir.path(), perms).at(|| place.clone())?;
        let Layout { dir, _registered } = self;
        let tmp = dir.keep();
        match fs_err::rename(&tmp, dest) {
            Ok(()) => {
                sync_dir(parent_dir(dest));
                Ok(())
            }
            Err(e) => {
                let _ = fs_err::remove_dir_all(&tmp);
                Err(Error::io(place, e))
            }
        }
    }
}

/// Export writes a new layout directory; it never merges into one that exists.
pub fn refuse_existing(dest: &Path) -> Result<()> {
    if dest.exists() {
        return Err(Error::bad(dest.display().to_string(), "already exists; export writes a new OCI layout directory"));
    }
    Ok(())
}

/// Writes the OCI layout of a bundle file that verified to `dest` (a new directory): every blob
/// the index lists, read from `blobs` (the bundle, and for a delta its bases), and the bundle's
/// [`FILES`], each verified again as it is read. `observer` is told the bytes as they are written.
pub fn write(bundle: &IndexedBundle, blobs: &dyn Blobs, dest: &Path, observer: &dyn Observer) -> Result<()> {
    refuse_existing(dest)?;
    let layout = Layout::create(crate::atomic::output_dir(dest)?)?;
    let index = blobs.index();
    let files: Vec<&str> = index.files.iter().map(|f| f.path.as_str()).filter(|p| FILES.contains(p)).collect();
    let file_bytes: u64 = index.files.iter().filter(|f| files.contains(&f.path.as_str())).map(|f| f.size).sum();
    let what = dest.display().to_string();
    let mut moving = Moving::begin((), observer, Phase::Write, &what, index.total_blob_bytes() + file_bytes);
    for b in &index.blobs {
        let data = ReadAhead::new(blobs.open(&b.digest)?);
        layout.put(&b.digest.blob_path(), &blobs.entry(&b.digest), &mut moving.through(data))?;
    }
    for name in files {
        let source = format!("{}: entry {name}", bundle.place());
        layout.put(name, &source, &mut moving.through(bundle.open_file(name)?))?;
    }
    drop(moving);
    layout.sync();
    layout.persist(dest)
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
fn copy(src: &mut dyn Read, dst: &mut dyn std::io::Write, src_place: &str, dst_path: &Path) -> Result<u64> {
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
