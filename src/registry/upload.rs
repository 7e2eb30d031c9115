//! Blob upload (spec "Pushing blobs"). `POST /v2/<name>/blobs/uploads/` opens a session at the
//! `Location` the registry answers with. A blob up to the chunk threshold then goes in one
//! streaming `PUT <location>?digest=<digest>`; a larger one in `PATCH <location>` chunks with
//! `Content-Range: <first>-<last>`, each answered by the next `Location`, closed by an empty
//! `PUT ?digest=`. After a failure a chunked upload resumes where the registry says it stands
//! (`GET <location>` → `Range: 0-<last>`), or starts afresh when the session is gone.
//!
//! The source is read exactly once per attempt and must hit EOF right at the declared size before
//! the last byte leaves, so a [`crate::digest::VerifyingReader`] fails the upload before the
//! registry can commit it.

use std::io::{self, Read};

use ureq::http::{Method, Response};

use super::transport::{Attempt, Body, Failure, header, retrying, status_error};
use super::{Client, check_content_digest, check_repo, scopes};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Opens the blob's bytes from the start, once per attempt.
type Open<'a> = dyn FnMut() -> Result<Box<dyn Read + Send>> + 'a;

/// One blob being pushed.
struct Blob<'a> {
    repo: &'a str,
    digest: &'a Digest,
    size: u64,
    scopes: &'a [String],
    place: &'a str,
}

/// An open upload session: where to send the next bytes and how many the registry holds.
struct Session {
    location: String,
    offset: u64,
    chunk: u64,
    /// A previous attempt used it: ask the registry where it stands before sending more.
    resumed: bool,
}

/// How a blob came to be whole in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    /// The registry linked it from the repository named to mount from.
    Mounted,
    /// Its bytes were sent.
    Uploaded,
}

/// What `POST /v2/<name>/blobs/uploads/` opened.
enum Started {
    Mounted,
    Session(Session),
}

impl Client {
    /// Uploads a blob of `size` bytes that `open` streams from its start. Blobs above the chunk
    /// threshold go in resumable chunks. Nothing is verified here: `open` should return a
    /// [`crate::digest::VerifyingReader`], whose failure stops the upload before it commits.
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        open: &mut dyn FnMut() -> Result<Box<dyn Read + Send>>,
    ) -> Result<()> {
        self.place_blob(repo, None, digest, size, open).map(drop)
    }

    /// Asks the registry to mount the blob from `from_repo` (`POST …?mount=<digest>&from=…`)
    /// and, when it declines, uploads it through the session it opened in answer: one round trip
    /// when the blob is there, none wasted when it is not. With `from_repo` = `repo` this asks
    /// whether the repository holds the blob already ([`Landed::Mounted`] then means it did).
    pub fn mount_or_push_blob(
        &self,
        repo: &str,
        from_repo: &str,
        digest: &Digest,
        size: u64,
        open: &mut dyn FnMut() -> Result<Box<dyn Read + Send>>,
    ) -> Result<Landed> {
        check_repo(from_repo, &self.name)?;
        self.place_blob(repo, Some(from_repo), digest, size, open)
    }

    fn place_blob(
        &self,
        repo: &str,
        mut mount: Option<&str>,
        digest: &Digest,
        size: u64,
        open: &mut Open,
    ) -> Result<Landed> {
        let place = self.place(repo, &format!("@{digest}"))?;
        let mut scopes = scopes(repo, "pull,push");
        if let Some(from) = mount.filter(|from| *from != repo) {
            scopes.extend(self::scopes(from, "pull"));
        }
        let blob = Blob { repo, digest, size, scopes: &scopes, place: &place };
        let mut session = None;
        let mut first = true;
        retrying(&self.transport.pace, || {
            // A failure may have come after the registry committed the blob.
            if !std::mem::take(&mut first) && self.holds(repo, digest, size, &scopes, &place)? {
                return Ok(Landed::Uploaded);
            }
            let s = match session.take() {
                Some(s) => s,
                // A mount is asked for once; a retry, having asked `HEAD`, just uploads.
                None => match self.start_upload(&blob, mount.take())? {
                    Started::Mounted => return Ok(Landed::Mounted),
                    Started::Session(s) => s,
                },
            };
            if size > self.chunk_threshold {
                self.push_chunks(&blob, session.insert(s), open)
            } else {
                self.push_whole(&blob, s, open)
            }
            .map(|()| Landed::Uploaded)
        })
    }

    fn push_whole(&self, blob: &Blob, session: Session, open: &mut Open) -> Attempt<()> {
        let mut source = open()?;
        if blob.size == 0 {
            expect_eof(&mut source, blob.place)?;
        }
        let mut body = Exact::new(&mut *source, blob.size, true);
        self.finish_upload(blob, &session.location, Body::Stream(&mut body, blob.size))
    }

    /// Sends the rest of a chunked upload. `s` is the session in use: fresh, or one a failed
    /// attempt left, which is asked where it stands (and replaced when the registry forgot it).
    fn push_chunks(&self, blob: &Blob, s: &mut Session, open: &mut Open) -> Attempt<()> {
        if s.resumed && !self.refresh(blob, s)? {
            *s = self.start_session(blob)?;
        }
        s.resumed = true;
        let mut source = open()?;
        let skipped =
            io::copy(&mut source.by_ref().take(s.offset), &mut io::sink()).map_err(|e| Error::io(blob.place, e))?;
        if skipped != s.offset {
            return Err(Failure::Fatal(Error::bad(
                blob.place,
                format!("source ended at {skipped} of {} bytes", blob.size),
            )));
        }
        while s.offset < blob.size {
            let len = s.chunk.min(blob.size - s.offset);
            let mut body = Exact::new(&mut *source, len, s.offset + len == blob.size);
            let mut req = self.request(Method::PATCH, s.location.clone(), blob.scopes, blob.place);
            req.headers.push(("content-type", "application/octet-stream".to_owned()));
            req.headers.push(("content-range", format!("{}-{}", s.offset, s.offset + len - 1)));
            let resp = self.transport.send(&req, Body::Stream(&mut body, len))?;
            match resp.status().as_u16() {
                202 => {}
                // The session is gone or out of step: the next attempt asks where it stands.
                404 | 416 => {
                    return Err(Failure::Retry { err: status_error(blob.place, &req.method, resp), after: None });
                }
                _ => return Err(Failure::Fatal(status_error(blob.place, &req.method, resp))),
            }
            s.location = header(&resp, "location").map_or(s.location.clone(), str::to_owned);
            let held = range_end(&resp);
            if held != Some(s.offset + len) {
                let msg =
                    format!("after bytes {}-{} the registry reports {held:?} bytes", s.offset, s.offset + len - 1);
                return Err(Failure::Retry { err: Error::registry(blob.place, msg), after: None });
            }
            s.offset += len;
        }
        self.finish_upload(blob, &s.location, Body::Empty)
    }

    /// `POST /v2/<name>/blobs/uploads/` → 202 and the session's `Location`; with `mount`,
    /// `?mount=<digest>&from=<mount>`, which may also answer 201: the blob is there.
    fn start_upload(&self, blob: &Blob, mount: Option<&str>) -> Attempt<Started> {
        let mut url = format!("/v2/{}/blobs/uploads/", blob.repo);
        if let Some(from) = mount {
            url = format!("{url}?mount={}&from={from}", blob.digest);
        }
        let req = self.request(Method::POST, url, blob.scopes, blob.place);
        let resp = self.transport.send(&req, Body::Empty)?;
        match resp.status().as_u16() {
            201 if mount.is_some() => return Ok(Started::Mounted),
            202 => {}
            // The spec wants a 202 from a registry that cannot mount; one that refuses the
            // request instead still takes a plain upload.
            400 | 404 | 405 if mount.is_some() => return self.start_upload(blob, None),
            _ => return Err(Failure::Fatal(status_error(blob.place, &req.method, resp))),
        }
        let location = header(&resp, "location")
            .ok_or_else(|| Failure::Fatal(Error::registry(blob.place, "upload started without a Location")))?;
        // Some registries need chunks of at least this size (spec: `OCI-Chunk-Min-Length`).
        let min = header(&resp, "oci-chunk-min-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let chunk = self.chunk_size.max(min);
        Ok(Started::Session(Session { location: location.to_owned(), offset: 0, chunk, resumed: false }))
    }

    /// A new upload session, without a mount.
    fn start_session(&self, blob: &Blob) -> Attempt<Session> {
        match self.start_upload(blob, None)? {
            Started::Session(s) => Ok(s),
            Started::Mounted => unreachable!("a POST without a mount never answers Mounted"),
        }
    }

    /// `GET <location>` → 204 and `Range: 0-<last>`: how much the registry holds. `false` when
    /// the session is gone (the registry forgot it, or cancelled it after a broken `PATCH`).
    fn refresh(&self, blob: &Blob, s: &mut Session) -> Attempt<bool> {
        let req = self.request(Method::GET, s.location.clone(), blob.scopes, blob.place);
        let resp = self.transport.send(&req, Body::Empty)?;
        match resp.status().as_u16() {
            204 => {}
            400 | 404 => return Ok(false),
            _ => return Err(Failure::Fatal(status_error(blob.place, &req.method, resp))),
        }
        s.location = header(&resp, "location").map_or(s.location.clone(), str::to_owned);
        // distribution says `0-0` both for nothing and for one byte; nothing is the safe reading.
        s.offset = range_end(&resp).filter(|&end| end > 1 && end <= blob.size).unwrap_or(0);
        Ok(true)
    }

    /// `PUT <location>?digest=<digest>` with the rest of the bytes (or none) → 201 Created.
    fn finish_upload(&self, blob: &Blob, location: &str, body: Body) -> Attempt<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", blob.digest);
        let mut req = self.request(Method::PUT, url, blob.scopes, blob.place);
        req.headers.push(("content-type", "application/octet-stream".to_owned()));
        req.completes_upload = true;
        let resp = self.transport.send(&req, body)?;
        if resp.status() != 201 {
            return Err(Failure::Fatal(status_error(blob.place, &req.method, resp)));
        }
        check_content_digest(&resp, blob.digest, blob.place).map_err(Failure::Fatal)
    }

    /// `DELETE <location>`: abandons an upload session. Best effort; the registry expires it anyway.
    pub(super) fn cancel_upload(&self, location: &str, scopes: &[String], place: &str) {
        let req = self.request(Method::DELETE, location.to_owned(), scopes, place);
        let _ = self.transport.send(&req, Body::Empty);
    }
}

/// `Range: 0-<last>` (some registries write `bytes=0-<last>`) as a byte count.
fn range_end(resp: &Response<ureq::Body>) -> Option<u64> {
    let range = header(resp, "range")?;
    let last: u64 = range.trim().trim_start_matches("bytes=").strip_prefix("0-")?.parse().ok()?;
    last.checked_add(1)
}

fn expect_eof(source: &mut dyn Read, place: &str) -> Attempt<()> {
    match source.read(&mut [0u8; 1]) {
        Ok(0) => Ok(()),
        Ok(_) => Err(Failure::Fatal(Error::bad(place, "source is longer than the blob's size"))),
        Err(e) => Err(Failure::Fatal(Error::io(place, e))),
    }
}

/// Hands out exactly `left` bytes of `inner`; with `then_eof`, checks `inner` ends there before
/// handing out the last of them, so a verifying source fails while the request is still open.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    then_eof: bool,
}

impl<'a> Exact<'a> {
    fn new(inner: &'a mut dyn Read, left: u64, then_eof: bool) -> Self {
        Exact { inner, left, then_eof }
    }
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            let msg = format!("source ended {} bytes short of the blob's size", self.left);
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
        }
        self.left -= n as u64;
        if self.left == 0 && self.then_eof && self.inner.read(&mut [0u8; 1])? != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "source is longer than the blob's size"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Mismatch, VerifyingReader};

    #[test]
    fn exact_fails_before_the_last_byte_when_verification_fails() {
        let data = b"hello world";
        let wrong = Digest::of_bytes(b"other");
        let mut source = VerifyingReader::new(&data[..], wrong, 11);
        let mut exact = Exact::new(&mut source, 11, true);
        let mut buf = [0u8; 64];
        let err = exact.read(&mut buf).unwrap_err();
        assert!(matches!(Mismatch::from_io(&err), Some(Mismatch::Digest { .. })));
    }

    #[test]
    fn exact_stops_at_a_chunk_and_reports_short_sources() {
        let mut source = &b"abcdef"[..];
        let mut out = Vec::new();
        Exact::new(&mut source, 4, false).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
        let err = Exact::new(&mut source, 4, true).read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut long = &b"abc"[..];
        let err = Exact::new(&mut long, 2, true).read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
