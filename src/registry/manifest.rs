//! The manifest endpoints of the distribution spec: `HEAD`, `GET` and `PUT
//! /v2/<name>/manifests/<reference>`, where a reference is a tag or a digest. Manifests are small
//! documents (at most [`MANIFEST_MAX_BYTES`]) read whole and checked against the digest they were
//! asked by; a `PUT` is checked against the registry's `Docker-Content-Digest` and repaired once
//! when the registry finds blobs missing.

use std::io::Read;

use ureq::http::{Method, Response};

use super::pace::Watchdog;
use super::transport::{Attempt, Body, Failure, Request, header, registry_message, retrying, status_error_codes};
use super::{Client, MANIFEST_MAX_BYTES, MANIFEST_MEDIA_TYPES, check_content_digest, expect, scopes};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// A manifest reference: a tag or a digest.
enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    fn parse(reference: &str, place: &str) -> Result<Self> {
        if reference.contains(':') {
            return Digest::parse(reference).map(ManifestRef::Digest).map_err(|e| Error::bad(place, e.to_string()));
        }
        if is_tag(reference) {
            Ok(ManifestRef::Tag(reference.to_owned()))
        } else {
            Err(Error::bad(place, "not a valid tag"))
        }
    }
}

/// Whether `text` is a tag per the spec: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub(super) fn is_tag(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => write!(f, ":{t}"),
            ManifestRef::Digest(d) => write!(f, "@{d}"),
        }
    }
}

impl Client {
    /// `PUT /v2/<name>/manifests/<reference>`. Returns the manifest's digest, after checking the
    /// registry's `Docker-Content-Digest` (when it sends one) names the same bytes. When the
    /// registry answers `MANIFEST_BLOB_UNKNOWN` (or `BLOB_UNKNOWN`), `repair` is called once to put
    /// the missing blobs in place and the `PUT` is tried once more.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        repair: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Digest> {
        let (place, reference) = self.manifest_place(repo, reference)?;
        let digest = Digest::of_bytes(bytes);
        if matches!(&reference, ManifestRef::Digest(d) if *d != digest) {
            return Err(Error::integrity(place, format!("manifest bytes have digest {digest}")));
        }
        let scopes = scopes(repo, "pull,push");
        let mut req =
            self.request(Method::PUT, format!("/v2/{repo}/manifests/{}", url_ref(&reference)), &scopes, &place);
        req.headers.push(("content-type", media_type.to_owned()));
        let mut repaired = false;
        loop {
            match retrying(&self.transport.pace, || self.send_manifest(&req, bytes))? {
                Ok(resp) => {
                    check_content_digest(&resp, &digest, &place)?;
                    return Ok(digest);
                }
                Err(_) if !std::mem::replace(&mut repaired, true) => repair()?,
                Err(err) => return Err(err),
            }
        }
    }

    /// One manifest `PUT`: the 201 answer, or the error of a registry missing some of its blobs.
    fn send_manifest(&self, req: &Request, bytes: &[u8]) -> Attempt<std::result::Result<Response<ureq::Body>, Error>> {
        let resp = self.transport.send(req, Body::Bytes(bytes))?;
        if resp.status() == 201 {
            return Ok(Ok(resp));
        }
        let (err, codes) = status_error_codes(req.place, &req.method, resp);
        if codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN" || c == "BLOB_UNKNOWN") {
            return Ok(Err(err));
        }
        Err(Failure::Fatal(err))
    }

    /// `HEAD /v2/<name>/manifests/<reference>`: the manifest's digest and media type, or `None`.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<(Digest, String)>> {
        let (place, parsed) = self.manifest_place(repo, reference)?;
        let scopes = scopes(repo, "pull");
        let req = self.manifest_request(Method::HEAD, repo, &parsed, &scopes, &place);
        let resp = self.call(&req, &[200, 404])?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let digest = header(&resp, "docker-content-digest").and_then(|d| Digest::parse(d).ok());
        match (digest, media_type(&resp)) {
            (Some(digest), Some(media_type)) => Ok(Some((digest, media_type))),
            // Not every registry names the digest on HEAD; the bytes always do.
            _ => {
                let (bytes, media_type) = self.get_manifest(repo, reference)?;
                Ok(Some((Digest::of_bytes(&bytes), media_type)))
            }
        }
    }

    /// `GET /v2/<name>/manifests/<reference>`: the manifest bytes (at most
    /// [`MANIFEST_MAX_BYTES`]) and media type. A manifest fetched by digest is checked against it.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, String)> {
        // Only 200 is accepted, so `None` (a 404) cannot come back; the error keeps it so.
        self.fetch_manifest(repo, reference, &[200])?
            .ok_or_else(|| Error::registry(format!("{}/{repo}", self.name), "manifest not found"))
    }

    /// [`Client::get_manifest`], `None` when the registry has no such manifest (404): how
    /// cosign's tags (`sha256-<hex>.sig`) and the referrers fallback tag are looked up.
    pub fn find_manifest(&self, repo: &str, reference: &str) -> Result<Option<(Vec<u8>, String)>> {
        self.fetch_manifest(repo, reference, &[200, 404])
    }

    fn fetch_manifest(&self, repo: &str, reference: &str, ok: &[u16]) -> Result<Option<(Vec<u8>, String)>> {
        let (place, parsed) = self.manifest_place(repo, reference)?;
        let scopes = scopes(repo, "pull");
        let req = self.manifest_request(Method::GET, repo, &parsed, &scopes, &place);
        let Some((bytes, media_type)) = retrying(&self.transport.pace, || {
            let resp = expect(self.transport.send(&req, Body::Empty)?, ok, &req)?;
            if resp.status() == 404 {
                // Read, so that the connection goes back to the pool.
                registry_message(resp);
                return Ok(None);
            }
            let media_type = media_type(&resp);
            let bytes = read_document(resp, &place)?;
            Ok(Some((bytes, media_type)))
        })?
        else {
            return Ok(None);
        };
        if bytes.len() as u64 > MANIFEST_MAX_BYTES {
            return Err(Error::bad(place, format!("manifest larger than {MANIFEST_MAX_BYTES} bytes")));
        }
        if let ManifestRef::Digest(expected) = &parsed {
            let found = Digest::of_bytes(&bytes);
            if found != *expected {
                return Err(Error::integrity(place, format!("manifest digest mismatch: found {found}")));
            }
        }
        let media_type = media_type
            .or_else(|| serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["mediaType"].as_str().map(Into::into))
            .ok_or_else(|| Error::bad(&place, "manifest without Content-Type or mediaType"))?;
        Ok(Some((bytes, media_type)))
    }

    /// `GET /v2/<name>/referrers/<digest>`: the image index listing the manifests whose `subject`
    /// is `digest` (at most [`MANIFEST_MAX_BYTES`], one page), or `None` when the registry has no
    /// referrers API (distribution 2.8 answers 404; some registries 400 or 405).
    pub fn referrers(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let place = self.place(repo, &format!("@{digest} (referrers)"))?;
        let scopes = scopes(repo, "pull");
        let mut req = self.request(Method::GET, format!("/v2/{repo}/referrers/{digest}"), &scopes, &place);
        req.headers.push(("accept", super::OCI_INDEX.to_owned()));
        let bytes = retrying(&self.transport.pace, || {
            let resp = expect(self.transport.send(&req, Body::Empty)?, &[200, 400, 404, 405], &req)?;
            if resp.status() != 200 {
                registry_message(resp);
                return Ok(None);
            }
            read_document(resp, &place).map(Some)
        })?;
        match bytes {
            Some(b) if b.len() as u64 > MANIFEST_MAX_BYTES => {
                Err(Error::bad(place, format!("referrers list larger than {MANIFEST_MAX_BYTES} bytes")))
            }
            other => Ok(other),
        }
    }

    fn manifest_request<'a>(
        &self,
        method: Method,
        repo: &str,
        reference: &ManifestRef,
        scopes: &'a [String],
        place: &'a str,
    ) -> Request<'a> {
        let mut req = self.request(method, format!("/v2/{repo}/manifests/{}", url_ref(reference)), scopes, place);
        req.headers.push(("accept", MANIFEST_MEDIA_TYPES.join(", ")));
        req
    }

    fn manifest_place(&self, repo: &str, reference: &str) -> Result<(String, ManifestRef)> {
        let shown: String = reference.chars().take(140).collect();
        let parsed = ManifestRef::parse(reference, &format!("{}/{repo}: reference `{shown}`", self.name))?;
        Ok((self.place(repo, &parsed.to_string())?, parsed))
    }
}

/// A manifest or referrers body, read up to one byte past [`MANIFEST_MAX_BYTES`] so the caller
/// can refuse a larger one.
pub(super) fn read_document(resp: Response<ureq::Body>, place: &str) -> Attempt<Vec<u8>> {
    let mut bytes = Vec::new();
    Watchdog::new(resp.into_body().into_reader().take(MANIFEST_MAX_BYTES + 1)).read_to_end(&mut bytes).map_err(
        |e| Failure::Retry { err: Error::registry_caused(place, "reading the manifest failed", e), after: None },
    )?;
    Ok(bytes)
}

/// The response's media type, without parameters.
fn media_type(resp: &Response<ureq::Body>) -> Option<String> {
    let value = header(resp, "content-type")?.split(';').next()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn url_ref(reference: &ManifestRef) -> String {
    match reference {
        ManifestRef::Tag(t) => t.clone(),
        ManifestRef::Digest(d) => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_references_are_tags_or_digests() {
        assert!(matches!(ManifestRef::parse("v1.2_3-x", "p"), Ok(ManifestRef::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(ManifestRef::parse(d, "p"), Ok(ManifestRef::Digest(_))));
        for bad in ["", "-x", ".x", "a/b", "a?b", "sha256:abc", &"x".repeat(129)] {
            assert!(ManifestRef::parse(bad, "p").is_err(), "{bad}");
        }
    }
}
