//! The `export` operation: verify a bundle whole (a file in place, on every core; a stream while
//! it is unpacked beside the output), then write it for hosts without airlock, as an OCI image
//! layout or as a `docker load` archive of one platform, each blob read from the bundle (or its
//! staging directory) and verified again as it is read.

use std::path::PathBuf;
use std::sync::Arc;

use crate::atomic::parent_dir;
use crate::bundle::bases::Given;
use crate::error::Result;
use crate::image::Platform;
use crate::ops::import::ImportOptions;
use crate::ops::{Event, Ui};
use crate::sink::docker_archive::{self, DockerImage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    DockerArchive,
    Oci,
}

pub struct ExportOptions {
    /// The bundle: a file, a split bundle's parts, a pipe, or `-` for stdin.
    pub bundle: Vec<PathBuf>,
    pub import: ImportOptions,
    /// For a delta: base bundles holding blobs it leaves out.
    pub bases: Vec<PathBuf>,
    pub format: ExportFormat,
    /// A tar file (docker-archive) or a new directory (OCI layout).
    pub output: PathBuf,
    /// The platform to take from multi-platform images for a docker-archive (default: this host's).
    pub platform: Option<Platform>,
}

/// What was written.
pub enum Exported {
    /// An OCI layout holding this many images.
    Oci { images: usize },
    /// A docker-archive of these images; `attachments_left`: signatures, SBOMs and referrers the
    /// bundle carries that a docker-archive has nowhere to keep.
    DockerArchive { images: Vec<DockerImage>, attachments_left: usize },
}

pub fn export(opts: &ExportOptions, ui: &Arc<dyn Ui>) -> Result<Exported> {
    let platform = opts.platform.clone().unwrap_or_else(docker_archive::host_platform);
    let mut import = opts.import.begin(&**ui)?;
    let source = super::open_source(&opts.bundle, &import.trust())?;
    let output = opts.output.display();
    ui.event(Event::Outcome(&format!("{output} was not written")));
    let (verified, place) = super::verify_whole(&source, import.trust(), &**ui, parent_dir(&opts.output))?;
    import.admit(verified.report(), &place)?;
    let given = Given::open(&opts.bases, import.trust(), verified.index())?;
    verified.check_bases(&given, &place, &**ui)?;
    let exported = match opts.format {
        ExportFormat::Oci => {
            let images = verified.index().images.len();
            verified.write_layout(&given, &opts.output, &place, &**ui).map_err(|e| source.explain(e))?;
            Exported::Oci { images }
        }
        ExportFormat::DockerArchive => {
            let blobs = verified.blobs(&given);
            let images = docker_archive::plan(&blobs, &platform)?;
            let mtime = super::created_epoch(verified.index());
            docker_archive::write_file(&blobs, &images, &opts.output, mtime, &**ui).map_err(|e| source.explain(e))?;
            Exported::DockerArchive { images, attachments_left: verified.index().attachment_count() }
        }
    };
    ui.event(Event::Outcome(&format!("{output} was written")));
    import.record()?;
    Ok(exported)
}
