//! Response bodies: a small JSON document, or a blob read straight from its bundle file by offset.
//!
//! A blob is read in [`CHUNK`]-sized positional reads on tokio's blocking threads, into buffers of
//! the shared [`Chunks`] pool that go to the connection as they are (no copy). The next chunk is
//! read and hashed while the connection writes the current one, when the pool has a buffer to
//! spare, so hashing and sending run on two cores; a client that stops reading stops the reads.
//! Manifests and other small blobs are read into a buffer of their own. A blob sent whole is
//! hashed on the way; its last chunk is held back until the digest is known, and a mismatch (the
//! file changed underneath) ends the body with an error, which cuts the connection before the
//! client has every byte. A [`Body`] reports, when it is dropped, how many bytes it handed over
//! and how it ended: the request log's line.
//!
//! [`CHUNK`]: crate::serve::chunks::CHUNK

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use crate::digest::{Digest, Hasher, Mismatch};
use crate::local_file::ReadAt;
use crate::serve::chunks::Chunks;

/// Ranges of at most this many bytes (manifests, configs) are read into a buffer of their own
/// rather than a chunk of the pool.
const SMALL: u64 = 64 << 10;

/// How a body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte was handed to the connection.
    Complete,
    /// The server cut it: the bytes changed on disk, or could not be read.
    Cut(String),
    /// Dropped before the end: the client went away.
    Gone,
}

/// Told once, when a body is dropped: bytes handed over and how it ended.
pub type OnEnd = Box<dyn FnOnce(u64, Outcome) + Send>;

/// A blob's place in an open bundle file.
pub struct BlobSource {
    pub file: Arc<crate::volume::input::Volumes>,
    /// The bundle file and entry, for messages.
    pub place: String,
    pub offset: u64,
    pub size: u64,
    pub digest: Digest,
}

pub struct Body {
    kind: Kind,
    sent: u64,
    failed: Option<String>,
    on_end: Option<OnEnd>,
}

enum Kind {
    Full(Option<Bytes>),
    Blob(BlobReader),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body::new(Kind::Full(Some(bytes.into())))
    }

    pub fn empty() -> Self {
        Body::new(Kind::Full(None))
    }

    /// Bytes `start..end` of a blob; the whole blob (`0..size`) is verified as it goes.
    pub fn blob(src: BlobSource, start: u64, end: u64, pool: &Arc<Chunks>) -> Self {
        let hasher = (start == 0 && end == src.size).then(Hasher::default);
        let pool = Arc::clone(pool);
        Body::new(Kind::Blob(BlobReader { src: Arc::new(src), pool, pos: start, end, hasher, next: Next::Idle }))
    }

    fn new(kind: Kind) -> Self {
        Body { kind, sent: 0, failed: None, on_end: None }
    }

    /// Whom to tell, when the body is dropped, how many bytes it handed over and how it ended.
    pub fn on_end(&mut self, f: OnEnd) {
        self.on_end = Some(f);
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let next = match &mut this.kind {
            Kind::Full(bytes) => Ok(bytes.take()),
            Kind::Blob(reader) => match reader.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            },
        };
        Poll::Ready(match next {
            Ok(Some(chunk)) => {
                this.sent += chunk.len() as u64;
                Some(Ok(Frame::data(chunk)))
            }
            Ok(None) => None,
            Err(e) => {
                this.failed = Some(e.to_string());
                Some(Err(e))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Blob(r) => r.pos >= r.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Blob(r) => SizeHint::with_exact(r.end.saturating_sub(r.pos)),
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let outcome = match &self.failed {
            Some(why) => Outcome::Cut(why.clone()),
            None if http_body::Body::is_end_stream(self) => Outcome::Complete,
            None => Outcome::Gone,
        };
        if let Some(on_end) = self.on_end.take() {
            on_end(self.sent, outcome);
        }
    }
}

/// The rest of a blob to send, and the read of its next chunk.
struct BlobReader {
    src: Arc<BlobSource>,
    pool: Arc<Chunks>,
    /// The next byte to hand over, and the end of the range.
    pos: u64,
    end: u64,
    /// Set when the blob is sent whole; taken by the read under way.
    hasher: Option<Hasher>,
    next: Next,
}

/// The read of the next chunk.
enum Next {
    Idle,
    /// Waiting for a buffer of the pool.
    Waiting(Pin<Box<dyn Future<Output = std::io::Result<OwnedSemaphorePermit>> + Send>>),
    Reading(JoinHandle<Read>),
}

/// What one read hands back: the hasher, and the chunk (an error ends the body).
type Read = (Option<Hasher>, std::io::Result<Bytes>);

impl BlobReader {
    /// The next chunk. The one after it is read (and hashed) while the connection writes this
    /// one, if a buffer is spare: hashing and sending overlap on two cores.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<Bytes>>> {
        loop {
            match &mut self.next {
                Next::Idle if self.pos >= self.end => return Poll::Ready(Ok(None)),
                Next::Idle => {
                    self.next = match self.permit_needed().then(|| self.pool.spare()) {
                        Some(None) => Next::Waiting(Box::pin(Arc::clone(&self.pool).permit())),
                        Some(Some(permit)) => self.start(Some(permit)),
                        None => self.start(None),
                    }
                }
                Next::Waiting(permit) => {
                    let permit = std::task::ready!(permit.as_mut().poll(cx))?;
                    self.next = self.start(Some(permit));
                }
                Next::Reading(reading) => {
                    let joined = std::task::ready!(Pin::new(reading).poll(cx));
                    let (hasher, chunk) = joined.unwrap_or_else(|e| (None, Err(std::io::Error::other(e))));
                    self.hasher = hasher;
                    self.next = Next::Idle;
                    let chunk = chunk?;
                    self.pos += chunk.len() as u64;
                    self.read_ahead();
                    return Poll::Ready(Ok(Some(chunk)));
                }
            }
        }
    }

    /// A range of no more than [`SMALL`] bytes (a manifest) is read without the pool.
    fn permit_needed(&self) -> bool {
        self.end - self.pos > SMALL
    }

    fn read_ahead(&mut self) {
        if self.pos < self.end
            && let Some(permit) = self.pool.spare()
        {
            self.next = self.start(Some(permit));
        }
    }

    fn start(&mut self, permit: Option<OwnedSemaphorePermit>) -> Next {
        let (src, pool, hasher) = (Arc::clone(&self.src), Arc::clone(&self.pool), self.hasher.take());
        let (pos, end) = (self.pos, self.end);
        Next::Reading(tokio::task::spawn_blocking(move || next_chunk(&src, pos, end, &pool, permit, hasher)))
    }
}

/// Reads the chunk at `pos` (into a pooled buffer if given a permit), hashing a whole blob on the
/// way; its last chunk is checked before it is handed over.
fn next_chunk(
    src: &BlobSource,
    pos: u64,
    end: u64,
    pool: &Arc<Chunks>,
    permit: Option<OwnedSemaphorePermit>,
    mut hasher: Option<Hasher>,
) -> Read {
    let len = usize::try_from(end - pos).unwrap_or(usize::MAX);
    let read = |buf: &mut [u8]| {
        let read = src.file.read_exact_at(buf, src.offset + pos);
        read.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", src.place)))
    };
    let chunk = match permit {
        Some(permit) => pool.fill(permit, len, read).map(Bytes::from_owner),
        None => {
            let mut buf = vec![0; len.min(SMALL as usize)];
            read(&mut buf).map(|()| Bytes::from(buf))
        }
    };
    let chunk = chunk.and_then(|c| {
        if let Some(h) = &mut hasher {
            h.update(&c);
        }
        if pos + c.len() as u64 >= end {
            verify(hasher.take(), &src.digest, src.size, &src.place)?;
        }
        Ok(c)
    });
    (hasher, chunk)
}

/// The digest of a blob sent whole, checked before its last chunk leaves.
fn verify(hasher: Option<Hasher>, digest: &Digest, size: u64, place: &str) -> std::io::Result<()> {
    let Some(hasher) = hasher else { return Ok(()) };
    let (found, len) = hasher.finish();
    let mismatch = if len != size {
        Some(Mismatch::Size { expected: size, found: len })
    } else if found != *digest {
        Some(Mismatch::Digest { expected: digest.clone(), found })
    } else {
        None
    };
    match mismatch {
        Some(m) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{place}: changed on disk: {m}"))),
        None => Ok(()),
    }
}
