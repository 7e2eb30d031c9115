//! `airlock export`: flags → [`airlock::ops::export::ExportOptions`], and what was written printed.

use std::path::PathBuf;

use airlock::ops::export::{self, ExportFormat, ExportOptions, Exported};
use airlock::sink::docker_archive::DockerImage;
use anyhow::Result;
use clap::ValueEnum;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock export -p ops.pub bundle.tar --format docker-archive -o images.tar   # for docker/podman load
  airlock export -p ops.pub bundle.tar --format oci -o ./layout                # an OCI layout (skopeo, crane)
  airlock export -p ops.pub delta.tar --base full.tar --format docker-archive -o images.tar";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ExportArgs {
    #[arg(value_name = "BUNDLE", required = true, help = super::BUNDLE_HELP)]
    bundle: Vec<PathBuf>,
    #[command(flatten)]
    trust: super::trust::TrustArgs,
    /// Output format
    #[arg(long, value_enum)]
    format: Format,
    /// Output: a tar file (docker-archive) or a new directory (oci)
    #[arg(short, long)]
    output: PathBuf,
    /// Platform to take from multi-platform images for docker-archive (default: this host's)
    #[arg(long)]
    platform: Option<String>,
    /// For a delta: a base bundle holding blobs it leaves out (repeatable)
    #[arg(long = "base", value_name = "BUNDLE")]
    bases: Vec<PathBuf>,
    #[command(flatten)]
    state: super::state_args::StateArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    DockerArchive,
    Oci,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let format = match args.format {
        Format::DockerArchive => ExportFormat::DockerArchive,
        Format::Oci => ExportFormat::Oci,
    };
    let opts = ExportOptions {
        bundle: args.bundle,
        import: args.state.import(&args.trust),
        bases: args.bases,
        format,
        output: args.output,
        platform: super::platform_flag(args.platform.as_deref())?,
    };
    let output = opts.output.display();
    match export::export(&opts, &(super::progress::observer() as _))? {
        Exported::Oci { images } => say!("{output}: OCI image layout with {images} images"),
        Exported::DockerArchive { images, attachments_left } => {
            say!("{output}: docker-archive with {} images", images.len());
            print_plan(&images);
            note_attachments_left(attachments_left, "a docker-archive");
        }
    }
    Ok(())
}

/// One note when the bundle carries signatures, SBOMs or referrers that `where_to` has nowhere
/// to keep (Docker's image store, a docker-archive).
pub fn note_attachments_left(n: usize, where_to: &str) {
    if n > 0 {
        tell!(
            "note: {n} attachments (signatures, attestations, SBOMs, referrers) left out: {where_to} has nowhere \
             to keep them; `airlock push` and `export --format oci` carry them"
        );
    }
}

pub fn print_plan(images: &[DockerImage]) {
    for i in images {
        let chosen = match &i.chosen_from {
            Some(index) => format!(" (platform {} chosen from multi-platform index {})", i.platform, index),
            None => String::new(),
        };
        say!("  {}{chosen}", i.tags.join(", "));
    }
}
