//! The OCI distribution registry client, shared by the registry source (download) and `airlock
//! push` (upload). Each public method of [`Client`] is one endpoint of the distribution spec
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>) and names it:
//! `GET /v2/`, `HEAD`/`GET /v2/<name>/blobs/<digest>`, `POST`/`PATCH`/`PUT` blob uploads (in
//! `upload`), cross-repository mounts, `HEAD`/`GET`/`PUT /v2/<name>/manifests/<reference>` (in
//! `manifest`) and `GET /v2/<name>/tags/list` (in `tags`); `download` resumes blob bodies that
//! break. `transport` holds the rules every request obeys (redirects, retries, TLS), `url` which
//! URLs may be contacted and where credentials may go, `pace` the time bounds, `socket` the TCP
//! connections (so that what is sent is held to the same rate as what is received), `auth` the
//! `WWW-Authenticate` dance and the credential lookup.
//!
//! I/O is blocking, like the rest of airlock: a [`Client`] is `Send + Sync` and rayon workers
//! share one. Blob bodies stream both ways; nothing here checks blob content, callers wrap what
//! they send or receive in a [`crate::digest::VerifyingReader`].
//!
//! Crates: `ureq` (3.x, rustls, no gzip so bytes arrive as stored) is a small blocking HTTP client
//! that streams request bodies from any `Read` with a given `Content-Length` and response bodies
//! as a `Read`; `rustls-native-certs` gives it the system's roots, which in an air-gapped network
//! hold the internal CA; `docker_credential` reads docker's `config.json` (`auths`, `credHelpers`,
//! `credsStore` with the `docker-credential-*` helpers) exactly as `docker login` left it;
//! `backon` supplies the exponential backoff with jitter, driven by an explicit loop because its
//! blocking retry cannot honour `Retry-After`.

mod auth;
mod download;
mod manifest;
mod pace;
mod socket;
mod tags;
mod throttle;
mod transport;
mod upload;
mod url;

use std::io::Read;
use std::path::PathBuf;

use ureq::http::{Method, Response};

pub use self::download::MAX_RESUMES;
pub use self::pace::DEFAULT_TIMEOUT;
pub use self::tags::TagPage;
pub use self::upload::Landed;

use self::auth::{Auth, Credential, CredentialSource};
use self::pace::Watchdog;
use self::transport::{Attempt, Body, Failure, Request, Transport, header, retrying, status_error};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Manifest media types a `GET`/`HEAD` asks for: OCI and Docker, single-platform and indexes.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What the referrers API answers with.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The spec lets registries refuse manifests above 4 MiB; we refuse to read larger ones.
pub const MANIFEST_MAX_BYTES: u64 = 4 << 20;

/// How to reach and authenticate to one registry.
#[derive(Clone)]
pub struct ClientOptions {
    /// Allow plain http for a registry that is not on a loopback address (loopback always may).
    pub insecure: bool,
    /// An extra PEM CA file trusted besides the system's roots.
    pub ca_cert: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Docker's `config.json`; default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// Retries after a connection failure, 429 or 5xx (the first try is not counted).
    pub max_retries: u32,
    /// How long a registry may stay silent before an operation gives up; each wait of a request
    /// is bounded by a quarter of it. See [`DEFAULT_TIMEOUT`] and the `pace` module.
    pub timeout: std::time::Duration,
    pub user_agent: String,
    /// Blobs larger than this are uploaded in chunks that can resume after a failure.
    pub chunk_threshold: u64,
    /// Bytes per `PATCH` of a chunked upload (raised to the registry's `OCI-Chunk-Min-Length`).
    pub chunk_size: u64,
    /// Requests in flight at once and idle connections kept (the transfer pool's size, `--jobs`).
    pub connections: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            ca_cert: None,
            username: None,
            password: None,
            docker_config: None,
            max_retries: 5,
            timeout: DEFAULT_TIMEOUT,
            user_agent: concat!("airlock/", env!("CARGO_PKG_VERSION")).to_owned(),
            chunk_threshold: 256 << 20,
            chunk_size: 64 << 20,
            connections: crate::transfer::DEFAULT_JOBS,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("insecure", &self.insecure)
            .field("ca_cert", &self.ca_cert)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("docker_config", &self.docker_config)
            .field("max_retries", &self.max_retries)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A client for one registry (`host[:port]`), holding its connections and bearer tokens.
pub struct Client {
    /// The registry as the user named it, for messages.
    name: String,
    transport: Transport,
    chunk_threshold: u64,
    chunk_size: u64,
    connections: usize,
}

impl Client {
    /// A client for `registry` (`host[:port]`; `docker.io` means Docker Hub). Nothing is sent yet.
    pub fn new(registry: &str, opts: &ClientOptions) -> Result<Client> {
        let host = api_host(registry)?;
        let source = match (&opts.username, &opts.password) {
            (Some(user), Some(password)) => {
                CredentialSource::Given(Credential::Basic { user: user.clone(), password: password.clone() })
            }
            (None, None) => {
                CredentialSource::DockerConfig { path: docker_config_path(opts)?, server: registry.to_owned() }
            }
            _ => return Err(Error::bad(registry, "a username needs a password and a password a username")),
        };
        let transport = Transport::new(host, opts, Auth::new(Some(source)))?;
        Ok(Client {
            name: registry.to_owned(),
            transport,
            chunk_threshold: opts.chunk_threshold,
            chunk_size: opts.chunk_size.max(1),
            connections: opts.connections.max(1),
        })
    }

    /// The registry as named to [`Client::new`].
    pub fn registry(&self) -> &str {
        &self.name
    }

    /// Requests it lets run at once ([`ClientOptions::connections`]): the size of the pool that
    /// drives it.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// `GET /v2/`: the registry answers and accepts our credentials (if it wants any).
    pub fn ping(&self) -> Result<()> {
        let req = self.request(Method::GET, "/v2/".to_owned(), &[], &self.name);
        self.call(&req, &[200]).map(drop)
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: the blob's size, or `None` if the repository lacks it.
    pub fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let place = self.place(repo, &format!("@{digest}"))?;
        match self.head_blob(repo, digest, &scopes(repo, "pull"), &place)? {
            Some(size) => size.map(Some).ok_or_else(|| Error::registry(place, "HEAD answered without Content-Length")),
            None => Ok(None),
        }
    }

    /// Whether the repository holds the blob whole: `HEAD` answers 200 with a `Content-Length`
    /// equal to `size`. Any other length (a partial or different blob) or none means "upload it".
    pub fn has_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<bool> {
        let place = self.place(repo, &format!("@{digest}"))?;
        self.holds(repo, digest, size, &scopes(repo, "pull"), &place)
    }

    /// [`Client::has_blob`] with the caller's token scopes.
    fn holds(&self, repo: &str, digest: &Digest, size: u64, scopes: &[String], place: &str) -> Result<bool> {
        Ok(self.head_blob(repo, digest, scopes, place)? == Some(Some(size)))
    }

    /// `HEAD` a blob: `None` when absent, else its `Content-Length` if it sent a readable one.
    fn head_blob(&self, repo: &str, digest: &Digest, scopes: &[String], place: &str) -> Result<Option<Option<u64>>> {
        let req = self.request(Method::HEAD, format!("/v2/{repo}/blobs/{digest}"), scopes, place);
        let resp = self.call(&req, &[200, 404])?;
        if resp.status() == 404 {
            return Ok(None);
        }
        Ok(Some(header(&resp, "content-length").and_then(|v| v.parse().ok())))
    }

    /// `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>`: links a blob the registry
    /// already holds in `from_repo`. `false` when the registry declined (it then opened an upload
    /// session, which is cancelled); push the blob instead.
    pub fn mount_blob(&self, repo: &str, from_repo: &str, digest: &Digest) -> Result<bool> {
        let place = self.place(repo, &format!("@{digest}"))?;
        check_repo(from_repo, &self.name)?;
        let mut scopes = scopes(repo, "pull,push");
        scopes.extend(self::scopes(from_repo, "pull"));
        let url = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}");
        let req = self.request(Method::POST, url, &scopes, &place);
        let resp = self.call(&req, &[201, 202])?;
        if resp.status() == 201 {
            return Ok(true);
        }
        if let Some(location) = header(&resp, "location") {
            self.cancel_upload(location, &scopes, &place);
        }
        Ok(false)
    }

    /// `GET /v2/<name>/blobs/<digest>`, from byte `offset` on (`Range: bytes=<offset>-`). The
    /// request is retried; a failure while reading the body is the caller's to resume with a new
    /// offset. Redirects to storage are followed without our credentials.
    pub fn get_blob(&self, repo: &str, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send>> {
        let place = self.place(repo, &format!("@{digest}"))?;
        let scopes = scopes(repo, "pull");
        let mut req = self.request(Method::GET, format!("/v2/{repo}/blobs/{digest}"), &scopes, &place);
        if offset > 0 {
            req.headers.push(("range", format!("bytes={offset}-")));
        }
        let resp = self.call(&req, &[200, 206])?;
        let partial = resp.status() == 206;
        if partial && !header(&resp, "content-range").is_some_and(|r| r.starts_with(&format!("bytes {offset}-"))) {
            return Err(Error::registry(
                place,
                format!("answered a range request for bytes {offset}- with another range"),
            ));
        }
        let mut body: Box<dyn Read + Send> = Box::new(Watchdog::new(resp.into_body().into_reader()));
        if offset > 0 && !partial {
            // The server ignored the range: skip what the caller already has.
            let skipped = std::io::copy(&mut body.by_ref().take(offset), &mut std::io::sink());
            if skipped.map_err(|e| Error::io(&place, e))? != offset {
                return Err(Error::registry(place, format!("blob is shorter than offset {offset}")));
            }
        }
        Ok(body)
    }

    /// Sends a request without a body, retrying, and keeps only the `ok` statuses.
    fn call(&self, req: &Request, ok: &[u16]) -> Result<Response<ureq::Body>> {
        retrying(&self.transport.pace, || expect(self.transport.send(req, Body::Empty)?, ok, req))
    }

    fn request<'a>(&self, method: Method, url: String, scopes: &'a [String], place: &'a str) -> Request<'a> {
        Request { method, url, headers: Vec::new(), scopes, place, completes_upload: false }
    }

    /// `host/repo` followed by `suffix` (`@digest`, `:tag`), once `repo` is known to be valid.
    fn place(&self, repo: &str, suffix: &str) -> Result<String> {
        check_repo(repo, &self.name)?;
        Ok(format!("{}/{repo}{suffix}", self.name))
    }
}

/// For [`crate::fuzz`]: the client's hand-written readers of a registry's header values
/// (`WWW-Authenticate`, `Link`, `Location`), each fed `value`.
#[doc(hidden)]
pub fn fuzz_header(value: &str) {
    let _ = auth::parse_challenges(value);
    let _ = tags::names_next(value);
    let base = "https://registry.example/v2/team/app/blobs/uploads/";
    if let Ok(next) = url::absolute(base, value) {
        let _ = url::SchemePolicy { insecure: false }.check(base, &next);
        let _ = url::same_origin(base, &next);
    }
    let _ = url::shown(value);
}

/// Keeps responses with an expected status; anything else fails with the registry's message.
fn expect(resp: Response<ureq::Body>, ok: &[u16], req: &Request) -> Attempt<Response<ureq::Body>> {
    if ok.contains(&resp.status().as_u16()) {
        Ok(resp)
    } else {
        Err(Failure::Fatal(status_error(req.place, &req.method, resp)))
    }
}

/// A `Docker-Content-Digest` naming another digest, or none we can read, is the registry's
/// failure (it did not say it stored what we sent), not the content's. An absent one is fine
/// (the spec makes it optional).
fn check_content_digest(resp: &Response<ureq::Body>, expected: &Digest, place: &str) -> Result<()> {
    let Some(value) = resp.headers().get("docker-content-digest") else { return Ok(()) };
    match value.to_str().ok().map(Digest::parse) {
        Some(Ok(found)) if found == *expected => Ok(()),
        Some(Ok(found)) => Err(Error::registry(place, format!("registry reports digest {found}, expected {expected}"))),
        _ => {
            let shown: String =
                String::from_utf8_lossy(value.as_bytes()).chars().take(100).flat_map(char::escape_debug).collect();
            Err(Error::registry(
                place,
                format!("registry reports an unreadable Docker-Content-Digest `{shown}`, expected {expected}"),
            ))
        }
    }
}

/// Token scopes for one repository (`repository:team/app:pull,push`).
fn scopes(repo: &str, actions: &str) -> Vec<String> {
    vec![format!("repository:{repo}:{actions}")]
}

/// Repository names per the spec: lowercase path components joined by `/`, each alphanumeric runs
/// separated by `.`, `_`, `__` or dashes. Checked before a name goes into a URL.
fn check_repo(repo: &str, registry: &str) -> Result<()> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
            && c.split(|ch: char| ch.is_ascii_alphanumeric())
                .all(|sep| matches!(sep, "" | "." | "_" | "__") || sep.bytes().all(|x| x == b'-'))
    };
    if repo.len() <= 255 && repo.split('/').all(component_ok) {
        return Ok(());
    }
    let shown: String = repo.chars().take(100).collect();
    Err(Error::bad(format!("{registry}/{shown}"), "not a valid repository name"))
}

/// The host to speak to: Docker Hub's API lives at `registry-1.docker.io`.
fn api_host(registry: &str) -> Result<&str> {
    let ok = !registry.is_empty()
        && registry.len() <= 255
        && registry.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(Error::bad(registry, "a registry is `host[:port]` (no scheme, no path)"));
    }
    Ok(match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    })
}

fn docker_config_path(opts: &ClientOptions) -> Result<PathBuf> {
    if let Some(path) = &opts.docker_config {
        return Ok(path.clone());
    }
    let dir = match (std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(home)) => PathBuf::from(home).join(".docker"),
        (None, None) => PathBuf::from(".docker"),
    };
    Ok(dir.join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Client>();
    }

    #[test]
    fn repository_names_follow_the_spec() {
        for ok in ["a", "team/app", "a.b/c_d/e__f/g-h--i", "0/9"] {
            assert!(check_repo(ok, "r").is_ok(), "{ok}");
        }
        for bad in ["", "A", "a//b", "../x", "a/..", "a?b", "a b", "-a", "a_", "a___b", "a_.b", "a/b/"] {
            assert!(check_repo(bad, "r").is_err(), "{bad}");
        }
    }

    #[test]
    fn registries_are_host_and_port_only() {
        assert_eq!(api_host("docker.io").unwrap(), "registry-1.docker.io");
        assert_eq!(api_host("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        for bad in ["", "https://r.example", "r.example/v2", "r.example?x", "user@r.example"] {
            assert!(api_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_debug_hides_the_password() {
        let opts = ClientOptions { password: Some("hunter2".into()), ..ClientOptions::default() };
        assert!(!format!("{opts:?}").contains("hunter2"));
    }
}
