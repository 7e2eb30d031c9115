//! Staging of layers that must be rewritten before they go into a bundle: the uncompressed
//! `layer.tar` files of a legacy `docker save` and the uncompressed layer blobs of a Docker 25+
//! one.
//!
//! Each layer is read once: its uncompressed sha256 is checked against the config's `diff_id`
//! while it is compressed into a temporary file beside the output, whose own sha256 and size become
//! the layer's new descriptor. Layers are staged in parallel (one rayon task per layer) and each
//! distinct `diff_id` is staged once. A layer that another source already carries compressed is
//! not compressed again: that blob is reused once it is shown to decompress to the same `diff_id`.

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::{Digest, HashingReader, HashingWriter, VerifyingReader, Watched};
use crate::error::{Error, IoContext, Result};
use crate::image::{Descriptor, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::progress::{self, Moving, Observer, Phase};
use crate::source::store::Store;
use crate::source::{Blob, Origin};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip(u32),
    Zstd(i32),
    None,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip(_) => OCI_LAYER_GZIP,
            Compression::Zstd(_) => OCI_LAYER_ZSTD,
            Compression::None => OCI_LAYER,
        }
    }
}

/// A layer to stage: a file in a store whose uncompressed content must hash to `diff_id`.
pub struct LayerJob<'a> {
    pub store: &'a dyn Store,
    pub path: String,
    pub diff_id: Digest,
}

/// A temporary directory of staged layers, removed when dropped.
pub struct Stager {
    dir: tempfile::TempDir,
    compression: Compression,
    done: Mutex<HashMap<Digest, (Descriptor, Origin)>>,
    /// Told how far each layer's compression has come.
    observer: Arc<dyn Observer>,
    /// After `dir`, so it is forgotten only once the directory is gone.
    _registered: crate::cleanup::Registered,
}

impl Stager {
    /// Stages into a new temporary directory inside `parent` (the output's directory, so the
    /// staged files are on the same disk as the bundle).
    pub fn new(parent: &Path, compression: Compression) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".airlock-stage-")
            .tempdir_in(parent)
            .at(|| parent.display().to_string())?;
        let _registered = crate::cleanup::register(dir.path());
        Ok(Stager { dir, compression, done: Mutex::new(HashMap::new()), observer: progress::silent(), _registered })
    }

    /// Reports the bytes of every layer compressed to `observer`.
    pub fn observed(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Whether layers are compressed when staged (not with `--compression none`).
    pub fn compresses(&self) -> bool {
        self.compression != Compression::None
    }

    /// A new temporary file in the staging directory (removed with it).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new_in(self.dir.path()).at(|| self.dir.path().display().to_string())
    }

    /// Stages every job, in parallel; returns the new descriptor and origin for each, in order.
    /// A layer whose `diff_id` is in `known` (already held compressed from another source) is
    /// reused once it is checked to decompress to that `diff_id`; otherwise it is compressed.
    pub fn stage_all(&self, jobs: &[LayerJob<'_>], known: &HashMap<Digest, Blob>) -> Result<Vec<(Descriptor, Origin)>> {
        use rayon::prelude::*;
        // Distinct diff_ids first, so a layer shared by several images is handled once.
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<&LayerJob<'_>> = jobs
            .iter()
            .filter(|j| !self.done.lock().expect("lock").contains_key(&j.diff_id) && seen.insert(j.diff_id.clone()))
            .collect();
        todo.par_iter().try_for_each(|job| {
            let staged = match known.get(&job.diff_id) {
                Some(blob) if self.reusable(job, blob)? => (blob.descriptor.clone(), blob.origin.clone()),
                _ => {
                    let (d, path) = self.stage_one(job)?;
                    (d, Origin::Staged(path))
                }
            };
            self.done.lock().expect("lock").insert(job.diff_id.clone(), staged);
            Ok::<_, Error>(())
        })?;
        let done = self.done.lock().expect("lock");
        Ok(jobs.iter().map(|j| done[&j.diff_id].clone()).collect())
    }

    /// Checks the legacy layer against its `diff_id` and that `blob` decompresses to the same
    /// bytes (bounded by the layer's size, so a bomb cannot run long).
    fn reusable(&self, job: &LayerJob<'_>, blob: &Blob) -> Result<bool> {
        let place = job.store.place(&job.path);
        let (reader, _) = job.store.open(&job.path)?;
        let mut src = HashingReader::new(reader);
        io::copy(&mut src, &mut io::sink()).map_err(|e| Error::io(&place, e))?;
        let (found, _) = src.finish();
        if found != job.diff_id {
            return Err(Error::integrity(
                place,
                format!("layer content has sha256 {found}, but the image config's diff_id is {}", job.diff_id),
            ));
        }
        let Origin::Store { store, path } = &blob.origin else { return Ok(false) };
        let (raw, _) = store.open(path)?;
        let verified = VerifyingReader::new(raw, blob.descriptor.digest.clone(), blob.descriptor.size);
        // Any failure (not that diff_id, a bad stream, a bomb) means: compress the legacy layer instead.
        Ok(crate::layers::check_layer(verified, &blob.descriptor, &job.diff_id, &store.place(path)).is_ok())
    }

    fn stage_one(&self, job: &LayerJob<'_>) -> Result<(Descriptor, PathBuf)> {
        let place = job.store.place(&job.path);
        let (reader, size) = job.store.open(&job.path)?;
        let reader = Moving::begin(reader, &*self.observer, Phase::Compress, &place, size);
        let mut src = Watched { inner: HashingReader::new(reader), failed: false };
        let target = self.dir.path().join(job.diff_id.hex());
        let file = fs_err::File::create(&target).at(|| target.display().to_string())?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        compress(&mut src, &mut out, self.compression).map_err(|e| match src.failed {
            true => Error::io(&place, e),
            false => Error::io(target.display().to_string(), e),
        })?;
        let (found_diff, _) = src.inner.finish();
        if found_diff != job.diff_id {
            return Err(Error::integrity(
                place,
                format!("layer content has sha256 {found_diff}, but the image config's diff_id is {}", job.diff_id),
            ));
        }
        let (buf, digest, size) = out.finish();
        buf.into_inner().map_err(|e| Error::io(target.display().to_string(), e.into_error()))?;
        Ok((Descriptor::new(self.compression.media_type(), digest, size), target))
    }
}

/// Bytes per zstd worker job.
const ZSTD_JOB_BYTES: u32 = 2 << 20;

/// Compression threads per gzip stream (layers are also compressed side by side).
const GZIP_THREADS: usize = 2;

fn compress(src: &mut impl Read, out: &mut (impl Write + Send), compression: Compression) -> io::Result<()> {
    match compression {
        Compression::Gzip(level) => {
            // One big layer uses every core; the output does not depend on the thread count.
            super::pgzip::compress(src, out, level, GZIP_THREADS)?;
            out.flush()
        }
        Compression::Zstd(level) => {
            let mut enc = zstd::stream::write::Encoder::new(out, level)?;
            // Output is identical for any worker count >= 1, so this does not affect reproducibility.
            // Small jobs keep memory flat (the default job is 4 windows: ~70 MiB in flight).
            enc.multithread(2)?;
            enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_BYTES))?;
            io::copy(src, &mut enc)?;
            enc.finish()?.flush()
        }
        Compression::None => {
            io::copy(src, out)?;
            out.flush()
        }
    }
}
