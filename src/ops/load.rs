//! The `load` operation: verify a bundle whole (a file in place, on every core; a stream while it
//! is unpacked into a temporary directory), then stream the chosen platform of its images into
//! the Docker Engine at `DOCKER_HOST` as one `docker load` archive, each blob read from the bundle
//! (or its staging directory) and verified again as it is read.
//!
//! The engine is asked first whether it answers (`GET /_ping`): one that does not is told at
//! once, as a note, though the load still verifies the bundle before it reports that failure.
//!
//! Unlike `export`, a bundle file is read twice: the Docker Engine is not an atomic sink for every
//! image store (the containerd store ingests content as it arrives, before the archive is whole),
//! so nothing is sent until every blob and the signature verified.

use std::path::PathBuf;
use std::sync::Arc;

use crate::bundle::bases::Given;
use crate::daemon::{self, DockerHost};
use crate::error::Result;
use crate::image::Platform;
use crate::ops::import::{ImportOptions, tmp_dir_or_default};
use crate::ops::{Event, Ui};
use crate::sink::docker_archive::{self, DockerImage};

pub struct LoadOptions {
    /// The bundle: a file, a split bundle's parts, a pipe, or `-` for stdin.
    pub bundle: Vec<PathBuf>,
    pub import: ImportOptions,
    /// For a delta: base bundles holding blobs it leaves out.
    pub bases: Vec<PathBuf>,
    /// The platform to take from multi-platform images (default: this host's).
    pub platform: Option<Platform>,
    /// Where a bundle read from stdin or a pipe is unpacked while it is verified (default: the
    /// system's temporary directory); a bundle file is read in place.
    pub tmp_dir: Option<PathBuf>,
}

/// What the Docker Engine said, and which image of each name it was given.
pub struct Loaded {
    pub engine_lines: Vec<String>,
    pub images: Vec<DockerImage>,
    /// Signatures, SBOMs and referrers the bundle carries that Docker has nowhere to keep.
    pub attachments_left: usize,
}

pub fn load(opts: &LoadOptions, ui: &Arc<dyn Ui>) -> Result<Loaded> {
    let platform = opts.platform.clone().unwrap_or_else(docker_archive::host_platform);
    let host = DockerHost::from_env()?;
    // Damage outranks an engine that is not there, so the bundle is still verified first; but
    // whoever runs the load learns now, not after every blob was read.
    if let Err(e) = daemon::ping(&host) {
        let why = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        ui.event(Event::Note(&format!(
            "{e}{why}; the bundle is verified first, then the load fails unless the engine answers by then"
        )));
    }
    let mut import = opts.import.begin(&**ui)?;
    let source = super::open_source(&opts.bundle, &import.trust())?;
    let tmp = tmp_dir_or_default(opts.tmp_dir.as_deref());
    ui.event(Event::Outcome(
        "images the Docker Engine had finished loading stay; it loads an archive only once it is complete",
    ));
    let (verified, place) = super::verify_whole(&source, import.trust(), &**ui, &tmp)?;
    import.admit(verified.report(), &place)?;
    let given = Given::open(&opts.bases, import.trust(), verified.index())?;
    verified.check_bases(&given, &place, &**ui)?;
    let blobs = verified.blobs(&given);
    let images = docker_archive::plan(&blobs, &platform)?;
    let mtime = super::created_epoch(verified.index());
    let to = (&**ui as &dyn crate::progress::Observer, "to the Docker Engine");
    let engine_lines =
        daemon::load(&host, |w| docker_archive::write(&blobs, &images, w, mtime, to)).map_err(|e| source.explain(e))?;
    import.record()?;
    Ok(Loaded { engine_lines, images, attachments_left: verified.index().attachment_count() })
}
