//! Reading a blob on another thread while the caller writes it out.
//!
//! A sink copies each blob from a verifying reader to its output: reading it (a copy out of the
//! page cache), hashing it and writing it (a copy into the page cache, or a socket) took turns on
//! one thread. [`ReadAhead`] moves the reading and hashing onto a thread of its own, which fills a
//! few small buffers ahead of the caller (so the bytes are still in a cache when the caller copies
//! them): the write of one buffer overlaps the hash of the next. The verification stays in the
//! reader: a mismatch the reading thread finds is the error of the caller's read that reaches it,
//! before the end of the stream.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use crate::archive::read_some;

/// Size of one buffer: a hand-over costs nothing next to hashing it, and the few in flight stay
/// in the cache until the caller copies them.
const BUF_SIZE: usize = 256 << 10;

/// Buffers filled and not yet taken by the caller, at most.
const IN_FLIGHT: usize = 4;

/// What the reading thread sends: a filled buffer, an empty one at the end, or the read's error.
type Filled = io::Result<Vec<u8>>;

/// Reads `src` on its own thread, [`IN_FLIGHT`] buffers ahead of the caller.
pub struct ReadAhead {
    filled: Option<Receiver<Filled>>,
    /// Buffers the caller is done with, for the reading thread to fill again.
    spare: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    state: State,
    reader: Option<JoinHandle<()>>,
}

#[derive(PartialEq)]
enum State {
    Reading,
    Ended,
    Failed,
}

impl ReadAhead {
    pub fn new(mut src: Box<dyn Read + Send>) -> Self {
        let (send, filled) = sync_channel::<Filled>(IN_FLIGHT);
        let (spare, spares) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let reader = thread::spawn(move || {
            loop {
                let mut buf = spares.try_recv().unwrap_or_default();
                buf.resize(BUF_SIZE, 0);
                let read = read_some(&mut src, &mut buf).map(|n| {
                    buf.truncate(n);
                    buf
                });
                let last = !matches!(&read, Ok(b) if !b.is_empty());
                // The caller has gone (an error on its side): stop reading.
                if send.send(read).is_err() || last {
                    return;
                }
            }
        });
        ReadAhead { filled: Some(filled), spare, cur: Vec::new(), pos: 0, state: State::Reading, reader: Some(reader) }
    }

    /// Takes the next buffer; `false` at the end of the stream.
    fn next_buffer(&mut self) -> io::Result<bool> {
        let Some(filled) = &self.filled else { return Ok(false) };
        let next = match filled.recv() {
            Ok(next) => next,
            // It always sends its end or its error first: it stopped (panicked) midway.
            Err(_) => Err(io::Error::other("the reading thread stopped")),
        };
        match next {
            Ok(buf) if buf.is_empty() => {
                self.state = State::Ended;
                Ok(false)
            }
            Ok(buf) => {
                let done = std::mem::replace(&mut self.cur, buf);
                let _ = self.spare.try_send(done);
                self.pos = 0;
                Ok(true)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Ended => return Ok(0),
            State::Failed => return Err(io::Error::other("the read failed before")),
            State::Reading => {}
        }
        if self.pos == self.cur.len() && !self.next_buffer()? {
            return Ok(0);
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    /// Stops the reading thread (its next hand-over fails) and waits for it, so nothing reads the
    /// source once the caller has given up on it.
    fn drop(&mut self) {
        drop(self.filled.take());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Digest, Mismatch, VerifyingReader};

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect()
    }

    #[test]
    fn the_caller_reads_every_byte_in_order() {
        for n in [0, 1, BUF_SIZE - 1, BUF_SIZE, 9 * BUF_SIZE + 17] {
            let bytes = data(n);
            let mut got = Vec::new();
            ReadAhead::new(Box::new(std::io::Cursor::new(bytes.clone()))).read_to_end(&mut got).unwrap();
            assert!(got == bytes, "{n} bytes");
        }
    }

    #[test]
    fn a_mismatch_found_ahead_fails_the_callers_read_and_every_read_after() {
        let bytes = data(3 * BUF_SIZE);
        let mut bad = bytes.clone();
        bad[BUF_SIZE + 3] ^= 1;
        let verifying = VerifyingReader::new(std::io::Cursor::new(bad), Digest::of_bytes(&bytes), bytes.len() as u64);
        let mut ahead = ReadAhead::new(Box::new(verifying));
        let e = ahead.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Digest { .. })), "{e}");
        assert!(ahead.read(&mut [0u8; 16]).is_err(), "a read after the error is no end of stream");
    }

    #[test]
    fn a_caller_that_gives_up_stops_the_reading_thread() {
        let mut ahead = ReadAhead::new(Box::new(std::io::repeat(1)));
        ahead.read_exact(&mut [0u8; 1000]).unwrap();
        drop(ahead);
    }
}
