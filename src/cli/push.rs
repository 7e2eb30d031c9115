//! `airlock push`: verify a bundle, then replay it into a registry under `--to`.

use std::path::PathBuf;
use std::sync::Arc;

use airlock::bundle::bases::Given;
use airlock::bundle::indexed::IndexedBundle;
use airlock::error::Error;
use airlock::registry::Client;
use airlock::sink::absent;
use airlock::sink::push::{Blobs, PushOptions, PushReport, Target};
use airlock::sink::{self, Staged};
use airlock::volume::input::Source;
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
    /// Where to unpack a bundle read from stdin while it is verified (default: the system's)
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
}

pub fn run(args: PushArgs) -> Result<()> {
    let target = Target::parse(&args.to)?;
    let client = Client::new(&target.registry, &args.registry.options()?)?;
    let key = args.trust.load()?;
    let trust = super::trust::trust(&key);
    let state = args.state.open()?;
    super::interrupt::set_outcome(format!(
        "blobs and manifests already pushed to {} stay (each was verified; tags are pushed last, so \
         no tag points at anything incomplete); run the push again to send the rest",
        args.to
    ));
    let staged: Staged;
    let indexed: IndexedBundle;
    let source = super::open_source(&args.bundle, &trust)?;
    let split = match &source {
        Source::Volumes(v) => Some(Arc::clone(v)),
        _ => None,
    };
    let (bundle, report): (&dyn Blobs, _) = match source {
        Source::Volumes(volumes) => {
            indexed = IndexedBundle::open(Arc::clone(&volumes), trust).map_err(|e| volumes.explain(e))?;
            (&indexed, indexed.report())
        }
        Source::Stdin if args.registry.password_stdin => {
            let msg = "stdin carries the bundle; give the password another way";
            return Err(Error::bad("--password-stdin", msg).into());
        }
        stream => {
            let tmp = args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
            let (src, place) = stream.reader()?;
            staged = sink::stage(src, &place, trust, &tmp)?;
            super::print_verified(&place, &staged.report);
            (&staged, &staged.report)
        }
    };
    let admitted = args.state.admit(state, report, &args.bundle[0].display().to_string())?;
    let given = Given::open(&args.bases, trust, bundle.index())?;
    let shown = super::progress::observer();
    let observer = shown.clone();
    let keep_host = args.keep_registry_host;
    let opts = PushOptions { target, keep_host, dry_run: args.dry_run, observer, held: Default::default() };
    let report =
        absent::push(bundle, &given, &client, opts, &|event, _| shown.println(event)).map_err(|e| match &split {
            Some(v) => v.explain(e),
            None => e,
        })?;
    if !args.dry_run {
        admitted.record()?;
    }
    print_report(&report, args.json)
}

fn print_report(report: &PushReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let verb = if report.dry_run { "would upload" } else { "uploaded" };
    for i in &report.images {
        println!(
            "{} -> {}@{}: {verb} {} blobs ({}), {} already there, {} mounted, {} manifests written",
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
    println!("{}: {verb} {} in all", report.registry, super::bytes(report.bytes_uploaded));
    Ok(())
}
