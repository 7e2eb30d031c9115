//! The distribution API's URL space, parsed once: a request target becomes a [`Route`] with a
//! validated repository name, tag or [`Digest`], and the few query parameters that matter (`n`,
//! `last`, `artifactType`; containerd's `ns` is accepted and ignored). Anything that does not parse
//! is an [`ApiError`] naming the OCI error code to answer with.
//!
//! Repository names may contain `/manifests/` themselves, so the action is found from the right.

use crate::digest::Digest;
use crate::serve::content::ManifestRef;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`: the API version check.
    Base,
    Catalog(Page),
    Tags {
        repo: String,
        page: Page,
    },
    Manifest {
        repo: String,
        reference: ManifestRef,
    },
    Blob {
        repo: String,
        digest: Digest,
    },
    Referrers {
        repo: String,
        digest: Digest,
        artifact_type: Option<String>,
    },
    /// `…/blobs/uploads/…`: only writes go there.
    Upload,
}

/// `n` and `last` of a paginated list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// An OCI error response: status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// For 416: the blob's size, for `Content-Range: bytes */SIZE`.
    pub range_of: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), range_of: None }
    }

    /// The body: `{"errors":[{"code":…,"message":…}]}`.
    pub fn body(&self) -> Vec<u8> {
        let doc = serde_json::json!({"errors": [{"code": self.code, "message": self.message}]});
        doc.to_string().into_bytes()
    }
}

/// The most entries one page lists, whatever `n` asks for.
pub const MAX_PAGE: usize = 10_000;

/// Parses a request target (path and query) into a route.
pub fn parse(target: &str) -> Result<Route, ApiError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = Query::parse(query)?;
    let not_found = || ApiError::new(404, "NOT_FOUND", "not a distribution API path");
    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog(query.page()?));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [repo @ .., "tags", "list"] => Ok(Route::Tags { repo: repo_name(repo)?, page: query.page()? }),
        [repo @ .., "manifests", r] => {
            let reference = manifest_ref(&decode(r)?)?;
            Ok(Route::Manifest { repo: repo_name(repo)?, reference })
        }
        [_, .., "blobs", "uploads"] | [_, .., "blobs", "uploads", _] => Ok(Route::Upload),
        [repo @ .., "blobs", d] => Ok(Route::Blob { repo: repo_name(repo)?, digest: digest(&decode(d)?)? }),
        [repo @ .., "referrers", d] => Ok(Route::Referrers {
            repo: repo_name(repo)?,
            digest: digest(&decode(d)?)?,
            artifact_type: query.artifact_type,
        }),
        _ => Err(not_found()),
    }
}

/// A repository name of the spec's grammar: lowercase components joined by `/`.
fn repo_name(parts: &[&str]) -> Result<String, ApiError> {
    let invalid = || ApiError::new(400, "NAME_INVALID", "invalid repository name");
    if parts.is_empty() || parts.iter().map(|p| p.len() + 1).sum::<usize>() > 256 {
        return Err(invalid());
    }
    let component = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
    };
    if parts.iter().all(|p| component(p)) { Ok(parts.join("/")) } else { Err(invalid()) }
}

fn manifest_ref(text: &str) -> Result<ManifestRef, ApiError> {
    if text.contains(':') {
        return digest(text).map(ManifestRef::Digest);
    }
    let b = text.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok { Ok(ManifestRef::Tag(text.to_owned())) } else { Err(ApiError::new(400, "TAG_INVALID", "invalid tag")) }
}

fn digest(text: &str) -> Result<Digest, ApiError> {
    Digest::parse(text).map_err(|e| {
        // A well-formed digest of another algorithm is content this server cannot hold.
        let unknown = text.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty() && alg.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) && !hex.is_empty()
        });
        if unknown && !text.starts_with("sha256:") {
            ApiError::new(404, "BLOB_UNKNOWN", format!("only sha256 content is served: {e}"))
        } else {
            ApiError::new(400, "DIGEST_INVALID", e.to_string())
        }
    })
}

/// Undoes percent-encoding of a path segment (`sha256%3A…`); only ASCII results are accepted.
fn decode(segment: &str) -> Result<String, ApiError> {
    let bad = || ApiError::new(400, "NAME_INVALID", "malformed percent-encoding");
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
        let text = std::str::from_utf8(&hex).map_err(|_| bad())?;
        out.push(u8::from_str_radix(text, 16).map_err(|_| bad())?);
    }
    if !out.is_ascii() {
        return Err(bad());
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[derive(Default)]
struct Query {
    n: Option<String>,
    last: Option<String>,
    artifact_type: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Result<Query, ApiError> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(&value.replace('+', " "))?;
            match key {
                "n" => q.n = Some(value),
                "last" => q.last = Some(value),
                "artifactType" => q.artifact_type = Some(value),
                _ => {} // `ns` (containerd's upstream name) and anything else: ignored.
            }
        }
        Ok(q)
    }

    fn page(&self) -> Result<Page, ApiError> {
        let n = match &self.n {
            None => None,
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                ApiError::new(400, "PAGINATION_NUMBER_INVALID", format!("n must be a number, not `{}`", shown(n)))
            })?),
        };
        Ok(Page { n: n.map(|n| n.min(MAX_PAGE)), last: self.last.clone() })
    }
}

fn shown(text: &str) -> String {
    crate::error::shown(&text.chars().take(64).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn repository_names_may_hold_the_action_words() {
        let r = parse("/v2/docker.io/a/manifests/b/manifests/latest?ns=docker.io").unwrap();
        let want =
            Route::Manifest { repo: "docker.io/a/manifests/b".into(), reference: ManifestRef::Tag("latest".into()) };
        assert_eq!(r, want);
        let blob = parse(&format!("/v2/team/app/blobs/{}", D.replace(':', "%3A"))).unwrap();
        assert_eq!(blob, Route::Blob { repo: "team/app".into(), digest: Digest::parse(D).unwrap() });
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2/app/blobs/uploads/").unwrap(), Route::Upload);
    }

    #[test]
    fn bad_names_digests_and_numbers_are_the_spec_errors() {
        assert_eq!(parse("/v2/Team/manifests/x").unwrap_err().code, "NAME_INVALID");
        assert_eq!(parse("/v2/team/blobs/sha256:zz").unwrap_err().code, "DIGEST_INVALID");
        assert_eq!(parse("/v2/team/blobs/sha512:abcd").unwrap_err().code, "BLOB_UNKNOWN");
        assert_eq!(parse("/v2/team/manifests/-x").unwrap_err().code, "TAG_INVALID");
        assert_eq!(parse("/v2/team/tags/list?n=x").unwrap_err().code, "PAGINATION_NUMBER_INVALID");
        assert_eq!(parse("/v2/_catalog?n=99999999").unwrap(), Route::Catalog(Page { n: Some(MAX_PAGE), last: None }));
        assert_eq!(parse("/v3/x").unwrap_err().status, 404);
        assert_eq!(parse("/v2/team/blobs/%zz").unwrap_err().code, "NAME_INVALID");
    }
}
