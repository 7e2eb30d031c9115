//! The registry client's TCP connections, opened here instead of by ureq so that what is sent is
//! held to the same rate as what is received. ureq writes a buffer with `write_all` under a
//! per-call timeout, which every byte the registry takes starts afresh, so an upload the registry
//! drained a little at a time, or stopped taking once the socket buffers were full, ran on for
//! minutes. Here a blocked write waits at most a [`TICK`] per system call, and a [`Meter`] counts
//! the bytes handed to the socket over the last [`WINDOW`] of time spent sending: under
//! [`MIN_RATE`] a second over a whole window, the send fails as stalled (the rule
//! [`super::pace::Watchdog`] holds a received body to). Time a connection spends not sending —
//! reading an answer, idle in the pool, waiting for its source — does not count, so a slow but
//! moving link, or a slow disk, is never cut. Connecting and reading are as ureq does them.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle, Transport,
};

use super::pace::{MIN_RATE, Stalled, WINDOW};

/// The longest a blocked write waits before the rate is checked again.
const TICK: Duration = Duration::from_secs(1);

/// Opens plain TCP connections as [`PacedTcp`]; passes on one an earlier connector made (a
/// proxy's).
#[derive(Debug, Default)]
pub(super) struct PacedTcpConnector;

impl<In: Transport> Connector<In> for PacedTcpConnector {
    type Out = Either<In, PacedTcp>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let stream = connect(details)?;
        let config = details.config;
        if config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let buffers = LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size());
        let transport =
            PacedTcp { stream: Arc::new(stream), buffers, meter: Meter::default(), read_wait: None, write_wait: None };
        (details.register_shutdown)(Arc::downgrade(&transport.stream) as Weak<dyn ShutdownHandle>)?;
        Ok(Some(Either::B(transport)))
    }
}

/// Tries each resolved address in turn, each with an equal share of the connect timeout.
fn connect(details: &ConnectionDetails) -> Result<TcpStream, ureq::Error> {
    let addrs = details.addrs.iter().collect::<Vec<_>>();
    let share = details.timeout.not_zero().map(|t| (*t / addrs.len().max(1) as u32).max(Duration::from_millis(10)));
    let mut last = ureq::Error::ConnectionFailed;
    for addr in addrs {
        let tried = match share {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        };
        match tried {
            Ok(stream) => return Ok(stream),
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                last = ureq::Error::Timeout(details.timeout.reason);
            }
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

/// One TCP connection whose sends are held to [`MIN_RATE`].
pub(super) struct PacedTcp {
    /// Shared (weakly) with the agent, which may shut it down from another thread.
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    meter: Meter,
    /// The socket's timeouts as last set, to set them only when they change.
    read_wait: Option<Option<Duration>>,
    write_wait: Option<Duration>,
}

impl fmt::Debug for PacedTcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacedTcp").field("peer", &self.stream.peer_addr().ok()).finish()
    }
}

impl Transport for PacedTcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    /// Sends the first `amount` bytes of the output buffer. Fails when no byte went out for the
    /// whole per-write timeout (as ureq's own transport does) or when the [`Meter`] says stalled.
    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let budget = timeout.not_zero().map(|t| *t);
        let (mut sent, mut last_byte) = (0, Instant::now());
        while sent < amount {
            let left = budget.map_or(TICK, |b| b.saturating_sub(last_byte.elapsed()));
            self.set_write_wait(left.clamp(Duration::from_millis(1), TICK))?;
            let start = Instant::now();
            let n = match (&*self.stream).write(&self.buffers.output()[sent..amount]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => n,
                Err(e) if is_wait(&e) => 0,
                Err(e) => return Err(e.into()),
            };
            self.meter.sent(start.elapsed(), n as u64);
            if n > 0 {
                sent += n;
                last_byte = Instant::now();
            }
            if self.meter.stalled() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, Stalled).into());
            }
            if n == 0 && budget.is_some_and(|b| last_byte.elapsed() >= b) {
                return Err(ureq::Error::Timeout(timeout.reason));
            }
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let wait = timeout.not_zero().map(|t| *t);
        if self.read_wait != Some(wait) {
            self.stream.set_read_timeout(wait)?;
            self.read_wait = Some(wait);
        }
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&*self.stream).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_wait(&e) => return Err(ureq::Error::Timeout(timeout.reason)),
                other => break other?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// Whether a pooled connection can be used again: nothing to read, and not closed.
    fn is_open(&mut self) -> bool {
        let probe = || -> io::Result<bool> {
            self.stream.set_nonblocking(true)?;
            let open = matches!((&*self.stream).read(&mut [0u8]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            self.stream.set_nonblocking(false)?;
            Ok(open)
        };
        probe().unwrap_or(false)
    }
}

impl PacedTcp {
    fn set_write_wait(&mut self, wait: Duration) -> io::Result<()> {
        if self.write_wait != Some(wait) {
            self.stream.set_write_timeout(Some(wait))?;
            self.write_wait = Some(wait);
        }
        Ok(())
    }
}

/// A timed-out or interrupted system call, to be tried again.
fn is_wait(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// Bytes sent, per second of time spent sending, over the last [`WINDOW`] of it.
#[derive(Debug, Default)]
struct Meter {
    /// Time spent in sends so far.
    busy: Duration,
    /// (second of `busy`, bytes sent in it), for the seconds still in the window.
    seconds: VecDeque<(u64, u64)>,
}

impl Meter {
    fn sent(&mut self, took: Duration, bytes: u64) {
        self.busy += took;
        let now = self.busy.as_secs();
        match self.seconds.back_mut() {
            Some((second, n)) if *second == now => *n += bytes,
            _ => self.seconds.push_back((now, bytes)),
        }
        while self.seconds.front().is_some_and(|(second, _)| second + WINDOW.as_secs() <= now) {
            self.seconds.pop_front();
        }
    }

    /// Under [`MIN_RATE`] over a whole window.
    fn stalled(&self) -> bool {
        self.busy >= WINDOW && self.seconds.iter().map(|(_, n)| n).sum::<u64>() < MIN_RATE * WINDOW.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_trickle_is_stalled_once_the_burst_leaves_the_window() {
        let mut meter = Meter::default();
        meter.sent(Duration::from_millis(10), 8 << 20);
        for _ in 0..29 {
            meter.sent(TICK, 100);
            assert!(!meter.stalled(), "the burst still counts");
        }
        meter.sent(TICK, 100);
        meter.sent(TICK, 100);
        assert!(meter.stalled());
    }

    #[test]
    fn a_slow_but_steady_send_is_never_stalled() {
        let mut meter = Meter::default();
        for _ in 0..300 {
            meter.sent(TICK, 2 * MIN_RATE);
            assert!(!meter.stalled());
        }
    }
}
