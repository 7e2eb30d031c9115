//! `airlock diff`: what changed between two bundles or index files, from their signed indexes.

use std::path::PathBuf;

use airlock::bundle::diff;
use airlock::bundle::format::BundleIndex;
use airlock::bundle::reader;
use anyhow::Result;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock diff last.index tonight.tar     # what tonight's delta against last.index carries
  airlock diff --json bundle-41.tar bundle-42.tar";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct DiffArgs {
    /// The older bundle or index file
    old: PathBuf,
    /// The newer bundle or index file
    new: PathBuf,
    /// Print a machine-readable report
    #[arg(long)]
    json: bool,
}

pub fn run(args: DiffArgs) -> Result<()> {
    let old = read(&args.old)?;
    let new = read(&args.new)?;
    let d = diff::diff(&old, &new);
    if args.json {
        let doc = serde_json::json!({"old": old.bundle_id, "new": new.bundle_id, "verified": false, "diff": d});
        say!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    say!("{} -> {} (not verified: use `airlock verify`)", line(&old), line(&new));
    for i in &d.added {
        say!("  added     {}  {}", i.name, i.digest);
    }
    for i in &d.removed {
        say!("  removed   {}  {}", i.name, i.digest);
    }
    for i in &d.retagged {
        say!("  retagged  {}  {}  (was {})", i.name, i.digest, i.was.join(", "));
    }
    for i in &d.changed {
        say!("  changed   {}  {} -> {}", i.name, i.from, i.to);
    }
    say!(
        "{} new blobs ({}); a delta against the older carries {}",
        d.new_blobs.len(),
        super::bytes(d.new_blob_bytes),
        super::bytes(d.bytes_to_carry)
    );
    Ok(())
}

fn read(path: &std::path::Path) -> Result<BundleIndex> {
    let (src, place) = airlock::ops::open_one(path)?;
    Ok(reader::read_index(src, &place)?)
}

fn line(index: &BundleIndex) -> String {
    format!("bundle {} ({})", index.bundle_id, super::position_line(index))
}
