//! `airlock load`: flags → [`airlock::ops::load::LoadOptions`], and what the engine said printed.

use std::path::PathBuf;

use airlock::ops::load::{self, LoadOptions};
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
    /// Where to unpack a bundle read from stdin or a pipe while it is verified (default: the
    /// system's temporary directory); a bundle file is verified and read in place, with no copy
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// For a delta: a base bundle holding blobs it leaves out (repeatable)
    #[arg(long = "base", value_name = "BUNDLE")]
    bases: Vec<PathBuf>,
    #[command(flatten)]
    state: super::state_args::StateArgs,
}

pub fn run(args: LoadArgs) -> Result<()> {
    let opts = LoadOptions {
        bundle: args.bundle,
        import: args.state.import(&args.trust),
        bases: args.bases,
        platform: super::platform_flag(args.platform.as_deref())?,
        tmp_dir: args.tmp_dir,
    };
    let loaded = load::load(&opts, &(super::progress::observer() as _))?;
    for line in loaded.engine_lines {
        say!("{line}");
    }
    super::export::print_plan(&loaded.images);
    super::export::note_attachments_left(loaded.attachments_left, "the Docker Engine");
    Ok(())
}
