//! Response bodies: a small JSON document, or a blob read straight from its bundle file by offset.
//!
//! A blob is read in [`CHUNK`]-sized positional reads on tokio's blocking threads, into buffers of
//! the shared [`Chunks`] pool that go to the connection as they are (no copy). One thread (a `Run`)
//! reads a chunk and hashes it piece by piece, each piece while the read has just put it in that
//! core's cache, then goes on with the next, up to `AHEAD` chunks ahead of the one the connection
//! is writing. Hashing bytes another core read costs a fifth more, and a thread woken per chunk
//! costs wake-ups; the socket and the client meanwhile use the other cores. A client that stops
//! reading stops the reads, and a run gives its thread back as soon as it may not read further.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;

use crate::digest::{Digest, Hasher, Mismatch};
use crate::local_file::ReadAt;
use crate::serve::chunks::{CHUNK, Chunks};

/// Ranges of at most this many bytes (manifests, configs) are read into a buffer of their own
/// rather than a chunk of the pool.
const SMALL: u64 = 64 << 10;
/// Chunks of one response read (and hashed) ahead of the one being sent.
const AHEAD: usize = 2;
/// A chunk is read and hashed this much at a time: the hash reads each piece while it is still in
/// the cache the read put it in.
const PIECE: usize = 256 << 10;

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
    pub fn blob(src: BlobSource, start: u64, end: u64, pool: &Arc<Chunks>) -> Self {
        Body::new(Kind::Blob(Box::new(BlobReader::new(src, pool, start, end))))
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

/// The rest of a blob to send: the chunks read (and hashed) waiting to be sent, and the run
/// reading more.
struct BlobReader {
    /// The next byte to hand over, and the end of the range.
    pos: u64,
    end: u64,
    /// The chunks a run has read, in order; `queued` counts them until taken.
    ready: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    /// Where the next run starts, while no run is under way.
    next: Option<Run>,
    /// The run under way: it gives back where the next one starts, or its error.
    run: Option<JoinHandle<std::io::Result<Run>>>,
    failed: Option<std::io::Error>,
    pool: Arc<Chunks>,
    /// Waiting for a buffer for the next run, when nothing is read ahead.
    waiting: Option<Pin<Box<dyn Future<Output = std::io::Result<OwnedSemaphorePermit>> + Send>>>,
}

impl BlobReader {
    fn new(src: BlobSource, pool: &Arc<Chunks>, start: u64, end: u64) -> Self {
        let hasher = (start == 0 && end == src.size).then(Hasher::default);
        let (tx, ready) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let src = Arc::new(src);
        let pool = Arc::clone(pool);
        let next = Run { src, pool: Arc::clone(&pool), at: start, end, hasher, tx, queued: Arc::clone(&queued) };
        BlobReader { pos: start, end, ready, queued, next: Some(next), run: None, failed: None, pool, waiting: None }
    }

    /// The next chunk, in order. While it is sent, a run reads and hashes up to [`AHEAD`] more,
    /// if the pool has buffers to spare.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<Bytes>>> {
        loop {
            self.reap(cx);
            if let Poll::Ready(Some(chunk)) = self.ready.poll_recv(cx) {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                self.pos += chunk.len() as u64;
                self.read_ahead();
                return Poll::Ready(Ok(Some(chunk)));
            }
            // A run's error comes after the chunks it handed over before it.
            if let Some(e) = self.failed.take() {
                return Poll::Ready(Err(e));
            }
            if self.run.is_some() {
                return Poll::Pending;
            }
            let Some(next) = self.next.as_ref().filter(|n| n.at < n.end) else { return Poll::Ready(Ok(None)) };
            // Nothing read ahead: wait, in order, for a buffer (a small range needs none).
            let permit = if next.end - next.at <= SMALL {
                None
            } else {
                let pool = &self.pool;
                let waiting = self.waiting.get_or_insert_with(|| Box::pin(Arc::clone(pool).permit()));
                let permit = std::task::ready!(waiting.as_mut().poll(cx))?;
                self.waiting = None;
                Some(permit)
            };
            self.start(permit);
        }
    }

    /// Takes back the state of a run that ended (or its error).
    fn reap(&mut self, cx: &mut Context<'_>) {
        let Some(run) = &mut self.run else { return };
        let Poll::Ready(ran) = Pin::new(run).poll(cx) else { return };
        self.run = None;
        match ran.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
            Ok(next) => self.next = Some(next),
            Err(e) => self.failed = Some(e),
        }
    }

    /// Starts a run now if none is under way, fewer than [`AHEAD`] chunks wait, and the pool
    /// has a buffer to spare.
    fn read_ahead(&mut self) {
        let more = self.next.as_ref().is_some_and(|n| n.at < n.end);
        if more
            && self.queued.load(Ordering::Acquire) < AHEAD
            && let Some(permit) = self.pool.spare()
        {
            self.start(Some(permit));
        }
    }

    fn start(&mut self, permit: Option<OwnedSemaphorePermit>) {
        if let Some(run) = self.next.take() {
            self.run = Some(tokio::task::spawn_blocking(move || run.go(permit)));
        }
    }
}

/// Reads on one blocking thread: a chunk is read and hashed, handed over, and the next one follows
/// while fewer than [`AHEAD`] wait and the pool has a buffer to spare; then the run ends and
/// gives back where the next one starts (the body starts it when the connection takes a chunk).
struct Run {
    src: Arc<BlobSource>,
    pool: Arc<Chunks>,
    at: u64,
    end: u64,
    /// For a blob sent whole: the digest so far. The last chunk is handed over only if the digest
    /// matches.
    hasher: Option<Hasher>,
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
}

impl Run {
    fn go(mut self, mut permit: Option<OwnedSemaphorePermit>) -> std::io::Result<Self> {
        loop {
            let left = self.end - self.at;
            let len = if permit.is_some() { left.min(CHUNK as u64) } else { left };
            let bytes = read(&self.src, &self.pool, permit.take(), self.at, len, self.hasher.as_mut())?;
            self.at += len;
            if self.at >= self.end {
                verify(self.hasher.take(), &self.src.digest, self.src.size, &self.src.place)?;
            }
            self.queued.fetch_add(1, Ordering::AcqRel);
            // The body is gone: nobody wants the rest.
            if self.tx.send(bytes).is_err() || self.at >= self.end || self.queued.load(Ordering::Acquire) >= AHEAD {
                return Ok(self);
            }
            match self.pool.spare() {
                Some(p) => permit = Some(p),
                None => return Ok(self),
            }
        }
    }
}

/// Reads `len` bytes at `at` of the blob, into a pooled buffer if given a permit, and hashes
/// them if given a hasher, [`PIECE`] by [`PIECE`]: each piece is hashed while it is still in the
/// cache the read put it in.
fn read(
    src: &BlobSource,
    pool: &Arc<Chunks>,
    permit: Option<OwnedSemaphorePermit>,
    at: u64,
    len: u64,
    mut hasher: Option<&mut Hasher>,
) -> std::io::Result<Bytes> {
    let mut read = |buf: &mut [u8]| {
        let mut at = src.offset + at;
        for piece in buf.chunks_mut(PIECE) {
            let read = src.file.read_exact_at(piece, at);
            read.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", src.place)))?;
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(piece);
            }
            at += piece.len() as u64;
        }
        Ok(())
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
    Mismatch::check(digest, size, found, len)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{place}: changed on disk: {e}")))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use super::*;

    /// A blob of `len` bytes at offset 3 of a file, whose digest is `digest` if given (a wrong one
    /// plays a file changed after start) or its own.
    fn blob(len: usize, digest: Option<Digest>) -> (tempfile::NamedTempFile, BlobSource, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"hdr").unwrap();
        file.write_all(&bytes).unwrap();
        let mut hasher = Hasher::default();
        hasher.update(&bytes);
        let digest = digest.unwrap_or_else(|| hasher.finish().0);
        let volumes = crate::volume::input::Volumes::file(file.path()).unwrap();
        let src = BlobSource { file: Arc::new(volumes), place: "b.tar".into(), offset: 3, size: len as u64, digest };
        (file, src, bytes)
    }

    /// Sends bytes `start..end` as a connection would, pausing between chunks if `slow` (so that
    /// runs stop at `AHEAD` and start again); returns the bytes, the error that ended them, and
    /// what the body reported.
    fn send(
        src: BlobSource,
        start: u64,
        end: u64,
        pool: &Arc<Chunks>,
        slow: bool,
    ) -> (Vec<u8>, Option<String>, u64, Outcome) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ended = Arc::new(Mutex::new(None));
        let mut body = Body::blob(src, start, end, pool);
        let told = Arc::clone(&ended);
        body.on_end(Box::new(move |n, outcome| *told.lock().unwrap() = Some((n, outcome))));
        let (got, failed) = rt.block_on(async move {
            let (mut got, mut failed) = (Vec::new(), None);
            loop {
                match std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await {
                    Some(Ok(frame)) => got.extend_from_slice(&frame.into_data().unwrap()),
                    Some(Err(e)) => {
                        failed = Some(e.to_string());
                        break;
                    }
                    None => break,
                }
                if slow {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            (got, failed)
        });
        let (sent, outcome) = ended.lock().unwrap().take().unwrap();
        (got, failed, sent, outcome)
    }

    #[test]
    fn a_blob_sent_whole_comes_in_order_whether_the_client_keeps_up_or_not() {
        let size = 5 * CHUNK + PIECE + 17;
        for (slow, budget) in [(false, 16 * CHUNK), (true, 16 * CHUNK), (false, 4 * CHUNK)] {
            let (_file, src, bytes) = blob(size, None);
            let (got, failed, sent, outcome) = send(src, 0, size as u64, &Chunks::new(budget), slow);
            assert_eq!(failed, None);
            assert!(got == bytes, "slow {slow}, budget {budget}: the bytes differ");
            assert_eq!((sent, outcome), (size as u64, Outcome::Complete));
        }
    }

    #[test]
    fn a_blob_whose_bytes_changed_loses_its_last_chunk_and_is_cut() {
        let size = 3 * CHUNK + 5;
        let (_file, src, bytes) = blob(size, Some(Digest::of_bytes(b"something else")));
        // A slow client: the mismatch is found while chunks before it still wait to be sent.
        let (got, failed, sent, outcome) = send(src, 0, size as u64, &Chunks::new(16 * CHUNK), true);
        assert_eq!(got.len(), 3 * CHUNK, "every chunk but the last, which held the mismatch");
        assert!(bytes.starts_with(&got));
        assert!(failed.as_deref().is_some_and(|e| e.contains("b.tar: changed on disk")), "{failed:?}");
        assert_eq!(sent, got.len() as u64);
        assert!(matches!(outcome, Outcome::Cut(why) if why.contains("changed on disk")));
    }

    #[test]
    fn ranges_are_sent_as_read_and_small_ones_need_no_pool_buffer() {
        let size = 2 * CHUNK + 9;
        let (_file, src, bytes) = blob(size, Some(Digest::of_bytes(b"not checked on a range")));
        let (got, failed, ..) = send(src, 7, size as u64, &Chunks::new(4 * CHUNK), true);
        assert_eq!(failed, None);
        assert!(got == bytes[7..], "the range differs");
        let (_file, src, bytes) = blob(100, None);
        let pool = Chunks::new(4 * CHUNK);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let held: Vec<_> = (0..4).map(|_| rt.block_on(Arc::clone(&pool).permit()).unwrap()).collect();
        let (got, failed, ..) = send(src, 0, 100, &pool, false);
        assert_eq!((got, failed), (bytes, None), "a small blob is served while the pool is empty");
        drop(held);
    }
}
