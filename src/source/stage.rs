//! Staging of layers that must be rewritten before they go into a bundle: the uncompressed
//! `layer.tar` files of a legacy `docker save`.
//!
//! Each layer is read once: its uncompressed sha256 is checked against the config's `diff_id`
//! while it is compressed into a temporary file beside the output, whose own sha256 and size become
//! the layer's new descriptor. Layers are staged in parallel (one rayon task per layer) and each
//! distinct `diff_id` is staged once.

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::image::{Descriptor, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::source::store::Store;

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
    done: Mutex<HashMap<Digest, (Descriptor, PathBuf)>>,
}

impl Stager {
    /// Stages into a new temporary directory inside `parent` (the output's directory, so the
    /// staged files are on the same disk as the bundle).
    pub fn new(parent: &Path, compression: Compression) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".airlock-stage-")
            .tempdir_in(parent)
            .at(|| parent.display().to_string())?;
        Ok(Stager { dir, compression, done: Mutex::new(HashMap::new()) })
    }

    /// Stages every job, in parallel; returns the new descriptor and file for each, in order.
    pub fn stage_all(&self, jobs: &[LayerJob<'_>]) -> Result<Vec<(Descriptor, PathBuf)>> {
        use rayon::prelude::*;
        // Distinct diff_ids first, so a layer shared by several images is compressed once.
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<&LayerJob<'_>> = jobs
            .iter()
            .filter(|j| !self.done.lock().expect("lock").contains_key(&j.diff_id) && seen.insert(j.diff_id.clone()))
            .collect();
        todo.par_iter().try_for_each(|job| {
            let staged = self.stage_one(job)?;
            self.done.lock().expect("lock").insert(job.diff_id.clone(), staged);
            Ok::<_, Error>(())
        })?;
        let done = self.done.lock().expect("lock");
        Ok(jobs.iter().map(|j| done[&j.diff_id].clone()).collect())
    }

    fn stage_one(&self, job: &LayerJob<'_>) -> Result<(Descriptor, PathBuf)> {
        let place = job.store.place(&job.path);
        let (reader, _) = job.store.open(&job.path)?;
        let mut src = HashingReader::new(reader);
        let target = self.dir.path().join(job.diff_id.hex());
        let file = fs_err::File::create(&target).at(|| target.display().to_string())?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        compress(&mut src, &mut out, self.compression).map_err(|e| match e.kind() {
            io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Error::io(&place, e),
            _ => Error::io(target.display().to_string(), e),
        })?;
        let (found_diff, _) = src.finish();
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

fn compress(src: &mut impl Read, out: &mut impl Write, compression: Compression) -> io::Result<()> {
    match compression {
        Compression::Gzip(level) => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
            io::copy(src, &mut enc)?;
            enc.finish()?.flush()
        }
        Compression::Zstd(level) => {
            let mut enc = zstd::stream::write::Encoder::new(out, level)?;
            // Output is identical for any worker count >= 1, so this does not affect reproducibility.
            enc.multithread(2)?;
            io::copy(src, &mut enc)?;
            enc.finish()?.flush()
        }
        Compression::None => {
            io::copy(src, out)?;
            out.flush()
        }
    }
}
