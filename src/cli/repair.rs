//! `airlock repair`: rebuild a split bundle's missing or damaged parts from its parity parts.

use std::path::PathBuf;

use airlock::error::Error;
use airlock::volume::{input, list, repair};
use anyhow::Result;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock repair -p ops.pub bundle.tar.001   # rebuilds up to N lost parts (create --parity N)
  airlock repair -p ops.pub /media/usb       # the directory holding the parts";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct RepairArgs {
    /// A part of the split bundle, its part list, or the directory holding them
    #[arg(value_name = "PART")]
    bundle: PathBuf,
    #[command(flatten)]
    trust: super::trust::TrustArgs,
}

pub fn run(args: RepairArgs) -> Result<()> {
    let key = airlock::ops::load_public_key(args.trust.public_key())?;
    let place = args.bundle.display().to_string();
    let names = input::split_names(&args.bundle)?
        .ok_or_else(|| Error::bad(&place, "is not a split bundle (no OUT.parts beside it): nothing to repair"))?;
    let list = list::load(&names, &airlock::ops::trust(&key))?;
    super::interrupt::set_outcome("parts already rebuilt stay (each was checked against the signed part list)");
    let repaired = repair::repair(&names, &list)?;
    if repaired.rebuilt.is_empty() {
        say!("{}: nothing to repair: every part matches the signed part list", names.list().display());
        return Ok(());
    }
    for d in &repaired.damage {
        say!("{}: {}: rebuilt, it matches the signed part list", d.path.display(), d.why);
    }
    let n = list.parts.len() + list.parity_parts().len();
    say!("{}: {} of {n} parts rebuilt from parity", names.list().display(), repaired.rebuilt.len());
    Ok(())
}
