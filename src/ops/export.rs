//! The `export` operation: write a bundle for hosts without airlock, as an OCI image layout or as
//! a `docker load` archive of one platform, committed only once everything verified. A bundle
//! file (or a split bundle's parts) is read once: each blob the output holds verified as it is
//! written, the rest hashed on every core beforehand ([`OnePass`]). A stream is verified while it
//! is unpacked beside the output, then written from there.

use std::path::PathBuf;
use std::sync::Arc;

use crate::atomic::parent_dir;
use crate::bundle::bases::Given;
use crate::error::Result;
use crate::image::Platform;
use crate::ops::import::{Import, ImportOptions};
use crate::ops::{Event, Ui};
use crate::sink::docker_archive::{self, DockerImage};
use crate::sink::verified::OnePass;
use crate::volume::input::{Source, Volumes};

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
    crate::atomic::refuse_input_as_output(&opts.output, opts.bundle.iter().chain(&opts.bases).map(PathBuf::as_path))?;
    let mut import = opts.import.begin(&**ui)?;
    let source = super::open_source(&opts.bundle, &import.trust())?;
    let output = opts.output.display();
    ui.event(Event::Outcome(&format!("{output} was not written")));
    let exported = match &source {
        Source::Volumes(v) => export_file(opts, Arc::clone(v), &mut import, &platform, &**ui),
        _ => export_stream(opts, &source, &mut import, &platform, &**ui),
    }?;
    ui.event(Event::Outcome(&format!("{output} was written")));
    import.record()?;
    Ok(exported)
}

/// A bundle file, read once; it is reported verified once the output is written whole.
fn export_file(
    opts: &ExportOptions,
    volumes: Arc<Volumes>,
    import: &mut Import<'_>,
    platform: &Platform,
    ui: &dyn Ui,
) -> Result<Exported> {
    let explain = |e| volumes.explain(e);
    let bundle = OnePass::open(Arc::clone(&volumes), import.trust()).map_err(explain)?;
    let place = bundle.place().to_owned();
    import.admit(bundle.report(), &place)?;
    let given = Given::open(&opts.bases, import.trust(), &bundle.report().index)?;
    let (exported, report) = match opts.format {
        ExportFormat::Oci => {
            let images = bundle.report().index.images.len();
            let report = bundle.write_layout(&given, &opts.output, ui).map_err(explain)?;
            (Exported::Oci { images }, report)
        }
        ExportFormat::DockerArchive => {
            let attachments_left = bundle.report().index.attachment_count();
            let mtime = super::created_epoch(&bundle.report().index);
            let written = bundle.write_docker_archive(&given, platform, (&opts.output, mtime), ui);
            let (images, report) = written.map_err(explain)?;
            (Exported::DockerArchive { images, attachments_left }, report)
        }
    };
    ui.event(Event::Verified { place: &place, report: &report });
    Ok(exported)
}

/// A bundle from a stream, verified while it is staged beside the output, then written.
fn export_stream(
    opts: &ExportOptions,
    source: &Source,
    import: &mut Import<'_>,
    platform: &Platform,
    ui: &dyn Ui,
) -> Result<Exported> {
    let (verified, place) = super::verify_whole(source, import.trust(), ui, parent_dir(&opts.output))?;
    import.admit(verified.report(), &place)?;
    let given = Given::open(&opts.bases, import.trust(), verified.index())?;
    verified.check_bases(&given, &place, ui)?;
    match opts.format {
        ExportFormat::Oci => {
            let images = verified.index().images.len();
            verified.write_layout(&given, &opts.output, &place, ui)?;
            Ok(Exported::Oci { images })
        }
        ExportFormat::DockerArchive => {
            let blobs = verified.blobs(&given);
            let images = docker_archive::plan(&blobs, platform)?;
            let mtime = super::created_epoch(verified.index());
            docker_archive::write_file(&blobs, &images, &opts.output, mtime, ui)?;
            Ok(Exported::DockerArchive { images, attachments_left: verified.index().attachment_count() })
        }
    }
}
