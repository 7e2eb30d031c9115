//! Time bounds for everything the registry client waits on, so that a registry that stalls,
//! trickles or never answers cannot hold airlock for long. One setting, `--timeout` (default
//! [`DEFAULT_TIMEOUT`]), drives them:
//!
//! - **Idle**: a quarter of it (30 s by default) bounds each wait of one request — the TCP
//!   connection with its TLS handshake, sending the request head, the answer's head (in total, not
//!   per byte), and each read or write of a body.
//! - **Silence**: an operation whose attempts get no answer at all stops retrying once another
//!   attempt could end past the whole `--timeout` since the silence began (it counts the longest
//!   silent attempt so far), and says so. The answer to the `PUT` that completes a blob upload
//!   may take the whole `--timeout` (the registry may check and move a large blob first); an
//!   attempt that lasted longer than its silent waits could (it sent a body) is retried like any
//!   other failure.
//! - **Throughput**: a transfer that moves under [`MIN_RATE`] bytes a second over a [`WINDOW`] is
//!   aborted as [`Stalled`] and the request retried (a download resumes with `Range`): the
//!   [`Watchdog`] around every body received, and [`super::socket`] for everything sent (counted
//!   per system call, over the time spent sending).
//!
//! Worst cases, default settings: a registry that answers nothing fails in under two minutes
//! (a silent https registry: three 30 s attempts; a silent loopback one, whose https and http are
//! both tried, two); one trickling a body is cut after 30 s per attempt, that is at most
//! `(1 + retries) × 30 s` per request, and a blob download resumes at most 5 times.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// How long a registry may stay silent before an operation gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Slower than this over a whole [`WINDOW`] is a stalled transfer.
pub(super) const MIN_RATE: u64 = 1024;
pub(super) const WINDOW: Duration = Duration::from_secs(30);

/// The time bounds of one client, from `--timeout` and `--retries`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    /// The longest single wait of a request.
    pub idle: Duration,
    /// How long an operation keeps retrying a registry that does not answer.
    pub silence: Duration,
    pub max_retries: u32,
}

impl Pace {
    pub fn new(timeout: Duration, max_retries: u32) -> Self {
        let silence = timeout.max(Duration::from_secs(1));
        Pace { idle: (silence / 4).max(Duration::from_millis(250)), silence, max_retries }
    }

    /// The longest an attempt can wait without an answer: two idle waits (a loopback registry's
    /// https and http probes) or the answer to an upload's last `PUT`; plus a little slack.
    pub fn longest_silence(&self) -> Duration {
        (2 * self.idle).max(self.silence) + Duration::from_secs(1)
    }
}

/// Fails a body being received that moves fewer than [`MIN_RATE`] bytes a second over a
/// [`WINDOW`]. (What is sent is measured at the socket: [`super::socket`].)
pub(super) struct Watchdog<R> {
    inner: R,
    since: Instant,
    moved: u64,
}

impl<R: Read> Watchdog<R> {
    pub fn new(inner: R) -> Self {
        Watchdog { inner, since: Instant::now(), moved: 0 }
    }
}

impl<R: Read> Read for Watchdog<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.moved += n as u64;
        if n > 0 && self.since.elapsed() >= WINDOW {
            if self.moved < MIN_RATE * WINDOW.as_secs() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, Stalled));
            }
            (self.since, self.moved) = (Instant::now(), 0);
        }
        Ok(n)
    }
}

/// A transfer slower than [`MIN_RATE`] over a [`WINDOW`]: the error inside the `io::Error` that
/// cut it, so the retry loop tells it from a registry that did not answer.
#[derive(Debug)]
pub(super) struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the transfer moved under {} KiB/s for {} s", MIN_RATE / 1024, WINDOW.as_secs())
    }
}

impl std::error::Error for Stalled {}

impl Stalled {
    /// Whether `e` is a stalled transfer.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Stalled>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_timeout_bounds_each_wait_to_a_quarter() {
        let pace = Pace::new(DEFAULT_TIMEOUT, 5);
        assert_eq!(pace.idle, Duration::from_secs(30));
        assert_eq!(pace.silence, Duration::from_secs(120));
        assert_eq!(Pace::new(Duration::ZERO, 0).idle, Duration::from_millis(250));
    }

    #[test]
    fn a_fast_transfer_passes_the_watchdog() {
        let data = vec![7u8; 2 << 20];
        let mut dog = Watchdog::new(&data[..]);
        let mut buf = vec![0u8; 1 << 20];
        assert_eq!(dog.read(&mut buf).unwrap(), 1 << 20);
        dog.since -= WINDOW;
        assert_eq!(dog.read(&mut buf).unwrap(), 1 << 20);
        assert_eq!(dog.moved, 0, "a new window began");
    }

    #[test]
    fn a_trickle_trips_the_watchdog_after_its_window() {
        let data = [7u8; 100];
        let mut dog = Watchdog::new(&data[..]);
        let mut buf = [0u8; 10];
        assert_eq!(dog.read(&mut buf).unwrap(), 10);
        dog.since -= WINDOW;
        let err = dog.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Stalled::is(&err) && err.to_string().contains("1 KiB/s"), "{err}");
    }
}
