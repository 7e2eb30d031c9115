//! A connection whose client stops reading is closed after a while. hyper has a timeout for
//! reading a request's headers but none for writing a response: a client that opens a blob and
//! never reads would hold the chunk its connection is writing (drawn from the pool every
//! connection shares) until TCP gives up, hours later, and enough such clients would starve the
//! rest. [`Stalling`] wraps a stream so that a write that makes no progress fails after the given
//! time, or after a much shorter one while other responses wait for a chunk
//! ([`Pressure::starved`]): a stalled client then gives its chunk up within seconds.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::serve::chunks::Pressure;

/// How long a write may wait while others wait for a chunk.
pub const STARVED_STALL: Duration = Duration::from_secs(2);

pub struct Stalling<I> {
    inner: I,
    limit: Duration,
    pressure: Arc<dyn Pressure>,
    /// When the write under way started waiting; cleared by any progress.
    since: Option<Instant>,
    /// The next time to look again while a write waits.
    check: Option<Pin<Box<Sleep>>>,
}

impl<I> Stalling<I> {
    pub fn new(inner: I, limit: Duration, pressure: Arc<dyn Pressure>) -> Self {
        Stalling { inner, limit, pressure, since: None, check: None }
    }

    /// Turns a pending write into an error once it has waited `limit`, or [`STARVED_STALL`]
    /// while others wait for a chunk.
    fn waited<T>(&mut self, poll: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            (self.since, self.check) = (None, None);
            return poll;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        let step = STARVED_STALL.min(self.limit);
        loop {
            let check = self.check.get_or_insert_with(|| Box::pin(tokio::time::sleep(step)));
            if check.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let waited = since.elapsed();
            let why = if waited >= self.limit {
                format!("the client read nothing for {} s", self.limit.as_secs())
            } else if waited >= STARVED_STALL && self.pressure.starved() {
                format!("the client read nothing for {} s while others waited for read buffers", waited.as_secs())
            } else {
                check.as_mut().reset(tokio::time::Instant::now() + step.min(self.limit - waited));
                continue;
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Stalling<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Stalling<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.waited(poll, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.waited(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.waited(poll, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that never takes a byte.
    struct Never;

    impl AsyncWrite for Never {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Starved(bool);

    impl Pressure for Starved {
        fn starved(&self) -> bool {
            self.0
        }
    }

    /// How long a write to [`Never`] takes to fail.
    fn fails_after(limit: Duration, starved: bool) -> Duration {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut s = Stalling::new(Never, limit, Arc::new(Starved(starved)));
        let started = std::time::Instant::now();
        let err = rt.block_on(std::future::poll_fn(|cx| Pin::new(&mut s).poll_write(cx, b"x"))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        started.elapsed()
    }

    #[test]
    fn a_write_the_client_never_takes_fails_after_the_limit() {
        assert!(fails_after(Duration::from_millis(50), false) >= Duration::from_millis(50));
    }

    #[test]
    fn a_stalled_write_fails_early_only_while_others_wait_for_a_chunk() {
        let starved = fails_after(Duration::from_secs(60), true);
        assert!(starved >= STARVED_STALL && starved < STARVED_STALL * 2, "{starved:?}");
        let calm = fails_after(STARVED_STALL * 2, false);
        assert!(calm >= STARVED_STALL * 2, "{calm:?}");
    }
}
