//! `airlock push`: verify a bundle, then replay it into a registry under `--to`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use airlock::bundle::indexed::IndexedBundle;
use airlock::error::Error;
use airlock::registry::{Client, ClientOptions};
use airlock::sink::push::{self, Blobs, PushOptions, PushReport, Target};
use airlock::sink::{self, Staged};
use anyhow::Result;

#[derive(clap::Args)]
pub struct PushArgs {
    /// The bundle (or - for stdin)
    bundle: PathBuf,
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
    /// Parallel uploads
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Print a JSON summary on stdout
    #[arg(long)]
    json: bool,
    /// Allow plain HTTP to a registry that is not on a loopback address
    #[arg(long)]
    insecure: bool,
    /// Also trust this CA certificate (PEM)
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// User name for the registry (password from --password-stdin)
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password from stdin
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Retries after connection errors, 5xx and 429
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Where to unpack a bundle read from stdin while it is verified (default: the system's)
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
}

pub fn run(args: PushArgs) -> Result<()> {
    let target = Target::parse(&args.to)?;
    let client = Client::new(&target.registry, &client_options(&args)?)?;
    let key = args.trust.load()?;
    let trust = super::trust::trust(&key);
    let staged: Staged;
    let indexed: IndexedBundle;
    let bundle: &dyn Blobs = if args.bundle.as_os_str() == "-" {
        if args.password_stdin {
            return Err(
                Error::bad("--password-stdin", "stdin carries the bundle; give the password another way").into()
            );
        }
        let tmp = args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
        staged = sink::stage(std::io::stdin().lock(), "<stdin>", trust, &tmp)?;
        super::print_verified("<stdin>", &staged.report);
        &staged
    } else {
        indexed = IndexedBundle::open(&args.bundle, trust)?;
        &indexed
    };
    let opts = PushOptions { target, keep_host: args.keep_registry_host, jobs: args.jobs, dry_run: args.dry_run };
    let bar = progress_bar(bundle.index().total_blob_bytes());
    let log = |event: &str, done: u64| match &bar {
        Some(b) => {
            b.set_position(done);
            b.set_message(event.to_owned());
        }
        None => eprintln!("{event}"),
    };
    let report = push::push(bundle, &client, &opts, &log)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_report(&report, args.json)
}

fn client_options(args: &PushArgs) -> Result<ClientOptions> {
    let mut opts = ClientOptions {
        insecure: args.insecure,
        ca_cert: args.ca_cert.clone(),
        username: args.username.clone(),
        max_retries: args.retries,
        ..ClientOptions::default()
    };
    if args.password_stdin {
        let mut pw = String::new();
        std::io::stdin().read_to_string(&mut pw).map_err(|e| Error::io("stdin", e))?;
        opts.password = Some(pw.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(opts)
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}")
        .expect("valid template");
    bar.set_style(style);
    Some(bar)
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
