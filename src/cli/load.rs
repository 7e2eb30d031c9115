//! `airlock load`: verify a bundle, then stream it into the local Docker Engine.

use std::path::PathBuf;

use airlock::bundle::bases::Given;
use airlock::daemon::{self, DockerHost};
use airlock::sink::{self, docker_archive};
use anyhow::Result;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock load -p ops.pub bundle.tar     # into the Docker Engine at DOCKER_HOST
  airlock load -p ops.pub --platform linux/arm64 bundle.tar
  airlock load -p ops.pub delta.tar --base full.tar   # a delta: the blobs it leaves out from its base";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct LoadArgs {
    #[arg(value_name = "BUNDLE", required = true, help = super::BUNDLE_HELP)]
    bundle: Vec<PathBuf>,
    #[command(flatten)]
    trust: super::trust::TrustArgs,
    /// Platform to take from multi-platform images (default: this host's)
    #[arg(long)]
    platform: Option<String>,
    /// Where to unpack the bundle while it is verified (default: the system's temporary directory)
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// For a delta: a base bundle holding blobs it leaves out (repeatable)
    #[arg(long = "base", value_name = "BUNDLE")]
    bases: Vec<PathBuf>,
    #[command(flatten)]
    state: super::state_args::StateArgs,
}

pub fn run(args: LoadArgs) -> Result<()> {
    let platform = super::platform_or_host(args.platform.as_deref())?;
    let host = DockerHost::from_env()?;
    let key = args.trust.load()?;
    let state = args.state.open()?;
    let shown = super::progress::observer();
    let source = super::open_source(&args.bundle, &super::trust::trust(&key))?;
    let (src, place) = super::stream_shown(&source, &*shown)?;
    let tmp = args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    super::interrupt::set_outcome(
        "images the Docker Engine had finished loading stay; it loads an archive only once it is complete",
    );
    let staged = sink::stage(src, &place, super::trust::trust(&key), &tmp).map_err(|e| source.explain(e))?;
    super::print_verified(&place, &staged.report);
    let admitted = args.state.admit(state, &staged.report, &place)?;
    let given = Given::open(&args.bases, super::trust::trust(&key), staged.index())?;
    staged.fill_from(&given, &place)?;
    let images = docker_archive::plan(&staged, &platform)?;
    let mtime = super::created_epoch(staged.index());
    let to = (&*shown as &dyn airlock::progress::Observer, "to the Docker Engine");
    let loaded = daemon::load(&host, |w| docker_archive::write(&staged, &images, w, mtime, to))?;
    admitted.record()?;
    for line in loaded {
        println!("{line}");
    }
    super::export::print_plan(&images);
    Ok(())
}
