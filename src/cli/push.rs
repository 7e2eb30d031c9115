//! `airlock push`: flags → [`airlock::ops::push::PushOptions`], and the report printed.

use std::path::PathBuf;

use airlock::ops::push::{self, PushOptions};
use airlock::sink::push::PushReport;
use anyhow::Result;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock push -p ops.pub bundle.tar --to registry.internal:5000/mirror --dry-run
  airlock push -p ops.pub bundle.tar --to registry.internal:5000/mirror
  airlock push -p ops.pub delta.tar --to registry.internal:5000/mirror   # absent blobs: in the registry
  #   registry.example/team/app:1.4 lands as registry.internal:5000/mirror/team/app:1.4, same digests";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct PushArgs {
    #[arg(value_name = "BUNDLE", required = true, help = super::BUNDLE_HELP)]
    bundle: Vec<PathBuf>,
    #[command(flatten)]
    trust: super::trust::TrustArgs,
    /// Where images land: HOST[:PORT][/PREFIX]; each keeps its path under PREFIX
    #[arg(long, value_name = "HOST[:PORT][/PREFIX]")]
    to: String,
    /// Keep the original registry host as the first path component under PREFIX
    #[arg(long)]
    keep_registry_host: bool,
    /// Say what exists already and what would be uploaded, and upload nothing
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON summary on stdout
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: super::registry_args::RegistryArgs,
    #[command(flatten)]
    state: super::state_args::StateArgs,
    /// For a delta: a base bundle holding blobs it leaves out that the registry may lack
    /// (repeatable); without one, every such blob must be in the registry already
    #[arg(long = "base", value_name = "BUNDLE")]
    bases: Vec<PathBuf>,
    /// Push nothing unless every image carries a cosign signature over its digest by this key
    /// (PEM public key; repeatable: any one of them), checked offline inside the bundle first
    #[arg(long = "require-cosign-key", value_name = "KEY.pub")]
    require_cosign_keys: Vec<PathBuf>,
    /// Where to unpack a bundle read from stdin while it is verified (default: the system's)
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
}

pub fn run(args: PushArgs) -> Result<()> {
    let opts = PushOptions {
        bundle: args.bundle,
        import: args.state.import(&args.trust),
        to: args.to,
        registry: args.registry.options()?,
        keep_registry_host: args.keep_registry_host,
        dry_run: args.dry_run,
        bases: args.bases,
        tmp_dir: args.tmp_dir,
        require_cosign_keys: args.require_cosign_keys,
    };
    let report = push::push(&opts, &(super::progress::observer() as _))?;
    print_report(&report, args.json)
}

fn print_report(report: &PushReport, json: bool) -> Result<()> {
    if json {
        say!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let verb = if report.dry_run { "would upload" } else { "uploaded" };
    for i in &report.images {
        let attached = match i.attachments_pushed {
            0 => String::new(),
            n => format!(", {n} attachments written"),
        };
        say!(
            "{} -> {}@{}: {verb} {} blobs ({}), {} already there, {} mounted, {} manifests written{attached}",
            i.source,
            i.reference,
            i.digest,
            i.blobs_uploaded,
            super::bytes(i.bytes_uploaded),
            i.blobs_skipped,
            i.blobs_mounted,
            i.manifests_pushed
        );
    }
    say!("{}: {verb} {} in all", report.registry, super::bytes(report.bytes_uploaded));
    Ok(())
}
