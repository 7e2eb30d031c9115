//! `airlock create`: sources and flags → [`airlock::ops::create::CreateOptions`].

use std::io::IsTerminal;
use std::path::PathBuf;

use airlock::attachments::Selection;
use airlock::bundle::format::{DEFAULT_SERIES, MAX_CREATED, Position, Series};
use airlock::bundle::sign::{PASSWORD_ENV, SecretKey};
use airlock::error::Error;
use airlock::image::Platform;
use airlock::ops::create::{self, CreateOptions};
use airlock::source::SourceSpec;
use airlock::source::list::{self as image_list, Allow};
use airlock::source::stage::Compression;
use airlock::volume::output::Split;
use anyhow::{Context, Result};
use clap::ValueEnum;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock create -k ops.key -o bundle.tar \\
      docker-archive:all-services.tar \\
      oci:./layout:web-1.4=registry.example/team/web:1.4 \\
      oci-archive:tools.tar
  airlock create -k ops.key -o bundle.tar nginx:1.27 docker://ghcr.io/org/app:2.0
  airlock create -k ops.key -o bundle.tar -f images.txt --platform linux/amd64 --cache ~/.cache/airlock
  airlock create -k ops.key -o delta.tar -f images.txt --base last.index   # only what last.index's bundle lacks";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct CreateArgs {
    /// Secret key to sign with (minisign format; its password from AIRLOCK_KEY_PASSWORD or a prompt)
    #[arg(short, long)]
    key: PathBuf,
    /// The bundle to write
    #[arg(short, long)]
    output: PathBuf,
    /// Read sources from a file, one per line (blank lines and # comments allowed)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    lists: Vec<PathBuf>,
    /// Like --file, but a YAML (Hauler, mindthegap) list may also name local archives, layouts and
    /// docker-daemon: sources; without it such lists name registry images only
    #[arg(long = "file-allow-local", value_name = "FILE")]
    local_lists: Vec<PathBuf>,
    /// Keep only this platform of multi-platform images (os/arch[/variant]; repeatable)
    #[arg(long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,
    /// With --platform: take the requested platforms an image has instead of failing
    #[arg(long)]
    skip_missing_platforms: bool,
    /// How to compress layers that arrive uncompressed (docker save of Docker ≤ 24, or 25+ with the graphdriver store)
    #[arg(long, value_enum, default_value_t = Algo::Gzip)]
    compression: Algo,
    /// Compression level (gzip 1-9, default 5; zstd 1-19, default 3)
    #[arg(long)]
    compression_level: Option<i32>,
    /// Creation time recorded in the bundle (RFC 3339 or seconds since the epoch); SOURCE_DATE_EPOCH also works
    #[arg(long)]
    created: Option<String>,
    /// The series this bundle belongs to; importers refuse an older bundle of the same series
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SERIES)]
    series: String,
    /// Its place in the series (default: the creation time in seconds since the epoch)
    #[arg(long, value_name = "N")]
    sequence: Option<u64>,
    /// Make a delta: leave out the blobs this earlier bundle of the series (or its `airlock index`
    /// file) carries; repeatable. Only its signed index is read, checked against --key's public half
    #[arg(long = "base", value_name = "PREV")]
    bases: Vec<PathBuf>,
    /// Importers refuse the bundle this long after its creation time (e.g. 30d, 12h)
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// Decompress every layer and check it against its image config's diff_id before the bundle
    /// is committed (a full decompression; worth it before a long trip)
    #[arg(long)]
    check_layers: bool,
    /// Split the bundle into volumes of this size, OUT.001, OUT.002, … with a signed part list
    /// OUT.parts (e.g. 4095M, 25G, or fat32 for 4 GiB − 1)
    #[arg(long, value_name = "SIZE")]
    volume_size: Option<String>,
    /// With --volume-size: add N Reed–Solomon parity parts (OUT.p01, …); `airlock repair` rebuilds
    /// any N missing or damaged parts from them
    #[arg(long, value_name = "N", requires = "volume_size")]
    parity: Option<usize>,
    /// Keep registry blobs in this content-addressed cache: an interrupted create resumes, a
    /// repeated one fetches nothing again
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Leave behind the signatures, attestations, SBOMs and referrers attached to registry images
    #[arg(long, conflicts_with = "attachments")]
    no_attachments: bool,
    /// Carry only these attachments: kinds (cosign-signature, cosign-attestation, cosign-sbom,
    /// referrer) or artifact types (application/spdx+json), comma-separated (default: all)
    #[arg(long, value_name = "TYPE,...", value_delimiter = ',')]
    attachments: Vec<String>,
    #[command(flatten)]
    registry: super::registry_args::RegistryArgs,
    /// Images: docker://REF (or a bare REF), docker-daemon:REF, docker-archive:FILE[:TAG], oci:DIR[:REF], oci-archive:FILE[:REF]; append =NAME to name one
    #[arg(value_name = "SOURCE")]
    sources: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Algo {
    Gzip,
    Zstd,
    None,
}

pub fn run(args: CreateArgs) -> Result<()> {
    let opts = resolve(&args)?;
    let key = load_key(&args.key)?;
    let shown = super::progress::observer();
    super::interrupt::set_outcome(format!(
        "{} was not written (a bundle appears whole or not at all)",
        opts.output.display()
    ));
    let created = create::create(&opts, &key, shown.clone())?;
    super::interrupt::set_outcome(format!("{} was written", opts.output.display()));
    for notice in &created.notices {
        tell!("note: {notice}");
    }
    let written = created.written;
    let idx = &written.index;
    say!(
        "{}: {} images, {} blobs, {} (shared blobs stored once saved {})",
        opts.output.display(),
        idx.images.len(),
        idx.blobs.len(),
        super::bytes(written.bundle_bytes),
        super::bytes(written.bytes_saved)
    );
    if !idx.bases.is_empty() {
        let absent = idx.absent_blobs().count();
        say!(
            "delta: {absent} blobs ({}) left to its bases:",
            super::bytes(idx.total_blob_bytes() - idx.carried_blob_bytes())
        );
        super::print_bases(idx);
    }
    say!("signed by key {}, bundle id {}, created {}", key.key_id(), idx.bundle_id, idx.created);
    say!("{}", super::position_line(idx));
    if let Some(list) = &written.parts {
        print_parts(&opts.output, list);
    }
    Ok(())
}

fn print_parts(out: &std::path::Path, list: &airlock::volume::list::PartList) {
    let names = airlock::volume::Names::new(out);
    let n = list.parts.len();
    say!(
        "{n} volumes of at most {} ({} … {}), {} parity parts, signed part list {}",
        super::bytes(list.volume_size),
        names.part(0).display(),
        names.part(n - 1).display(),
        list.parity_parts().len(),
        names.list().display()
    );
}

fn resolve(args: &CreateArgs) -> Result<CreateOptions> {
    let mut sources = Vec::new();
    for list in &args.lists {
        sources.extend(image_list::read(list, Allow::RegistryOnly)?);
    }
    for list in &args.local_lists {
        sources.extend(image_list::read(list, Allow::Local)?);
    }
    for s in &args.sources {
        sources.push(SourceSpec::parse(s)?);
    }
    let platforms = args
        .platforms
        .iter()
        .map(|p| Platform::parse(p).map_err(|e| Error::bad("--platform", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let compression = match (args.compression, args.compression_level) {
        (Algo::Gzip, l) => Compression::Gzip(level(l.unwrap_or(DEFAULT_GZIP_LEVEL), 0, 9)?),
        (Algo::Zstd, l) => Compression::Zstd(level(l.unwrap_or(3), 1, 19)? as i32),
        (Algo::None, _) => Compression::None,
    };
    let created = created(args.created.as_deref())?;
    Ok(CreateOptions {
        sources,
        output: args.output.clone(),
        platforms,
        skip_missing_platforms: args.skip_missing_platforms,
        compression,
        position: position(args, created)?,
        created,
        registry: args.registry.options()?,
        cache: args.cache.clone(),
        check_layers: args.check_layers,
        bases: args.bases.clone(),
        sequence_given: args.sequence.is_some(),
        split: split(args)?,
        attachments: selection(args),
    })
}

/// `--volume-size` and `--parity`.
fn split(args: &CreateArgs) -> Result<Option<Split>> {
    let Some(size) = &args.volume_size else { return Ok(None) };
    let volume_size = airlock::volume::size::parse(size).map_err(|e| Error::bad("--volume-size", e))?;
    Ok(Some(Split { volume_size, parity: args.parity.unwrap_or(0) }))
}

/// `--no-attachments`, `--attachments TYPE,...`, or every attachment.
fn selection(args: &CreateArgs) -> Selection {
    match (args.no_attachments, &args.attachments[..]) {
        (true, _) => Selection::None,
        (false, []) => Selection::All,
        (false, types) => Selection::Only(types.iter().map(|t| t.trim().to_owned()).collect()),
    }
}

/// gzip level 5 measured 11% faster than 6 for 0.13% more bytes on bench/run.sh's images.
const DEFAULT_GZIP_LEVEL: i32 = 5;

fn level(l: i32, lo: i32, hi: i32) -> Result<u32> {
    if l < lo || l > hi {
        return Err(Error::bad("--compression-level", format!("{l} is outside {lo}..={hi}")).into());
    }
    Ok(l as u32)
}

/// `--created`, else `SOURCE_DATE_EPOCH`, else now; never after year 9999.
fn created(flag: Option<&str>) -> Result<u64> {
    let parse = |what: &str, s: &str| -> Result<u64> {
        let secs = match s.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let t = humantime::parse_rfc3339_weak(s.trim()).map_err(|e| {
                    let want = "give RFC 3339 (2026-01-01T00:00:00Z) or seconds since the epoch";
                    Error::bad(what, format!("`{}`: {e}; {want}", s.escape_debug()))
                })?;
                t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            }
        };
        if secs > MAX_CREATED {
            let msg = format!("`{}` is after 9999-12-31T23:59:59Z (at most {MAX_CREATED} seconds)", s.escape_debug());
            return Err(Error::bad(what, msg).into());
        }
        Ok(secs)
    };
    if let Some(s) = flag {
        return parse("--created", s);
    }
    if let Ok(s) = std::env::var("SOURCE_DATE_EPOCH") {
        return parse("SOURCE_DATE_EPOCH", &s);
    }
    Ok(airlock::ops::now())
}

/// `--series`, `--sequence` (default: the creation time, so a nightly job needs no counter and a
/// reproducible build stays reproducible; a delta's comes after its bases') and `--expires`,
/// counted from the creation time.
fn position(args: &CreateArgs, created: u64) -> Result<Position> {
    let series = Series::try_from(args.series.clone()).map_err(|e| Error::bad("--series", e))?;
    let expires = match &args.expires {
        None => None,
        Some(d) => {
            let after = humantime::parse_duration(d)
                .map_err(|e| Error::bad("--expires", format!("`{}`: {e} (e.g. 30d, 12h)", d.escape_debug())))?;
            let at = created.checked_add(after.as_secs()).filter(|&t| t <= MAX_CREATED);
            Some(
                at.ok_or_else(|| Error::bad("--expires", format!("`{d}` after the creation time is after year 9999")))?,
            )
        }
    };
    Ok(Position { series, sequence: args.sequence.unwrap_or(created), expires })
}

fn load_key(path: &std::path::Path) -> Result<SecretKey> {
    let place = path.display().to_string();
    let text = airlock::ops::read_key(path, "a minisign secret key").context("cannot read the secret key")?;
    let from_env = std::cell::Cell::new(false);
    let key = SecretKey::from_box(&place, &text, || {
        if let Ok(pw) = std::env::var(PASSWORD_ENV) {
            from_env.set(true);
            return Ok(pw);
        }
        if !std::io::stdin().is_terminal() {
            return Err(Error::trust(format!(
                "{place}: the key is encrypted; set {PASSWORD_ENV} or run on a terminal"
            )));
        }
        rpassword::prompt_password(format!("Password for {place}: ")).map_err(|e| Error::io("terminal", e))
    });
    // A stale password in the environment is used without a prompt: say where the wrong one came from.
    match key {
        Err(Error::Trust { msg }) if from_env.get() => {
            Err(Error::trust(format!("{msg} (the password came from {PASSWORD_ENV})")).into())
        }
        other => Ok(other?),
    }
}
