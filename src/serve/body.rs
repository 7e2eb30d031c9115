//! Response bodies: a small JSON document, or a blob read straight from its bundle file by offset.
//!
//! A blob is read in 256 KiB positional reads on tokio's blocking threads, one at a time and only
//! when the connection asks for more: a client that stops reading stops the reads, and holds no
//! blocking thread and no pooled buffer. Each read borrows a buffer from a fixed [`Chunks`] pool
//! shared by every connection and gives it back as soon as its bytes are copied out, so the pool
//! is held only while the disk is read and idle clients cannot starve the others (what a stalled
//! connection keeps is the one chunk the connection queued, until its write stalls out). A blob
//! sent whole is hashed on the way; its last chunk is held back until the digest is known, and a
//! mismatch (the file changed underneath) ends the body with an error, which cuts the connection
//! before the client has every byte. A [`Body`] reports, when it is dropped, how many bytes it
//! handed over and how it ended: the request log's line.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::digest::{Digest, Hasher, Mismatch};
use crate::hash_pool::Buffers;
use crate::local_file::ReadAt;

/// How long a read waits for a free chunk before the response is given up.
const CHUNK_WAIT: Duration = Duration::from_secs(60);

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

/// The fixed set of chunk buffers every blob read draws from.
pub struct Chunks(Arc<Buffers>);

impl Chunks {
    pub fn new(count: usize) -> Arc<Self> {
        Arc::new(Chunks(Arc::new(Buffers::new(count))))
    }
}

/// A chunk being read; its buffer goes back to the pool when it is dropped.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<Buffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

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
    pub fn blob(src: BlobSource, start: u64, end: u64, pool: &Chunks) -> Self {
        let hasher = (start == 0 && end == src.size).then(Hasher::default);
        let pool = Arc::clone(&pool.0);
        Body::new(Kind::Blob(BlobReader { src: Arc::new(src), pool, pos: start, end, hasher, reading: None }))
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

/// The rest of a blob to send, and the read under way if the connection asked for more.
struct BlobReader {
    src: Arc<BlobSource>,
    pool: Arc<Buffers>,
    /// The next byte to read, and the end of the range.
    pos: u64,
    end: u64,
    /// Set when the blob is sent whole; taken by the read under way.
    hasher: Option<Hasher>,
    reading: Option<JoinHandle<Read>>,
}

/// What one read hands back: the hasher, and the chunk (an error ends the body).
type Read = (Option<Hasher>, std::io::Result<Bytes>);

impl BlobReader {
    /// The next chunk, read now: nothing is read ahead of what the connection takes.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<Bytes>>> {
        if self.pos >= self.end {
            return Poll::Ready(Ok(None));
        }
        let reading = self.reading.get_or_insert_with(|| {
            let (src, pool, hasher) = (Arc::clone(&self.src), Arc::clone(&self.pool), self.hasher.take());
            let (pos, end) = (self.pos, self.end);
            tokio::task::spawn_blocking(move || next_chunk(&src, pos, end, &pool, hasher))
        });
        let (hasher, chunk) = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined.unwrap_or_else(|e| (None, Err(std::io::Error::other(e)))),
        };
        self.reading = None;
        self.hasher = hasher;
        let chunk = chunk?;
        self.pos += chunk.len() as u64;
        Poll::Ready(Ok(Some(chunk)))
    }
}

/// Reads the chunk at `pos`, hashing a whole blob on the way (its last chunk is checked before it
/// is handed over); the pooled buffer goes back as soon as the bytes are copied out of it.
fn next_chunk(src: &BlobSource, pos: u64, end: u64, pool: &Arc<Buffers>, mut hasher: Option<Hasher>) -> Read {
    let chunk = read_chunk(src, pos, end, pool).and_then(|c| {
        if let Some(h) = &mut hasher {
            h.update(c.as_ref());
        }
        if pos + c.len as u64 >= end {
            verify(hasher.take(), &src.digest, src.size, &src.place)?;
        }
        Ok(Bytes::copy_from_slice(c.as_ref()))
    });
    (hasher, chunk)
}

fn read_chunk(src: &BlobSource, pos: u64, end: u64, pool: &Arc<Buffers>) -> std::io::Result<Pooled> {
    let mut buf = pool.take_within(CHUNK_WAIT).ok_or_else(no_buffer)?;
    let len = buf.len().min(usize::try_from(end - pos).unwrap_or(usize::MAX));
    let read = src.file.read_exact_at(&mut buf[..len], src.offset + pos);
    let chunk = Pooled { buf, len, pool: Arc::clone(pool) };
    read.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", src.place)))?;
    Ok(chunk)
}

fn no_buffer() -> std::io::Error {
    std::io::Error::other(format!("no read buffer came free in {} s", CHUNK_WAIT.as_secs()))
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
