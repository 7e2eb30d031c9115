//! The `create` operation: read every source, store each blob once, write and sign the bundle.

use std::path::PathBuf;
use std::sync::Arc;

use crate::attachments::Selection;
use crate::bundle::delta::{self, Delta};
use crate::bundle::format::Position;
use crate::bundle::sign::SecretKey;
use crate::bundle::writer::{self, WriteOptions, Written};
use crate::error::{Error, Result};
use crate::image::Platform;
use crate::plan::{self, cache::Cache};
use crate::progress::Observer;
use crate::registry::ClientOptions;
use crate::source::registry::Registries;
use crate::source::stage::{Compression, Stager};
use crate::source::{ReadOptions, SourceSpec};
use crate::transfer::Pool;
use crate::volume::output::Split;

pub struct CreateOptions {
    pub sources: Vec<SourceSpec>,
    pub output: PathBuf,
    pub platforms: Vec<Platform>,
    pub skip_missing_platforms: bool,
    pub compression: Compression,
    /// Seconds since the epoch.
    pub created: u64,
    /// Series, sequence number and expiry recorded in the signed index.
    pub position: Position,
    /// How to reach registry sources.
    pub registry: ClientOptions,
    /// Content-addressed cache of registry blobs (`--cache`).
    pub cache: Option<PathBuf>,
    /// Decompress every layer and check it against its `diff_id` before the bundle is committed.
    pub check_layers: bool,
    /// `--base`: earlier bundles (or their index files) whose blobs this one need not carry.
    pub bases: Vec<PathBuf>,
    /// Whether `position.sequence` was given (`--sequence`) rather than the creation time.
    pub sequence_given: bool,
    /// Write volumes of a fixed size, with parity parts (`--volume-size`, `--parity`).
    pub split: Option<Split>,
    /// Which signatures, SBOMs and referrers to carry with the images.
    pub attachments: Selection,
}

/// What `create` wrote, and what the user should know about what it read.
pub struct Created {
    pub written: Written,
    /// Platforms left out because a source did not hold them, and the like.
    pub notices: Vec<String>,
}

/// Creates the bundle; `observer` is told about every layer compressed and the bundle's bytes as
/// they are written.
pub fn create(opts: &CreateOptions, key: &SecretKey, observer: Arc<dyn Observer>) -> Result<Created> {
    if opts.sources.is_empty() {
        return Err(Error::bad("create", "no sources given"));
    }
    let dir = crate::atomic::output_dir(&opts.output)?;
    let local = opts.sources.iter().filter_map(|s| match &s.location {
        crate::source::Location::Local { path, .. } => Some(path.as_path()),
        _ => None,
    });
    crate::atomic::refuse_input_as_output(&opts.output, local.chain(opts.bases.iter().map(PathBuf::as_path)))?;
    let bases = delta::read_bases(&opts.bases, &key.public_key(), &opts.position.series)?;
    let mut position = opts.position.clone();
    position.sequence = delta::sequence(opts.sequence_given.then_some(position.sequence), opts.created, &bases)?;
    let stager = Stager::new(dir, opts.compression)?.observed(Arc::clone(&observer));
    // One pool for all registry traffic and blob copies, as large as the client's connections.
    let pool = Pool::new(opts.registry.connections)?;
    let read_opts = ReadOptions {
        platforms: opts.platforms.clone(),
        skip_missing_platforms: opts.skip_missing_platforms,
        registries: Arc::new(Registries::new(opts.registry.clone())),
        attachments: opts.attachments.clone(),
    };
    let mut coll = plan::read_all(&opts.sources, &read_opts, &stager, &pool)?;
    let descriptors = coll.blobs.values().map(|b| &b.descriptor);
    let delta = Delta::plan(&bases, descriptors.map(|d| (&d.digest, d.size, d.media_type.as_str())));
    if let Some(dir) = &opts.cache {
        // What the bases carry is never fetched: a delta reads only the blobs it carries.
        Cache::open(dir)?.observed(Arc::clone(&observer)).fill(&mut coll, &pool, &|d| delta.carries(d))?;
    }
    let write_opts = WriteOptions {
        created: opts.created,
        position,
        delta: &delta,
        key,
        observer: &*observer,
        check_layers: opts.check_layers,
        pool: &pool,
        split: opts.split,
    };
    let written = writer::write(&coll, &opts.output, &write_opts)?;
    Ok(Created { written, notices: coll.notices })
}
