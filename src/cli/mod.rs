//! Command-line layer: one file per subcommand, each turning flags into the library's options.

#[macro_use]
pub mod out;

mod completions;
mod create;
mod diff;
mod export;
mod index;
mod inspect;
mod interrupt;
mod keygen;
mod load;
mod progress;
mod push;
mod registry_args;
mod repair;
mod serve;
mod state_args;
mod trust;
mod verify;

use std::process::ExitCode;

use airlock::error::{Class, Error, printable};
use clap::{Parser, Subcommand};

/// Exit codes, one per error class (2 is clap's usage error).
pub const EXIT_BAD_INPUT: u8 = 3;
pub const EXIT_INTEGRITY: u8 = 4;
pub const EXIT_TRUST: u8 = 5;
pub const EXIT_IO: u8 = 6;
pub const EXIT_REGISTRY: u8 = 7;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Carry container images into air-gapped networks: signed, deduplicated bundles"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a minisign key pair (PREFIX.key, PREFIX.pub)
    Keygen(keygen::KeygenArgs),
    /// Pack images into one signed bundle
    Create(create::CreateArgs),
    /// List the images in a bundle (reads only its index; does not verify)
    Inspect(inspect::InspectArgs),
    /// Check a bundle's signature and every blob
    Verify(verify::VerifyArgs),
    /// Copy a bundle's signed index into a small file, the base of the next delta
    Index(index::IndexArgs),
    /// What changed between two bundles or index files (reads only their indexes)
    Diff(diff::DiffArgs),
    /// Verify a bundle, then write it as a docker-archive or an OCI layout
    Export(export::ExportArgs),
    /// Verify a bundle, then load it into the Docker Engine at DOCKER_HOST
    Load(load::LoadArgs),
    /// Verify a bundle, then push its images into a registry
    Push(push::PushArgs),
    /// Serve bundles in place as a read-only registry (verified first)
    Serve(serve::ServeArgs),
    /// Rebuild a split bundle's missing or damaged parts from its parity parts
    Repair(repair::RepairArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    interrupt::install();
    match args.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Create(a) => create::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Index(a) => index::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Export(a) => export::run(a),
        Command::Load(a) => load::run(a),
        Command::Push(a) => push::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Repair(a) => repair::run(a),
        Command::Completions(a) => completions::run(a),
    }
    .map(|()| ExitCode::SUCCESS)
}

pub use interrupt::wait_if_interrupted;

pub fn print_error(err: &anyhow::Error) {
    tell!("error: {}", printable(&err.to_string()));
    for cause in err.chain().skip(1) {
        tell!("  caused by: {}", printable(&cause.to_string()));
    }
}

pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    let class = err.chain().find_map(|e| e.downcast_ref::<Error>()).map(Error::class);
    ExitCode::from(match class {
        Some(Class::BadInput) => EXIT_BAD_INPUT,
        Some(Class::Integrity) => EXIT_INTEGRITY,
        Some(Class::Trust) => EXIT_TRUST,
        Some(Class::Io) => EXIT_IO,
        Some(Class::Registry) => EXIT_REGISTRY,
        None => 1,
    })
}

/// Human-readable byte counts.
pub fn bytes(n: u64) -> String {
    airlock::volume::human(n)
}

/// How every command that reads a bundle describes its BUNDLE argument.
pub const BUNDLE_HELP: &str =
    "The bundle (or - for stdin); a split bundle: its first part, all its parts in order, or its directory";

/// `--platform` for sinks, checked (`None`: the operation takes the host's).
pub fn platform_flag(flag: Option<&str>) -> airlock::error::Result<Option<airlock::image::Platform>> {
    flag.map(|p| airlock::image::Platform::parse(p).map_err(|e| Error::bad("--platform", e))).transpose()
}

/// One line on stderr saying what was verified before anything was written.
pub fn verified_line(place: &str, r: &airlock::bundle::reader::Report) -> String {
    let sig = match &r.key_id {
        Some(k) => format!("signature by key {k}"),
        None => "SIGNATURE NOT CHECKED (--insecure-no-signature)".into(),
    };
    format!("{place}: verified {sig}, {} blobs, {}", r.blobs_checked, bytes(r.bytes_checked))
}

/// The bundle's series, sequence and expiry in one line, saying whether it has expired.
pub fn position_line(index: &airlock::bundle::format::BundleIndex) -> String {
    let Some(p) = index.position() else {
        return "no series or sequence number (schema version 1 bundle)".into();
    };
    let expires = match &index.expires {
        Some(at) if expired(index) => format!(", EXPIRED at {at}"),
        Some(at) => format!(", expires {at}"),
        None => ", no expiry".into(),
    };
    format!("series {}, sequence {}{expires}", p.series, p.sequence)
}

/// One line per base of a delta: its bundle id, sequence and how many of the delta's blobs it holds.
pub fn print_bases(index: &airlock::bundle::format::BundleIndex) {
    for b in &index.bases {
        let held: Vec<_> = index.absent_blobs().filter(|e| e.carried_by.as_ref() == Some(&b.bundle_id)).collect();
        let size: u64 = held.iter().map(|e| e.size).sum();
        say!("  base {} sequence {}: {} blobs ({})", b.bundle_id, b.sequence, held.len(), bytes(size));
    }
}

/// Whether the bundle's signed expiry has passed.
pub fn expired(index: &airlock::bundle::format::BundleIndex) -> bool {
    index.position().and_then(|p| p.expires).is_some_and(|e| airlock::ops::now() > e)
}
