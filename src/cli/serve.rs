//! `airlock serve`: verify bundles, then serve them in place as a read-only registry until SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock::error::Error;
use airlock::serve::body::Outcome;
use airlock::serve::client_config::{self, Client, Server as ClientSide};
use airlock::serve::content::Naming;
use airlock::serve::server::{self, Log, Logged, Settings, Stop};
use airlock::serve::{self as lib, tls};
use anyhow::Result;

/// The record of full verifications, beside the state file.
const RECORD: &str = "serve-verified.json";

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock serve -p ops.pub bundle.tar            # http://127.0.0.1:5000, loopback only
  airlock serve -p ops.pub --listen 0.0.0.0:5443 --self-signed /etc/airlock/tls bundle.tar delta.tar
  airlock serve -p ops.pub --listen 0.0.0.0:5443 --self-signed /etc/airlock/tls --print-config containerd bundle.tar
  #   docker pull 127.0.0.1:5000/registry.example/team/app:1.4  (host kept as first path component)";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    /// The bundles: a full bundle and its deltas, in any order (sequence order decides tags)
    #[arg(required = true)]
    bundles: Vec<PathBuf>,
    #[command(flatten)]
    trust: super::trust::TrustArgs,
    /// Address and port to listen on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Server certificate chain (PEM), with --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key", conflicts_with = "self_signed")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM), with --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Make (or reuse) a CA in DIR and a server certificate for --name and the listen address
    #[arg(long, value_name = "DIR")]
    self_signed: Option<PathBuf>,
    /// Host names clients use for this server: in the --self-signed certificate and in
    /// --print-config (repeatable; default: this host's name)
    #[arg(long = "name", value_name = "HOST")]
    names: Vec<String>,
    /// Serve plain HTTP on a non-loopback address
    #[arg(long)]
    insecure: bool,
    /// Name repositories without their original registry host (library/busybox, not
    /// docker.io/library/busybox), as docker's registry-mirrors expects
    #[arg(long)]
    drop_registry_host: bool,
    /// Print the client-side configuration for this server and exit
    #[arg(long, value_name = "CLIENT", value_parser = ["docker", "containerd", "podman", "k8s"])]
    print_config: Option<String>,
    /// Log each request as one JSON object per line (default: one line of text)
    #[arg(long)]
    json: bool,
    /// Read every blob, even of a file verified before and unchanged since
    #[arg(long)]
    reverify: bool,
    /// Seconds requests in flight may take to finish after SIGTERM
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    drain: u64,
    /// Connections served at once; more wait until one closes
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Connections one client address (an IPv6 /64) may hold at once; more are closed at once
    /// (raise it for clients behind one NAT address)
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_address: u32,
    #[command(flatten)]
    state: super::state_args::StateArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let key = airlock::ops::load_public_key(args.trust.public_key())?;
    let naming = if args.drop_registry_host { Naming::DropHost } else { Naming::KeepHost };
    if let Some(client) = args.print_config.as_deref().and_then(Client::parse) {
        let registries = lib::registries(&args.bundles, airlock::ops::trust(&key))?;
        let https = args.tls_cert.is_some() || args.self_signed.is_some();
        let server = ClientSide { address: client_address(&args), https, private_ca: https, naming, registries };
        super::out::line(
            &mut std::io::stdout().lock(),
            "<stdout>",
            format_args!("{}", client_config::snippet(client, &server)),
            "",
        );
        return Ok(());
    }
    let tls = tls_config(&args)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Bound before the bundles are verified and admitted: a port in use is told at once, and
    // records no bundle as served.
    let listener =
        std::net::TcpListener::bind(args.listen).map_err(|e| Error::io(format!("--listen {}", args.listen), e))?;
    // Beside the state file: both are this host's memory of the bundles it took in.
    let record = (!args.reverify).then(|| args.state.path()).transpose()?.map(|p| p.with_file_name(RECORD));
    let trust = airlock::ops::trust(&key);
    let opts = lib::Options { bundles: args.bundles.clone(), trust, naming, record, now: airlock::ops::now() };
    let opened = lib::open(&opts, &*super::progress::observer())?;
    for c in &opened.reports {
        let (place, report) = (c.bundle.place(), c.bundle.report());
        match &c.verified_before {
            None => tell!("{}", super::verified_line(place, report)),
            Some(at) => tell!(
                "{place}: verified signature by key {}; every blob verified at {at}, file unchanged since \
                 (--reverify reads them again)",
                report.key_id.as_deref().unwrap_or("?")
            ),
        }
    }
    let mut state = args.state.open()?;
    let (notes, recorded) = lib::admit(&mut state, &opened.reports, &args.state.policy())?;
    for n in notes {
        tell!("note: {n}");
    }
    for a in recorded {
        tell!(
            "series `{}` of key {} is now at sequence {} ({})",
            a.series,
            a.key_id,
            a.sequence,
            state.path().display()
        );
    }
    drop(state);
    let addr = listener.local_addr().map_err(|e| Error::io(format!("--listen {}", args.listen), e))?;
    let content = &opened.bundles.content;
    tell!(
        "serving {} images in {} repositories on {scheme}://{addr} (read-only)",
        content.image_count(),
        content.repo_names().count()
    );
    let stop = Stop::default();
    let on_signal = stop.clone();
    super::interrupt::stop_with(move |_| {
        tell!("stopping: no new connections; requests in flight may finish (a second signal ends now)");
        on_signal.stop();
    });
    let api = lib::api::Api { bundles: opened.bundles, chunks: lib::chunks::Chunks::new(lib::chunks::BUDGET) };
    let settings = Settings { tls, drain: Duration::from_secs(args.drain), limits: limits(&args) };
    let log: Arc<dyn Log> = Arc::new(Printer { json: args.json });
    let summary = server::run(listener, api, settings, log, &stop).map_err(|e| Error::io(addr.to_string(), e))?;
    tell!(
        "stopped: {} connections, {} requests, {} sent, {} errors, {} cut (changed on disk), {} abandoned, {} refused \
         (address over its share)",
        summary.connections,
        summary.requests,
        super::bytes(summary.bytes),
        summary.errors,
        summary.cut,
        summary.abandoned,
        summary.refused
    );
    Ok(())
}

/// TLS from files or `--self-signed`; plain HTTP only on loopback or with `--insecure`.
fn tls_config(args: &ServeArgs) -> Result<Option<Arc<tls::ServerConfig>>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(tls::load(cert, key)?));
    }
    if let Some(dir) = &args.self_signed {
        let mut names = args.names.clone();
        if names.is_empty() {
            names.push(hostname());
        }
        names.push(args.listen.ip().to_string());
        let made = tls::self_signed(dir, &names)?;
        let what = if made.new_ca { "made a new CA" } else { "reused the CA" };
        tell!(
            "--self-signed: {what} {}; clients must trust it; server certificate for {}",
            made.ca.display(),
            names.join(", ")
        );
        return Ok(Some(tls::load(&made.cert, &made.key)?));
    }
    if !args.listen.ip().is_loopback() && !args.insecure {
        let msg =
            "is not a loopback address: give --tls-cert/--tls-key or --self-signed DIR, or --insecure for plain HTTP";
        return Err(Error::bad(format!("--listen {}", args.listen), msg).into());
    }
    Ok(None)
}

/// The connection limits asked for, as many as the open files limit allows (raised if it can be).
fn limits(args: &ServeArgs) -> lib::limits::Limits {
    let wanted = args.max_connections as usize;
    let total = lib::limits::fit_open_files(wanted);
    if total < wanted {
        tell!("note: {total} connections at once, not {wanted}: the open files limit (ulimit -n) allows no more");
    }
    lib::limits::Limits { total, per_address: (args.max_connections_per_address as usize).min(total) }
}

/// `host:port` as clients reach the server: the first --name, else the listen address (this
/// host's name for an unspecified one).
fn client_address(args: &ServeArgs) -> String {
    let ip = args.listen.ip();
    let host = match args.names.first() {
        Some(n) => n.clone(),
        None if ip.is_unspecified() => hostname(),
        None if ip.is_ipv6() => format!("[{ip}]"),
        None => ip.to_string(),
    };
    format!("{host}:{}", args.listen.port())
}

fn hostname() -> String {
    fs_err::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Request lines on stdout: text, or JSON with `--json`.
struct Printer {
    json: bool,
}

impl Log for Printer {
    fn request(&self, r: &Logged) {
        let time = humantime::format_rfc3339_millis(r.time);
        let ms = r.elapsed.as_secs_f64() * 1000.0;
        let line = if self.json {
            let (outcome, why) = match &r.outcome {
                Outcome::Complete => ("complete", None),
                Outcome::Gone => ("client-gone", None),
                Outcome::Cut(why) => ("cut", Some(why.as_str())),
            };
            serde_json::json!({"time": time.to_string(), "peer": r.peer.to_string(), "method": r.method,
                "target": r.target, "status": r.status, "bytes": r.bytes, "ms": (ms * 1000.0).round() / 1000.0,
                "outcome": outcome, "error": why})
            .to_string()
        } else {
            let end = match &r.outcome {
                Outcome::Complete => String::new(),
                Outcome::Gone => " (client gone)".into(),
                Outcome::Cut(why) => format!(" CUT: {why}"),
            };
            format!("{time} {} {} {} {} {}B {ms:.1}ms{end}", r.peer, r.method, r.target, r.status, r.bytes)
        };
        // A closed stdout must not stop the server (println! would panic).
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    fn connection_failed(&self, peer: std::net::SocketAddr, why: &str) {
        tell!("{peer}: {why}");
    }
}
