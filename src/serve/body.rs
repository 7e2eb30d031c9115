//! Response bodies: a small JSON document, or a blob read straight from its bundle file by offset.
//!
//! A blob is read in chunks by positional reads on tokio's blocking threads, one chunk ahead of the
//! one being sent. Chunks come from a fixed [`Chunks`] pool shared by every connection, so memory
//! stays flat in blob size and in the number of clients (a client past the pool waits for a chunk).
//! A blob sent whole is hashed on the way; the last chunk is held back until the digest is known,
//! and a mismatch (the file changed underneath) ends the body with an error, which cuts the
//! connection before the client has every byte. A [`Body`] reports, when it is dropped, how many
//! bytes it handed over and how it ended: the request log's line.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::digest::{Digest, Hasher, Mismatch};
use crate::local_file::ReadAt;

/// Size of one chunk read from a bundle.
const CHUNK: usize = 256 << 10;
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
pub struct Chunks {
    permits: Arc<Semaphore>,
    free: Mutex<Vec<Vec<u8>>>,
}

impl Chunks {
    pub fn new(count: usize) -> Arc<Self> {
        Arc::new(Chunks { permits: Arc::new(Semaphore::new(count)), free: Mutex::new(Vec::new()) })
    }

    fn buffer(&self) -> Vec<u8> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_else(|| vec![0; CHUNK])
    }
}

/// A chunk handed to hyper; its buffer and permit go back to the pool when hyper drops it.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<Chunks>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.pool.free.lock().unwrap_or_else(PoisonError::into_inner).push(buf);
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
    Blob(Box<BlobReader>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body::new(Kind::Full(Some(bytes.into())))
    }

    pub fn empty() -> Self {
        Body::new(Kind::Full(None))
    }

    /// Bytes `start..end` of a blob; the whole blob (`0..size`) is verified as it goes.
    pub fn blob(src: BlobSource, start: u64, end: u64, pool: Arc<Chunks>) -> Self {
        let check = (start == 0 && end == src.size).then(|| Check { hasher: Hasher::default(), size: src.size });
        let reader =
            BlobReader { pos: src.offset + start, end: src.offset + end, src, check, pool, state: State::Idle };
        Body::new(Kind::Blob(Box::new(reader)))
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
            Kind::Blob(reader) => ready!(reader.poll_chunk(cx)),
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
            Kind::Blob(r) => r.pos >= r.end && matches!(r.state, State::Idle),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Blob(r) => SizeHint::with_exact(r.end - r.pos + r.state.held()),
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

/// The running sha256 of a blob sent whole.
struct Check {
    hasher: Hasher,
    size: u64,
}

/// One chunk read (and hashed) on a blocking thread, with the hash state handed back.
type Read = std::io::Result<(Bytes, Option<Check>)>;

/// Waiting for a chunk of the pool (`None`: none came free in time).
type Wait = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

enum State {
    Idle,
    Waiting(Wait),
    Reading(JoinHandle<Read>),
    /// A chunk read ahead, to hand over on the next poll.
    Ready(Bytes),
}

impl State {
    /// Bytes already read from the file but not yet handed over.
    fn held(&self) -> u64 {
        match self {
            State::Ready(b) => b.len() as u64,
            _ => 0,
        }
    }
}

struct BlobReader {
    src: BlobSource,
    pos: u64,
    end: u64,
    check: Option<Check>,
    pool: Arc<Chunks>,
    state: State,
}

impl BlobReader {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<Bytes>>> {
        loop {
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Ready(chunk) => {
                    // Read the next chunk while this one is sent.
                    self.start(cx)?;
                    return Poll::Ready(Ok(Some(chunk)));
                }
                State::Idle if self.pos >= self.end => return Poll::Ready(Ok(None)),
                State::Idle => self.start(cx)?,
                State::Waiting(mut wait) => match wait.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Waiting(wait);
                        return Poll::Pending;
                    }
                    Poll::Ready(None) => return Poll::Ready(Err(no_buffer())),
                    Poll::Ready(Some(permit)) => self.spawn_read(permit),
                },
                State::Reading(mut task) => {
                    let Poll::Ready(read) = Pin::new(&mut task).poll(cx) else {
                        self.state = State::Reading(task);
                        return Poll::Pending;
                    };
                    let (chunk, check) = read.map_err(std::io::Error::other)??;
                    self.check = check;
                    self.pos += chunk.len() as u64;
                    if self.pos >= self.end {
                        // The last chunk was held until the digest of the whole was known.
                        return Poll::Ready(Ok(Some(chunk)));
                    }
                    self.state = State::Ready(chunk);
                }
            }
        }
    }

    /// Starts reading the next chunk, if any: takes a pool permit, waiting for one if need be.
    fn start(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if self.pos >= self.end {
            return Ok(());
        }
        match Arc::clone(&self.pool.permits).try_acquire_owned() {
            Ok(permit) => self.spawn_read(permit),
            Err(_) => {
                let permits = Arc::clone(&self.pool.permits);
                let mut wait: Wait =
                    Box::pin(async move { tokio::time::timeout(CHUNK_WAIT, permits.acquire_owned()).await.ok()?.ok() });
                // Polled once now, so the waker is registered (or a permit freed meanwhile is taken).
                match wait.as_mut().poll(cx) {
                    Poll::Pending => self.state = State::Waiting(wait),
                    Poll::Ready(None) => return Err(no_buffer()),
                    Poll::Ready(Some(permit)) => self.spawn_read(permit),
                }
            }
        }
        Ok(())
    }

    fn spawn_read(&mut self, permit: OwnedSemaphorePermit) {
        let len = (self.end - self.pos).min(CHUNK as u64) as usize;
        let (file, pos, pool, last) =
            (Arc::clone(&self.src.file), self.pos, Arc::clone(&self.pool), self.pos + len as u64 >= self.end);
        let mut check = self.check.take();
        let (digest, place) = (self.src.digest.clone(), self.src.place.clone());
        self.state = State::Reading(tokio::task::spawn_blocking(move || {
            let mut buf = pool.buffer();
            let read = file.read_exact_at(&mut buf[..len], pos);
            let chunk = Pooled { buf, len, pool, _permit: permit };
            read.map_err(|e| std::io::Error::new(e.kind(), format!("{place}: {e}")))?;
            if let Some(c) = &mut check {
                c.hasher.update(chunk.as_ref());
                if last {
                    verify(check.take().map(|c| (c.hasher, c.size)), &digest, &place)?;
                }
            }
            Ok((Bytes::from_owner(chunk), check))
        }));
    }
}

fn no_buffer() -> std::io::Error {
    std::io::Error::other(format!("no read buffer came free in {} s", CHUNK_WAIT.as_secs()))
}

/// The digest of a blob sent whole, checked before its last chunk leaves.
fn verify(check: Option<(Hasher, u64)>, digest: &Digest, place: &str) -> std::io::Result<()> {
    let Some((hasher, size)) = check else { return Ok(()) };
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
