//! The read-only distribution API: one request in, one response out, over the served
//! [`Content`]. Manifests go out with their exact stored bytes, media type, digest and length; blobs
//! with `Range` support; lists paginate with `n`/`last` and a `Link` to the next page. Every write
//! method answers 405 with an OCI error body: nothing a client sends changes what is served.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderValue, LINK, RANGE};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::attachments::referrers_index;
use crate::digest::Digest;
use crate::error::shown;
use crate::image;
use crate::serve::body::{BlobSource, Body};
use crate::serve::chunks::Chunks;
use crate::serve::content::{Blob, Content, Manifest, page};
use crate::serve::routes::{self, ApiError, Page, Route};

/// One open file per served bundle, in the order [`Content`] numbers them.
pub struct Bundles {
    pub content: Content,
    pub files: Vec<BundleFile>,
}

pub struct BundleFile {
    /// The bundle's file, or its parts.
    pub file: Arc<crate::volume::input::Volumes>,
    pub place: String,
}

/// What every request needs.
pub struct Api {
    pub bundles: Bundles,
    pub chunks: Arc<Chunks>,
}

const JSON: &str = "application/json";

impl Api {
    /// Answers one request.
    pub fn respond(&self, method: &Method, target: &str, headers: &HeaderMap) -> Response<Body> {
        let head = *method == Method::HEAD;
        if !head && *method != Method::GET {
            let e = ApiError::new(405, "UNSUPPORTED", "airlock serve is read-only: the bundles are the only source");
            let mut r = error(&e);
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let result = routes::parse(target).and_then(|route| self.route(route, head, headers));
        match result {
            Ok(reply) => reply.into_response(head, &self.chunks),
            Err(e) => error(&e),
        }
    }

    fn route(&self, route: Route, head: bool, headers: &HeaderMap) -> Result<Reply, ApiError> {
        let content = &self.bundles.content;
        match route {
            Route::Base => Ok(Reply::json(b"{}".to_vec())),
            Route::Catalog(p) => {
                let (names, next) = paged(content.repo_names(), &p, "/v2/_catalog");
                Ok(Reply::json(serde_json::json!({"repositories": names}).to_string().into_bytes()).link(next))
            }
            Route::Tags { repo, page: p } => {
                let r = content.repo(&repo).ok_or_else(|| name_unknown(&repo))?;
                let (tags, next) = paged(r.tags.keys().map(String::as_str), &p, &format!("/v2/{repo}/tags/list"));
                Ok(Reply::json(serde_json::json!({"name": repo, "tags": tags}).to_string().into_bytes()).link(next))
            }
            Route::Manifest { repo, reference } => {
                content.repo(&repo).ok_or_else(|| name_unknown(&repo))?;
                let manifest = content
                    .manifest(&repo, &reference)
                    .ok_or_else(|| ApiError::new(404, "MANIFEST_UNKNOWN", format!("{repo}: no such manifest")))?;
                Ok(match manifest {
                    Manifest::Stored(digest, blob) => {
                        Reply::Blob { src: self.source(digest, blob), media_type: blob.media_type.clone(), range: None }
                    }
                    Manifest::Fallback(digest, bytes) => Reply::index(bytes.to_vec(), Some(digest.clone()), false),
                })
            }
            Route::Blob { repo, digest } => {
                content.repo(&repo).ok_or_else(|| name_unknown(&repo))?;
                let blob = content.blob(&repo, &digest).ok_or_else(|| {
                    ApiError::new(404, "BLOB_UNKNOWN", format!("{repo}: no blob {digest} in the served bundles"))
                })?;
                let range = if head { None } else { headers.get(RANGE).and_then(|v| v.to_str().ok()) };
                let range = range.map(|r| parse_range(r, blob.at.size)).transpose()?.flatten();
                let media_type = "application/octet-stream".to_owned();
                Ok(Reply::Blob { src: self.source(&digest, blob), media_type, range })
            }
            Route::Referrers { repo, digest, artifact_type } => {
                let r = content.repo(&repo).ok_or_else(|| name_unknown(&repo))?;
                let listed = r.referrers.get(&digest).into_iter().flatten();
                let wanted =
                    |d: &&serde_json::Value| artifact_type.as_ref().is_none_or(|t| d["artifactType"] == t.as_str());
                let manifests: Vec<&serde_json::Value> = listed.filter(wanted).collect();
                let doc = referrers_index(&manifests).to_string().into_bytes();
                Ok(Reply::index(doc, None, artifact_type.is_some()))
            }
            Route::Upload => Err(ApiError::new(404, "BLOB_UPLOAD_UNKNOWN", "airlock serve takes no uploads")),
        }
    }

    fn source(&self, digest: &Digest, blob: &Blob) -> BlobSource {
        let f = &self.bundles.files[blob.at.bundle];
        BlobSource {
            file: Arc::clone(&f.file),
            place: format!("{}: entry {}", f.place, digest.blob_path()),
            offset: blob.at.offset,
            size: blob.at.size,
            digest: digest.clone(),
        }
    }
}

fn name_unknown(repo: &str) -> ApiError {
    ApiError::new(404, "NAME_UNKNOWN", format!("no repository {repo} in the served bundles"))
}

/// One page of names, and the `Link` to the next one if more follow.
fn paged<'a>(names: impl Iterator<Item = &'a str>, p: &Page, path: &str) -> (Vec<&'a str>, Option<String>) {
    let (items, more) = page(names, p.n, p.last.as_deref());
    let next = match (more, p.n, items.last()) {
        (true, Some(n), Some(last)) => Some(format!("<{path}?n={n}&last={last}>; rel=\"next\"")),
        _ => None,
    };
    (items, next)
}

/// A `Range: bytes=…` header against a blob of `size` bytes: `None` to send it whole (several
/// ranges are answered with the whole blob, which RFC 9110 allows).
pub fn parse_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let unsatisfiable = || ApiError {
        range_of: Some(size),
        ..ApiError::new(416, "RANGE_INVALID", format!("range `{}` is not within {size} bytes", shown(header)))
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| unsatisfiable());
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => (size.saturating_sub(num(b)?), size),
        (false, true) => (num(a)?, size),
        (false, false) => (num(a)?, num(b)?.saturating_add(1).min(size)),
        (true, true) => return Err(unsatisfiable()),
    };
    if start >= end || start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

enum Reply {
    /// A document made here; `digest` for a manifest (a fallback tag's index).
    Json {
        bytes: Vec<u8>,
        media_type: &'static str,
        link: Option<String>,
        filtered: bool,
        digest: Option<Digest>,
    },
    Blob {
        src: BlobSource,
        media_type: String,
        range: Option<(u64, u64)>,
    },
}

impl Reply {
    fn json(bytes: Vec<u8>) -> Reply {
        Reply::Json { bytes, media_type: JSON, link: None, filtered: false, digest: None }
    }

    /// A referrers index: the referrers API's answer (`filtered` by artifact type), or a fallback
    /// tag's (a manifest, with its `digest`).
    fn index(bytes: Vec<u8>, digest: Option<Digest>, filtered: bool) -> Reply {
        Reply::Json { bytes, media_type: image::OCI_INDEX, link: None, filtered, digest }
    }

    fn link(mut self, next: Option<String>) -> Reply {
        if let Reply::Json { link, .. } = &mut self {
            *link = next;
        }
        self
    }

    fn into_response(self, head: bool, chunks: &Arc<Chunks>) -> Response<Body> {
        match self {
            Reply::Json { bytes, media_type, link, filtered, digest } => {
                let len = bytes.len() as u64;
                let body = if head { Body::empty() } else { Body::full(bytes) };
                let mut r = response(StatusCode::OK, body, media_type, len);
                if let Some(v) = digest.and_then(|d| HeaderValue::from_str(d.as_str()).ok()) {
                    r.headers_mut().insert("Docker-Content-Digest", v);
                }
                if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    r.headers_mut().insert(LINK, link);
                }
                if filtered {
                    r.headers_mut().insert("OCI-Filters-Applied", HeaderValue::from_static("artifactType"));
                }
                r
            }
            Reply::Blob { src, media_type, range } => blob_response(src, &media_type, range, head, chunks),
        }
    }
}

fn blob_response(
    src: BlobSource,
    media_type: &str,
    range: Option<(u64, u64)>,
    head: bool,
    chunks: &Arc<Chunks>,
) -> Response<Body> {
    let size = src.size;
    let (start, end) = range.unwrap_or((0, size));
    let digest = src.digest.to_string();
    let status = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let body = if head { Body::empty() } else { Body::blob(src, start, end, chunks) };
    let mut r = response(status, body, media_type, end - start);
    let h = r.headers_mut();
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&digest) {
        h.insert("Docker-Content-Digest", v.clone());
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
            h.insert(ETAG, etag);
        }
    }
    if range.is_some()
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(CONTENT_RANGE, v);
    }
    r
}

fn response(status: StatusCode, body: Body, media_type: &str, len: u64) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_str(media_type).unwrap_or(HeaderValue::from_static(JSON)));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    r
}

fn error(e: &ApiError) -> Response<Body> {
    let bytes = e.body();
    let len = bytes.len() as u64;
    let mut r = response(StatusCode::OK, Body::full(Bytes::from(bytes)), JSON, len);
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(size) = e.range_of
        && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
    {
        r.headers_mut().insert(CONTENT_RANGE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100).unwrap(), Some((95, 100)));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
        assert_eq!(parse_range("bytes=100-", 100).unwrap_err().status, 416);
        assert_eq!(parse_range("bytes=5-2", 100).unwrap_err().status, 416);
        assert_eq!(parse_range("bytes=x-", 100).unwrap_err().status, 416);
    }
}
