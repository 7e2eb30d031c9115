//! Response bodies: a small JSON document, or a blob read straight from its bundle file by offset.
//!
//! A blob is read in [`CHUNK`]-sized positional reads on tokio's blocking threads, into buffers of
//! the shared [`Chunks`] pool that go to the connection as they are (no copy). While the
//! connection writes one chunk, the next is hashed and the one after it read, on two threads,
//! when the pool has buffers to spare: a stream runs at the speed of its slowest stage, hashing,
//! not of all three in turn. A client that stops reading stops the reads.
//! Manifests and other small blobs are read into a buffer of their own. A blob sent whole is
//! hashed on the way; its last chunk is held back until the digest is known, and a mismatch (the
//! file changed underneath) ends the body with an error, which cuts the connection before the
//! client has every byte. A [`Body`] reports, when it is dropped, how many bytes it handed over
//! and how it ended: the request log's line.
//!
//! [`CHUNK`]: crate::serve::chunks::CHUNK

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;

use crate::digest::{Digest, Hasher, Mismatch};
use crate::local_file::ReadAt;
use crate::serve::chunks::{CHUNK, Chunks};

/// Ranges of at most this many bytes (manifests, configs) are read into a buffer of their own
/// rather than a chunk of the pool.
const SMALL: u64 = 64 << 10;
/// Chunks of one response read (and hashed) ahead of the one being sent.
const AHEAD: usize = 2;

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
        Body::new(Kind::Blob(BlobReader::new(src, pool, start, end)))
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

/// The rest of a blob to send, and the chunks of it under way.
struct BlobReader {
    src: Arc<BlobSource>,
    pool: Arc<Chunks>,
    /// The next byte to hand over, the next to read, and the end of the range.
    pos: u64,
    read_at: u64,
    end: u64,
    /// For a blob sent whole: where the next chunk started gets the hasher from, once the chunk
    /// before it is hashed.
    hasher: Option<oneshot::Receiver<Hasher>>,
    /// Waiting for a buffer for the next chunk, when none is under way.
    waiting: Option<Pin<Box<dyn Future<Output = std::io::Result<OwnedSemaphorePermit>> + Send>>>,
    /// The chunks under way, in order.
    chunks: VecDeque<JoinHandle<std::io::Result<Bytes>>>,
}

impl BlobReader {
    fn new(src: BlobSource, pool: &Arc<Chunks>, start: u64, end: u64) -> Self {
        let hasher = (start == 0 && end == src.size).then(|| {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Hasher::default());
            rx
        });
        let (src, pool) = (Arc::new(src), Arc::clone(pool));
        BlobReader { src, pool, pos: start, read_at: start, end, hasher, waiting: None, chunks: VecDeque::new() }
    }

    /// The next chunk, in order. Up to [`AHEAD`] more are read and hashed meanwhile, if the pool
    /// has buffers to spare.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<Bytes>>> {
        if self.chunks.is_empty() && self.read_at < self.end {
            if self.end - self.read_at <= SMALL {
                self.start(None);
            } else {
                let pool = &self.pool;
                let waiting = self.waiting.get_or_insert_with(|| Box::pin(Arc::clone(pool).permit()));
                let permit = std::task::ready!(waiting.as_mut().poll(cx))?;
                self.waiting = None;
                self.start(Some(permit));
            }
        }
        self.read_ahead();
        let Some(next) = self.chunks.front_mut() else { return Poll::Ready(Ok(None)) };
        let joined = std::task::ready!(Pin::new(next).poll(cx));
        self.chunks.pop_front();
        let chunk = joined.unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
        self.pos += chunk.len() as u64;
        self.read_ahead();
        Poll::Ready(Ok(Some(chunk)))
    }

    fn read_ahead(&mut self) {
        while self.chunks.len() < AHEAD && self.read_at < self.end {
            match self.pool.spare() {
                Some(permit) => self.start(Some(permit)),
                None => return,
            }
        }
    }

    /// Starts the chunk at `read_at`: read into a pooled buffer (with a permit) or one of its own
    /// (a range of at most [`SMALL`] bytes), then hashed after the chunk before it.
    fn start(&mut self, permit: Option<OwnedSemaphorePermit>) {
        let left = self.end - self.read_at;
        let len = if permit.is_some() { left.min(CHUNK as u64) } else { left };
        let at = self.read_at;
        self.read_at += len;
        let hashing = self.hasher.take().map(|from| {
            let (to, next) = oneshot::channel();
            let last = self.read_at >= self.end;
            self.hasher = (!last).then_some(next);
            (from, (!last).then_some(to))
        });
        let (src, pool) = (Arc::clone(&self.src), Arc::clone(&self.pool));
        let read = move || chunk(&src, &pool, permit, at, len, hashing);
        self.chunks.push_back(tokio::task::spawn_blocking(read));
    }
}

/// Where a chunk gets the hasher from, and where it hands it on (`None`: the last chunk, which
/// checks the digest instead).
type Hashing = (oneshot::Receiver<Hasher>, Option<oneshot::Sender<Hasher>>);

/// One chunk, on a blocking thread: read, then (once the chunk before it is hashed) hashed, so
/// that while one chunk is sent the next is hashed and the one after it read. The last chunk of a
/// blob sent whole is handed over only if the digest matches. Waiting for the hasher cannot
/// deadlock: the chunk before was given a thread first (tokio runs blocking work in order).
fn chunk(
    src: &BlobSource,
    pool: &Arc<Chunks>,
    permit: Option<OwnedSemaphorePermit>,
    at: u64,
    len: u64,
    hashing: Option<Hashing>,
) -> std::io::Result<Bytes> {
    let bytes = read(src, pool, permit, at, len)?;
    let Some((from, to)) = hashing else { return Ok(bytes) };
    // The sender is gone only if an earlier chunk failed: its error ends the body first.
    let mut hasher = from.blocking_recv().map_err(|_| std::io::Error::other("an earlier chunk failed"))?;
    hasher.update(&bytes);
    match to {
        Some(to) => drop(to.send(hasher)),
        None => verify(Some(hasher), &src.digest, src.size, &src.place)?,
    }
    Ok(bytes)
}

/// Reads `len` bytes at `at` of the blob, into a pooled buffer if given a permit.
fn read(
    src: &BlobSource,
    pool: &Arc<Chunks>,
    permit: Option<OwnedSemaphorePermit>,
    at: u64,
    len: u64,
) -> std::io::Result<Bytes> {
    let read = |buf: &mut [u8]| {
        let read = src.file.read_exact_at(buf, src.offset + at);
        read.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", src.place)))
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    match permit {
        Some(permit) => pool.fill(permit, len, read).map(Bytes::from_owner),
        None => {
            let mut buf = vec![0; len.min(SMALL as usize)];
            read(&mut buf).map(|()| Bytes::from(buf))
        }
    }
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
