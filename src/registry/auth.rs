//! Registry authentication (distribution spec "Authentication", Docker token auth): where the
//! credentials come from, how a `WWW-Authenticate` challenge is read and answered, and the bearer
//! tokens cached per scope.
//!
//! Requests go out anonymous first. A 401 names the scheme: `Basic` is answered with the
//! credentials themselves; `Bearer realm=…,service=…` with a token fetched from the realm for the
//! scopes the operation needs (`repository:NAME:pull,push`), cached until it expires. Credentials
//! are looked up only when a registry first asks for them, so an anonymous registry never runs a
//! docker credential helper.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use std::io::Read as _;

use base64::Engine as _;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use serde::Deserialize;
use ureq::http::Response;

use super::transport::{Attempt, Failure, registry_message, transport_failure};
use super::url::SchemePolicy;
use crate::error::{Error, Result, shown};
use crate::local_file;

/// A token is reused for at most this much less than the registry says (or half its life when
/// that is shorter), so it does not expire in flight. A fresh token is always used once.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// Tokens are reused for at most a day, whatever `expires_in` says (`u64::MAX` included).
const TOKEN_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The spec's default lifetime when a token response gives none.
const TOKEN_DEFAULT_LIFETIME: u64 = 60;
/// Token responses are small JSON documents; anything larger is not one.
const TOKEN_MAX_BYTES: u64 = 1 << 20;

/// Who we are to the registry. `Debug` never shows the secret.
#[derive(Clone)]
pub(super) enum Credential {
    Basic {
        user: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in docker's config), traded at the token realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { .. } => f.write_str("Basic(<redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { user, password } => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {encoded}"))
            }
            Credential::IdentityToken(_) => None,
        }
    }
}

/// Where credentials come from: given outright, or looked up in docker's config on first need.
pub(super) enum CredentialSource {
    Given(Credential),
    DockerConfig { path: PathBuf, server: String },
}

impl CredentialSource {
    /// Says where credentials came from without saying what they are.
    fn describe(&self) -> String {
        match self {
            CredentialSource::Given(_) => "the given username and password".to_owned(),
            CredentialSource::DockerConfig { path, .. } => format!("docker config {}", path.display()),
        }
    }

    /// The docker config entry for the server: `credHelpers`, `auths` or `credsStore`, in docker's
    /// order. A missing file or entry means anonymous.
    fn lookup(&self) -> Result<Option<Credential>> {
        let (path, server) = match self {
            CredentialSource::Given(c) => return Ok(Some(c.clone())),
            CredentialSource::DockerConfig { path, server } => (path, server),
        };
        match fs_err::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            _ => {}
        }
        let bytes = local_file::read_small(path, local_file::MAX_DOCKER_CONFIG_BYTES, "a docker config file")?;
        let place = || format!("{}: credentials for {server}", path.display());
        match docker_credential::get_credential_from_reader(&bytes[..], server) {
            Ok(DockerCredential::UsernamePassword(user, password)) => Ok(Some(Credential::Basic { user, password })),
            Ok(DockerCredential::IdentityToken(t)) => Ok(Some(Credential::IdentityToken(t))),
            Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
            // The helper's stdout may hold a secret; its stderr says why it failed.
            Err(CredentialRetrievalError::HelperFailure { helper, stderr, .. }) => Err(Error::bad(
                place(),
                format!(
                    "credential helper `{}` failed: {}",
                    shown(&helper),
                    shown(stderr.trim().lines().next().unwrap_or(""))
                ),
            )),
            Err(e) => Err(Error::bad(place(), e.to_string())),
        }
    }
}

/// One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1): a scheme and its parameters.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Challenge {
    /// Lowercase: `basic`, `bearer`.
    pub scheme: String,
    /// Parameter names lowercase, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses `Bearer realm="https://auth.example/token",service="registry.example",scope="…"` and
/// lists of challenges (`Basic realm="x", Bearer realm="y"`). Stops at the first malformed part.
pub(super) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let Some((name, after)) = token(rest) else { break };
        let after = after.trim_start_matches([' ', '\t']);
        match (after.strip_prefix('='), out.last_mut()) {
            (Some(value), Some(current)) => {
                let Some((value, after)) = param_value(value.trim_start_matches([' ', '\t'])) else { break };
                current.params.push((name.to_ascii_lowercase(), value));
                rest = after;
            }
            _ => {
                out.push(Challenge { scheme: name.to_ascii_lowercase(), params: Vec::new() });
                rest = after;
            }
        }
    }
    out
}

/// An RFC 9110 token and what follows it.
fn token(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// A quoted string (with `\` escapes) or a bare value, and what follows it.
fn param_value(s: &str) -> Option<(String, &str)> {
    let Some(quoted) = s.strip_prefix('"') else {
        // Leniently up to the next comma or space: some servers leave URLs unquoted.
        let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
        return (end > 0).then(|| (s[..end].to_owned(), &s[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &quoted[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// The scheme a registry asked for, remembered so later requests answer it up front.
#[derive(Clone)]
enum Scheme {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

struct Token {
    value: String,
    expires: Instant,
    /// Whether it was obtained with the user's credentials.
    credentialed: bool,
}

/// An `Authorization` header value, and whether it carries (or stands for) the user's credentials.
pub(super) struct Authorization {
    pub value: String,
    pub credentialed: bool,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    /// Any JSON value: one that is not a whole number of seconds (negative, fractional, beyond
    /// u64) means the default lifetime rather than an unusable token.
    expires_in: Option<serde_json::Value>,
}

/// Credentials, the registry's scheme and the bearer tokens obtained so far, shared by all threads.
pub(super) struct Auth {
    source: Option<CredentialSource>,
    credential: Mutex<Option<Option<Credential>>>,
    scheme: Mutex<Option<Scheme>>,
    tokens: Mutex<HashMap<String, Token>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Auth {
    pub fn new(source: Option<CredentialSource>) -> Self {
        Auth { source, credential: Mutex::new(None), scheme: Mutex::new(None), tokens: Mutex::new(HashMap::new()) }
    }

    /// The `Authorization` for a request needing `scopes`, if the registry asked for one before.
    pub fn header(&self, scopes: &[String]) -> Option<Authorization> {
        match lock(&self.scheme).clone()? {
            Scheme::Basic => {
                let value = lock(&self.credential).clone().flatten()?.basic_header()?;
                Some(Authorization { value, credentialed: true })
            }
            Scheme::Bearer { .. } => {
                let tokens = lock(&self.tokens);
                let token = tokens.get(&scopes.join(" ")).filter(|t| t.expires > Instant::now())?;
                Some(Authorization { value: format!("Bearer {}", token.value), credentialed: token.credentialed })
            }
        }
    }

    fn credential(&self) -> Result<Option<Credential>> {
        let mut cached = lock(&self.credential);
        if let Some(c) = &*cached {
            return Ok(c.clone());
        }
        let found = match &self.source {
            Some(source) => source.lookup()?,
            None => None,
        };
        *cached = Some(found.clone());
        Ok(found)
    }

    /// Why a registry still says 401 after being answered. It "rejected the credentials" only
    /// when `sent` says they (or a token obtained with them) went with the refused request.
    pub fn denied_reason(&self, sent: bool) -> String {
        let found = lock(&self.credential).clone().flatten();
        match (&self.source, found) {
            (Some(source), Some(_)) if sent => {
                format!("the registry rejected the credentials from {}", source.describe())
            }
            (Some(source), Some(_)) => {
                format!(
                    "the registry requires authentication; the credentials from {} were not sent",
                    source.describe()
                )
            }
            (Some(source @ CredentialSource::DockerConfig { server, .. }), None) => {
                let login = if server.contains("index.docker.io") {
                    "docker login".to_owned()
                } else {
                    format!("docker login {server}")
                };
                format!(
                    "the registry requires authentication and {} has none for it: log in with `{login}`, or give \
                     --username NAME --password-stdin",
                    source.describe()
                )
            }
            _ => "the registry requires authentication and no credentials were given: give --username NAME \
                  --password-stdin, or log in with `docker login`"
                .to_owned(),
        }
    }

    /// Answers a 401 from `url`: remembers the scheme and, for `Bearer`, fetches a token for
    /// `scopes` from the realm, which must pass `policy` like any URL. Returns the header to send
    /// the request again with, however short the token's life.
    pub fn answer(
        &self,
        challenge: Option<&str>,
        scopes: &[String],
        agent: &ureq::Agent,
        place: &str,
        url: &str,
        policy: SchemePolicy,
    ) -> Attempt<Authorization> {
        let challenges = parse_challenges(challenge.unwrap_or(""));
        let by_scheme = |s: &str| challenges.iter().find(|c| c.scheme == s);
        if let Some(bearer) = by_scheme("bearer") {
            let realm =
                bearer.param("realm").ok_or_else(|| Error::registry(place, "bearer challenge without realm"))?;
            let scheme =
                Scheme::Bearer { realm: realm.to_owned(), service: bearer.param("service").map(str::to_owned) };
            *lock(&self.scheme) = Some(scheme.clone());
            policy.check(url, realm).map_err(|e| Failure::Fatal(Error::registry(place, e)))?;
            return self.fetch_token(&scheme, scopes, agent, place);
        }
        if by_scheme("basic").is_some() {
            let Some(value) = self.credential().map_err(Failure::Fatal)?.and_then(|c| c.basic_header()) else {
                return Err(Failure::Fatal(Error::registry(place, self.denied_reason(false))));
            };
            *lock(&self.scheme) = Some(Scheme::Basic);
            return Ok(Authorization { value, credentialed: true });
        }
        let shown: String = challenge.unwrap_or("none").chars().take(100).collect();
        Err(Failure::Fatal(Error::registry(place, format!("unsupported authentication challenge `{shown}`"))))
    }

    /// Docker token auth: `GET realm?service=…&scope=…` with basic credentials if any, or the
    /// OAuth2 refresh-token `POST` for an identity token.
    fn fetch_token(
        &self,
        scheme: &Scheme,
        scopes: &[String],
        agent: &ureq::Agent,
        place: &str,
    ) -> Attempt<Authorization> {
        let Scheme::Bearer { realm, service } = scheme else { unreachable!("only bearer schemes fetch tokens") };
        let realm_place = format!("{place}: token realm {}", super::url::shown(realm));
        let credential = self.credential().map_err(Failure::Fatal)?;
        let service = service.as_deref().unwrap_or("");
        let sent = match &credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![("grant_type", "refresh_token"), ("client_id", "airlock"), ("service", service)];
                form.push(("refresh_token", refresh));
                form.extend(scopes.iter().map(|s| ("scope", s.as_str())));
                agent.post(realm).send_form(form)
            }
            _ => {
                let mut req = agent.get(realm).query("service", service);
                for s in scopes {
                    req = req.query("scope", s);
                }
                if let Some(header) = credential.as_ref().and_then(Credential::basic_header) {
                    req = req.header("Authorization", header);
                }
                req.call()
            }
        };
        let resp = sent.map_err(|e| transport_failure(&realm_place, e))?;
        let token = self.read_token(resp, &realm_place, credential.is_some())?;
        let answer = Authorization { value: format!("Bearer {}", token.value), credentialed: token.credentialed };
        lock(&self.tokens).insert(scopes.join(" "), token);
        Ok(answer)
    }

    fn read_token(&self, resp: Response<ureq::Body>, place: &str, credentialed: bool) -> Attempt<Token> {
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            let msg = format!("token request: HTTP {status}{}", registry_message(resp));
            return Err(Failure::Retry { err: Error::registry(place, msg), after: None });
        }
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(Failure::Fatal(Error::registry(place, self.denied_reason(credentialed))));
        }
        if !status.is_success() {
            let msg = format!("token request: HTTP {status}{}", registry_message(resp));
            return Err(Failure::Fatal(Error::registry(place, msg)));
        }
        let unreadable = |e: Box<dyn std::error::Error + Send + Sync>| {
            Failure::Fatal(Error::registry_caused(place, "unreadable token response", e))
        };
        let mut text = Vec::new();
        let mut body = super::pace::Watchdog::new(resp.into_body().into_reader().take(TOKEN_MAX_BYTES + 1));
        body.read_to_end(&mut text).map_err(|e| unreadable(e.into()))?;
        if text.len() as u64 > TOKEN_MAX_BYTES {
            return Err(unreadable(format!("larger than {TOKEN_MAX_BYTES} bytes").into()));
        }
        let parsed: TokenResponse = serde_json::from_slice(&text).map_err(|e| unreadable(e.into()))?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .ok_or_else(|| Failure::Fatal(Error::registry(place, "token response without a token")))?;
        let expires_in = parsed.expires_in.as_ref().and_then(serde_json::Value::as_u64);
        Ok(Token { value, expires: expiry(Instant::now(), expires_in), credentialed })
    }
}

/// When a token given `expires_in` seconds at `now` stops being reused: capped, saturating, and
/// with a margin of at most half its life.
fn expiry(now: Instant, expires_in: Option<u64>) -> Instant {
    let lifetime = Duration::from_secs(expires_in.unwrap_or(TOKEN_DEFAULT_LIFETIME)).min(TOKEN_MAX_LIFETIME);
    let margin = TOKEN_MARGIN.min(lifetime / 2);
    now.checked_add(lifetime - margin).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn parses_a_docker_hub_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(
            params(&c[0]),
            [
                ("realm", "https://auth.docker.io/token"),
                ("service", "registry.docker.io"),
                ("scope", "repository:library/busybox:pull")
            ]
        );
    }

    #[test]
    fn parses_several_challenges_tokens_and_escapes() {
        let h = r#"Basic realm="airlock \"test\"", BEARER Realm=https://a.example/t , error="insufficient_scope""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].scheme.as_str(), params(&c[0])), ("basic", vec![("realm", "airlock \"test\"")]));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(params(&c[1]), [("realm", "https://a.example/t"), ("error", "insufficient_scope")]);
        assert_eq!(c[1].param("realm"), Some("https://a.example/t"));
    }

    #[test]
    fn a_scope_with_commas_stays_whole_inside_quotes() {
        let c = parse_challenges(r#"Bearer realm="r",scope="repository:a/b:pull,push repository:c:pull""#);
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push repository:c:pull"));
    }

    #[test]
    fn malformed_challenges_yield_what_came_before() {
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Basic").len(), 1);
        let c = parse_challenges(r#"Bearer realm="unterminated"#);
        assert_eq!(c.len(), 1);
        assert!(c[0].params.is_empty());
    }

    #[test]
    fn token_lifetimes_saturate_and_short_ones_stay_usable() {
        let now = Instant::now();
        assert_eq!(expiry(now, Some(u64::MAX)), now + TOKEN_MAX_LIFETIME - TOKEN_MARGIN);
        assert_eq!(expiry(now, Some(300)), now + Duration::from_secs(290));
        assert_eq!(expiry(now, Some(10)), now + Duration::from_secs(5));
        assert_eq!(expiry(now, Some(1)), now + Duration::from_millis(500));
        assert_eq!(expiry(now, Some(0)), now);
        assert_eq!(expiry(now, None), now + Duration::from_secs(50));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Credential::Basic { user: "u".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header().as_deref(), Some("Basic dTpodW50ZXIy"));
    }
}
