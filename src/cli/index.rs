//! `airlock index`: a bundle's signed index and signature as one small file, for the connected
//! side to keep as the base of the next delta instead of the whole bundle.

use std::path::PathBuf;

use airlock::bundle::delta;
use anyhow::Result;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock index bundle-42.tar -o last.index      # keep this, send bundle-42.tar
  airlock create -k ops.key --base last.index -o delta-43.tar -f images.txt";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct IndexArgs {
    /// The bundle (or - for stdin)
    bundle: PathBuf,
    /// The index file to write (airlock.json and its signature, a ustar file of a few KB)
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: IndexArgs) -> Result<()> {
    airlock::atomic::refuse_input_as_output(&args.output, [args.bundle.as_path()])?;
    let (src, place) = airlock::ops::open_one(&args.bundle)?;
    let index = delta::write_index_file(src, &place, &args.output)?;
    say!(
        "{}: signed index of bundle {} ({}; not verified: `create --base` checks its signature)",
        args.output.display(),
        index.bundle_id,
        super::position_line(&index)
    );
    Ok(())
}
