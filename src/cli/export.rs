//! `airlock export`: verify a bundle, then write it as a docker-archive or an OCI layout for hosts
//! without airlock.

use std::path::PathBuf;

use airlock::atomic::parent_dir;
use airlock::bundle::bases::Given;
use airlock::sink::{self, docker_archive};
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
    let platform = super::platform_or_host(args.platform.as_deref())?;
    let key = args.trust.load()?;
    let state = args.state.open()?;
    let shown = super::progress::observer();
    let source = super::open_source(&args.bundle, &super::trust::trust(&key))?;
    let (src, place) = super::stream_shown(&source, &*shown)?;
    super::interrupt::set_outcome(format!("{} was not written", args.output.display()));
    let staged =
        sink::stage(src, &place, super::trust::trust(&key), parent_dir(&args.output)).map_err(|e| source.explain(e))?;
    super::print_verified(&place, &staged.report);
    let admitted = args.state.admit(state, &staged.report, &place)?;
    let given = Given::open(&args.bases, super::trust::trust(&key), staged.index())?;
    staged.fill_from(&given, &place)?;
    match args.format {
        Format::Oci => {
            let n = staged.index().images.len();
            staged.persist_layout(&args.output)?;
            super::interrupt::set_outcome(format!("{} was written", args.output.display()));
            println!("{}: OCI image layout with {n} images", args.output.display());
        }
        Format::DockerArchive => {
            let images = docker_archive::plan(&staged, &platform)?;
            let mtime = super::created_epoch(staged.index());
            docker_archive::write_file(&staged, &images, &args.output, mtime, &*shown)?;
            super::interrupt::set_outcome(format!("{} was written", args.output.display()));
            println!("{}: docker-archive with {} images", args.output.display(), images.len());
            print_plan(&images);
        }
    }
    admitted.record()?;
    Ok(())
}

pub fn print_plan(images: &[docker_archive::DockerImage]) {
    for i in images {
        let chosen = match &i.chosen_from {
            Some(index) => format!(" (platform {} chosen from multi-platform index {})", i.platform, index),
            None => String::new(),
        };
        println!("  {}{chosen}", i.tags.join(", "));
    }
}
