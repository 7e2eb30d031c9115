//! Response bodies: a small JSON document, or a blob read straight from its bundle file by offset.
//!
//! A blob is read by one of tokio's blocking threads, in 256 KiB positional reads, and handed to
//! the connection through a channel holding one chunk, so the thread reads (and hashes) the next
//! chunk while the connection sends the last. Chunks come from a fixed [`Chunks`] pool shared by
//! every connection, so memory stays flat in blob size and in the number of clients (a reader past
//! the pool waits for a chunk to come back). A blob sent whole is hashed on the way; its last
//! chunk is held back until the digest is known, and a mismatch (the file changed underneath) ends
//! the body with an error, which cuts the connection before the client has every byte. A [`Body`]
//! reports, when it is dropped, how many bytes it handed over and how it ended: the request log's
//! line.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

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

/// A chunk handed to hyper; its buffer goes back to the pool when hyper drops it.
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
        let (tx, rx) = mpsc::channel(1);
        let pool = Arc::clone(&pool.0);
        tokio::task::spawn_blocking(move || produce(&src, start, end, &pool, &tx));
        Body::new(Kind::Blob(BlobReader { rx, left: end - start }))
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
            Kind::Blob(reader) => match reader.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    reader.left = reader.left.saturating_sub(chunk.len() as u64);
                    Ok(Some(chunk))
                }
                Poll::Ready(Some(Err(e))) => Err(e),
                Poll::Ready(None) if reader.left > 0 => Err(std::io::Error::other("the blob's reader stopped early")),
                Poll::Ready(None) => Ok(None),
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
            Kind::Blob(r) => r.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Blob(r) => SizeHint::with_exact(r.left),
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

/// The receiving end of a blob's reader thread.
struct BlobReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    /// Bytes not yet handed over.
    left: u64,
}

/// Reads `start..end` of a blob chunk by chunk into `tx`, hashing a whole blob on the way; stops
/// at the first error (sent as the last item) or when the body is gone.
fn produce(src: &BlobSource, start: u64, end: u64, pool: &Arc<Buffers>, tx: &mpsc::Sender<std::io::Result<Bytes>>) {
    let mut hasher = (start == 0 && end == src.size).then(Hasher::default);
    let mut pos = start;
    while pos < end {
        let chunk = read_chunk(src, pos, end, pool);
        let last = chunk.as_ref().is_ok_and(|c| pos + c.len as u64 >= end);
        let item = chunk.and_then(|c| {
            if let Some(h) = &mut hasher {
                h.update(c.as_ref());
            }
            if last {
                verify(hasher.take(), &src.digest, src.size, &src.place)?;
            }
            pos += c.len as u64;
            Ok(Bytes::from_owner(c))
        });
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
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
