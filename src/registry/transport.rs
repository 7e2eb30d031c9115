//! HTTP for the registry client: the TLS setup, which scheme a registry is spoken to with, one
//! request with its authentication and redirects, and the retry loop around whole operations.
//!
//! Rules kept here so that no endpoint can forget them:
//! - **Scheme.** https always. Plain http only for loopback registries or with `insecure`, and only
//!   when https gets no answer there but http gets a registry's (`GET /v2/` answering 200 or 401);
//!   the choice is made once per client, by one probe the other requests wait for. Certificates
//!   are always verified.
//! - **Credentials** go only to the registry's own origin (scheme, host, port). Redirects are
//!   followed here, not by ureq, so a blob download sent on to a storage host never carries them.
//! - **Retries.** Connection failures, 5xx and 429 are retried with exponential backoff and jitter
//!   (honouring `Retry-After` up to [`MAX_RETRY_AFTER`]); other 4xx fail at once with the
//!   registry's own `errors[].code/message`.

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBuilder};
use serde::Deserialize;
use ureq::http::{self, Method, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector as _, RustlsConnector};
use ureq::{Agent, SendBody};

use super::ClientOptions;
use super::auth::{Auth, Authorization};
use super::pace::{Pace, Stalled, Watchdog};
use super::socket::PacedTcpConnector;
use super::throttle::Throttle;
use super::url::{SchemePolicy, absolute, is_loopback, same_origin, shown};
use crate::error::{Error, Result};

const MAX_REDIRECTS: u32 = 5;
/// A `Retry-After` longer than this is cut short: the retry budget stays bounded in time.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How much of an error response to read for its message.
const ERROR_BODY_MAX: u64 = 64 * 1024;

/// Why one attempt at an operation failed.
pub(super) enum Failure {
    /// Worth another try after a pause (the registry may have named one in `Retry-After`).
    Retry { err: Error, after: Option<Duration> },
    /// The registry did not answer in time: worth another try while the silence lasts less than
    /// the client's `--timeout` (see [`super::pace`]).
    Silent(Error),
    /// Trying again would fail the same way.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Fatal(err)
    }
}

pub(super) type Attempt<T> = std::result::Result<T, Failure>;

/// Runs `op` until it succeeds, fails for good, `max_retries` retries are spent, or the
/// registry has been silent so long that another attempt could end past `pace.silence`.
pub(super) fn retrying<T>(pace: &Pace, mut op: impl FnMut() -> Attempt<T>) -> Result<T> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(pace.max_retries as usize)
        .with_jitter()
        .build();
    let mut attempts = 1;
    // When the current run of unanswered attempts began, and the longest of them.
    let mut silence: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    loop {
        let started = Instant::now();
        let (err, after) = match op() {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Retry { err, after }) => {
                silence = None;
                (err, after)
            }
            // An attempt that lasted longer than its waits could (an upload that went out, then
            // got no answer) was not silent throughout: retried like any other.
            Err(Failure::Silent(err)) if started.elapsed() > pace.longest_silence() => {
                silence = None;
                (err, None)
            }
            Err(Failure::Silent(err)) => {
                silence.get_or_insert(started);
                longest = longest.max(started.elapsed());
                (err, None)
            }
        };
        let Some(delay) = delays.next() else { return Err(gave_up(err, attempts, silence, pace)) };
        let delay = after.map_or(delay, |a| a.min(MAX_RETRY_AFTER).max(delay));
        if silence.is_some_and(|since| since.elapsed() + delay + longest > pace.silence) {
            return Err(gave_up(err, attempts, silence, pace));
        }
        std::thread::sleep(delay);
        attempts += 1;
    }
}

fn gave_up(err: Error, attempts: u32, silence: Option<Instant>, pace: &Pace) -> Error {
    let why = match silence {
        Some(since) => format!(
            "no progress for {} s over {attempts} attempt(s); --timeout {} allows up to {} s",
            since.elapsed().as_secs(),
            pace.silence.as_secs(),
            pace.silence.as_secs()
        ),
        None if attempts > 1 => format!("gave up after {attempts} attempts"),
        None => return err,
    };
    match err {
        Error::Registry { place, msg, source } => Error::Registry { place, msg: format!("{msg} ({why})"), source },
        other => other,
    }
}

/// A request body. Bytes can be sent again after a 401; a stream only once.
pub(super) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read, u64),
}

/// One request to the registry: `url` is a `/v2/…` path or an absolute URL the registry gave.
pub(super) struct Request<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// Token scopes the request needs (`repository:NAME:pull`).
    pub scopes: &'a [String],
    /// `host/repository@digest` or similar, for error messages.
    pub place: &'a str,
    /// The `PUT` that completes a blob upload: the registry may check and move the whole blob
    /// before it answers, so the answer may take the whole `--timeout`, not a quarter of it.
    pub completes_upload: bool,
}

/// The HTTP side of a client: one agent (connection pool, TLS roots), the registry's origin once
/// known, and its authentication state.
pub(super) struct Transport {
    pub host: String,
    agent: Agent,
    pub pace: Pace,
    policy: SchemePolicy,
    origin: Mutex<Option<String>>,
    /// Held while the scheme is probed; the failed probes so far and whether the last was silent.
    probing: Mutex<()>,
    probe_failures: AtomicU64,
    probe_silent: AtomicBool,
    pub auth: Auth,
    /// How many requests may be in flight; a 429 lowers it for every request (`throttle`).
    throttle: Throttle,
}

impl Transport {
    pub fn new(host: &str, opts: &ClientOptions, auth: Auth) -> Result<Self> {
        let pace = Pace::new(opts.timeout, opts.max_retries);
        let tls = TlsConfig::builder().root_certs(root_certs(opts.ca_cert.as_deref())?).build();
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(opts.user_agent.as_str())
            .timeout_connect(Some(pace.idle))
            .timeout_send_request(Some(pace.idle))
            .timeout_recv_response(Some(pace.idle))
            .timeout_per_read(Some(pace.idle))
            .timeout_per_write(Some(pace.idle))
            // One idle connection kept per worker (ureq keeps 3 per host by default): a pool of
            // workers reuses its connections instead of paying a handshake per request.
            .max_idle_connections(opts.connections.max(10))
            .max_idle_connections_per_host(opts.connections.max(1))
            .tls_config(tls)
            .build();
        let connector =
            ().chain(ConnectProxyConnector::default()).chain(PacedTcpConnector).chain(RustlsConnector::default());
        let agent = Agent::with_parts(config, connector, DefaultResolver::default());
        let policy = SchemePolicy { insecure: opts.insecure };
        let throttle = Throttle::new(opts.connections);
        Ok(Transport {
            host: host.to_owned(),
            agent,
            pace,
            policy,
            origin: Mutex::new(None),
            probing: Mutex::new(()),
            probe_failures: AtomicU64::new(0),
            probe_silent: AtomicBool::new(false),
            auth,
            throttle,
        })
    }

    /// Sends one request: answers a 401 challenge once, follows redirects of `GET`/`HEAD`
    /// (credentials stay with the registry's origin), and turns 429/5xx and connection failures
    /// into [`Failure::Retry`]. Any other status is the caller's to judge. Every URL, the first
    /// and each redirect's, passes the scheme policy before it is contacted.
    pub fn send(&self, req: &Request, mut body: Body) -> Attempt<Response<ureq::Body>> {
        let origin = self.origin(req.place)?;
        let mut url = absolute(&origin, &req.url).map_err(|e| Failure::Fatal(Error::registry(req.place, e)))?;
        self.allowed(&origin, &url, req.place)?;
        let mut fresh: Option<Authorization> = None;
        let mut answered = false;
        let mut redirects = 0;
        loop {
            let ours = same_origin(&origin, &url);
            let auth = if ours { fresh.take().or_else(|| self.auth.header(req.scopes)) } else { None };
            let sent_credentials = auth.as_ref().is_some_and(|a| a.credentialed);
            let resp = {
                let _slot = self.throttle.enter();
                self.exchange(req, &url, auth.map(|a| a.value), &mut body)?
            };
            let status = resp.status().as_u16();
            match status {
                429 => self.throttle.too_many(retry_after(&resp)),
                _ => self.throttle.answered(),
            }
            let location = header(&resp, "location").map(str::to_owned);
            match status {
                401 if ours && !answered => {
                    let challenge = header(&resp, "www-authenticate");
                    let answer = self.auth.answer(challenge, req.scopes, &self.agent, req.place, &url, self.policy)?;
                    fresh = Some(answer);
                    answered = true;
                    if let Body::Stream(..) = body {
                        // The stream is spent; the caller's retry opens it afresh, now with a token.
                        let err = Error::registry(req.place, "authentication needed again mid-upload");
                        return Err(Failure::Retry { err, after: None });
                    }
                }
                401 if ours => {
                    return Err(Failure::Fatal(Error::registry(req.place, self.auth.denied_reason(sent_credentials))));
                }
                401 => {
                    let msg = format!(
                        "HTTP 401 from {}, where the registry redirected: it was sent no credentials (they never leave the registry's origin)",
                        shown(&url)
                    );
                    return Err(Failure::Fatal(Error::registry(req.place, msg)));
                }
                301 | 302 | 303 | 307 | 308 if [Method::GET, Method::HEAD].contains(&req.method) => {
                    redirects += 1;
                    let next = location.filter(|_| redirects <= MAX_REDIRECTS).ok_or_else(|| {
                        Failure::Fatal(Error::registry(req.place, format!("HTTP {status}: too many or bad redirects")))
                    })?;
                    let next = absolute(&url, &next).map_err(|e| Failure::Fatal(Error::registry(req.place, e)))?;
                    self.allowed(&url, &next, req.place)?;
                    url = next;
                }
                429 | 500..=599 => {
                    let after = retry_after(&resp);
                    return Err(Failure::Retry { err: status_error(req.place, &req.method, resp), after });
                }
                _ => return Ok(resp),
            }
        }
    }

    /// The scheme policy, as a failure of the request at `place`.
    fn allowed(&self, from: &str, to: &str, place: &str) -> Attempt<()> {
        self.policy.check(from, to).map_err(|e| Failure::Fatal(Error::registry(place, e)))
    }

    fn exchange(
        &self,
        req: &Request,
        url: &str,
        auth: Option<String>,
        body: &mut Body,
    ) -> Attempt<Response<ureq::Body>> {
        let mut builder = http::Request::builder().method(req.method.clone()).uri(url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some(auth) = auth {
            builder = builder.header("authorization", auth);
        }
        let bad_request = |e: http::Error| Failure::Fatal(Error::registry_caused(req.place, "cannot build request", e));
        let sent = match body {
            Body::Empty if [Method::GET, Method::HEAD].contains(&req.method) => {
                self.run(req, builder.body(()).map_err(bad_request)?)
            }
            Body::Empty => self.run(req, builder.header("content-length", "0").body(&[][..]).map_err(bad_request)?),
            Body::Bytes(bytes) => self.run(req, builder.body(*bytes).map_err(bad_request)?),
            Body::Stream(reader, len) => {
                // How fast the registry takes it is measured at the socket (`super::socket`).
                let mut tracked = Tracked { inner: &mut **reader, failed: None };
                let builder = builder.header("content-length", len.to_string());
                let sent = self.run(req, builder.body(SendBody::from_reader(&mut tracked)).map_err(bad_request)?);
                if let Some(e) = tracked.failed {
                    // Our own source failed (a digest mismatch, a read error): not the network's fault.
                    return Err(Failure::Fatal(Error::io(req.place, e)));
                }
                sent
            }
        };
        sent.map_err(|e| transport_failure(req.place, e))
    }

    fn run<S: ureq::AsSendBody>(
        &self,
        req: &Request,
        request: http::Request<S>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        if !req.completes_upload {
            return self.agent.run(request);
        }
        let wait = Some(self.pace.silence);
        self.agent.run(self.agent.configure_request(request).timeout_recv_response(wait).timeout_per_read(wait).build())
    }

    /// `https://host` or, where allowed and needed, `http://host`; decided on first use.
    fn origin(&self, place: &str) -> Attempt<String> {
        if let Some(o) = self.known_origin() {
            return Ok(o);
        }
        let https = format!("https://{}", self.host);
        if !(self.policy.insecure || is_loopback(&self.host)) {
            *self.origin.lock().unwrap_or_else(PoisonError::into_inner) = Some(https.clone());
            return Ok(https);
        }
        // One probe at a time: a pool's workers starting together wait for its answer instead of
        // each opening connections of its own. Those that waited for a probe that failed fail
        // like it, so a silent registry costs one probe's wait, not one per worker in turn.
        let failures = self.probe_failures.load(Ordering::SeqCst);
        let _probing = self.probing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = self.known_origin() {
            return Ok(o);
        }
        if self.probe_failures.load(Ordering::SeqCst) != failures {
            let err = Error::registry(place, "cannot reach the registry over https or http");
            return Err(if self.probe_silent.load(Ordering::SeqCst) {
                Failure::Silent(err)
            } else {
                Failure::Retry { err, after: None }
            });
        }
        match self.probe(https, place) {
            Ok(chosen) => {
                *self.origin.lock().unwrap_or_else(PoisonError::into_inner) = Some(chosen.clone());
                Ok(chosen)
            }
            Err(failure) => {
                self.probe_silent.store(matches!(failure, Failure::Silent(_)), Ordering::SeqCst);
                self.probe_failures.fetch_add(1, Ordering::SeqCst);
                Err(failure)
            }
        }
    }

    fn known_origin(&self) -> Option<String> {
        self.origin.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn probe(&self, https: String, place: &str) -> Attempt<String> {
        let tls_err = match self.agent.get(format!("{https}/v2/")).call() {
            Ok(_) => return Ok(https),
            Err(e) => e,
        };
        let http = format!("http://{}", self.host);
        match self.agent.get(format!("{http}/v2/")).call() {
            Ok(r) if matches!(r.status().as_u16(), 200 | 401) => Ok(http),
            _ => Err(transport_failure(place, tls_err)),
        }
    }
}

/// Remembers the error of the body we stream, which ureq would report as a network failure.
struct Tracked<'a> {
    inner: &'a mut dyn Read,
    failed: Option<io::Error>,
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                let kind = e.kind();
                self.failed = Some(e);
                Err(io::Error::new(kind, "the upload's source failed"))
            }
            other => other,
        }
    }
}

/// A failed handshake is most often a registry whose certificate a private CA signed.
const TLS_FAILED: &str =
    "TLS connection failed (a registry whose certificate a private CA signed needs --ca-cert FILE)";

pub(super) fn transport_failure(place: &str, err: ureq::Error) -> Failure {
    use ureq::Error as E;
    let (msg, retry) = match &err {
        E::ConnectionFailed | E::HostNotFound => ("cannot reach the registry", true),
        E::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => ("cannot reach the registry", true),
        E::Io(e) if Stalled::is(e) => ("the registry stopped taking what was sent", true),
        E::Timeout(ureq::Timeout::PerWrite | ureq::Timeout::SendBody | ureq::Timeout::SendRequest) => {
            ("the registry stopped taking what was sent", true)
        }
        E::Timeout(_) => ("the registry did not answer in time", true),
        E::Io(e) if e.kind() == io::ErrorKind::TimedOut => ("the registry did not answer in time", true),
        // rustls reports a refused certificate or a broken handshake as invalid data.
        E::Io(e) if e.kind() == io::ErrorKind::InvalidData => (TLS_FAILED, false),
        E::Io(_) | E::Protocol(_) | E::BodyStalled => ("connection to the registry failed", true),
        E::Tls(_) | E::Rustls(_) | E::Pem(_) => (TLS_FAILED, false),
        _ => ("request failed", false),
    };
    let silent = matches!(&err, E::Timeout(_))
        || matches!(&err, E::Io(e) if e.kind() == io::ErrorKind::TimedOut && !Stalled::is(e));
    let err = Error::registry_caused(place, msg, err);
    match (silent, retry) {
        (true, _) => Failure::Silent(err),
        (false, true) => Failure::Retry { err, after: None },
        (false, false) => Failure::Fatal(err),
    }
}

/// An error for an unexpected status: `HTTP 404 Not Found: MANIFEST_UNKNOWN: manifest unknown`.
pub(super) fn status_error(place: &str, method: &Method, resp: Response<ureq::Body>) -> Error {
    status_error_codes(place, method, resp).0
}

/// [`status_error`], with the registry's error codes (`MANIFEST_BLOB_UNKNOWN`) for the caller
/// that acts on them.
pub(super) fn status_error_codes(place: &str, method: &Method, resp: Response<ureq::Body>) -> (Error, Vec<String>) {
    let status = resp.status();
    let (codes, message) = explanation(resp);
    (Error::registry(place, format!("{method} answered HTTP {status}{message}")), codes)
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// The registry's explanation (spec "Error Codes": `errors[].code/message`) as `: CODE: message`,
/// or the start of a non-JSON body, or nothing.
pub(super) fn registry_message(resp: Response<ureq::Body>) -> String {
    explanation(resp).1
}

/// The error codes of a response body and its message for humans (escaped, at most 200
/// characters per part: it comes from the registry).
fn explanation(resp: Response<ureq::Body>) -> (Vec<String>, String) {
    let mut text = Vec::new();
    let _ = Watchdog::new(resp.into_body().into_reader().take(ERROR_BODY_MAX)).read_to_end(&mut text);
    let clean = |s: &str| -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).flat_map(char::escape_debug).collect()
    };
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(&text) {
        let codes: Vec<String> = body.errors.iter().filter_map(|e| e.code.clone()).collect();
        let parts: Vec<String> = body
            .errors
            .iter()
            .take(10)
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{}: {}", clean(c), clean(m)),
                (c, m) => clean(c.as_deref().or(m.as_deref()).unwrap_or_default()),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return (codes, format!(": {}", parts.join("; ")));
        }
    }
    let line = clean(&String::from_utf8_lossy(&text));
    (Vec::new(), if line.is_empty() { String::new() } else { format!(": {line}") })
}

/// A response header as text, if present and printable.
pub(super) fn header<'r>(resp: &'r Response<ureq::Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries and is ignored).
fn retry_after(resp: &Response<ureq::Body>) -> Option<Duration> {
    header(resp, "retry-after")?.trim().parse().ok().map(Duration::from_secs)
}

/// System roots (honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus the operator's extra CA file;
/// Mozilla's roots only when the system has none.
fn root_certs(extra: Option<&Path>) -> Result<RootCerts> {
    let mut certs: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if let Some(path) = extra {
        let place = || path.display().to_string();
        let pem = crate::local_file::read_small(path, crate::local_file::MAX_CA_BYTES, "a CA certificate file")?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(Error::bad(place(), format!("not a PEM certificate file: {e}"))),
            }
        }
        if certs.len() == before {
            return Err(Error::bad(place(), "no PEM certificate in this file"));
        }
    }
    Ok(if certs.is_empty() { RootCerts::WebPki } else { RootCerts::from(certs) })
}
