//! Blob downloads that survive a broken connection. [`Client::open_blob`] returns a reader of a
//! blob of known size that, when the body fails (a reset, a stall cut by the watchdog) or ends
//! before the size (a close-delimited body cut short), asks again from where it stopped with
//! `Range: bytes=<offset>-` — at most [`MAX_RESUMES`] times per blob. Both the bundle writer and
//! the `--cache` fill read blobs through it, so resuming works the same with and without a cache.
//! Content is not checked here: callers wrap the reader in a [`crate::digest::VerifyingReader`].

use std::io::{self, Read};
use std::sync::Arc;

use super::Client;
use crate::digest::Digest;
use crate::error::Result;

/// How many times one blob's download is resumed before its failure is final.
pub const MAX_RESUMES: u32 = 5;

impl Client {
    /// `GET` a blob of `size` bytes from byte `offset` on, resuming a body that breaks off.
    pub fn open_blob(
        self: &Arc<Self>,
        repo: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>> {
        let inner = self.get_blob(repo, digest, offset)?;
        Ok(Box::new(Resuming {
            client: self.clone(),
            repo: repo.to_owned(),
            digest: digest.clone(),
            size,
            inner,
            offset,
            resumes: 0,
        }))
    }
}

struct Resuming {
    client: Arc<Client>,
    repo: String,
    digest: Digest,
    size: u64,
    inner: Box<dyn Read + Send>,
    offset: u64,
    resumes: u32,
}

impl Resuming {
    /// Whether the failure `e` of the body at `self.offset` is worth resuming from.
    fn resumable(&self, e: &io::Error) -> bool {
        self.resumes < MAX_RESUMES && e.kind() != io::ErrorKind::InvalidData
    }

    fn resume(&mut self, e: io::Error) -> io::Result<()> {
        self.resumes += 1;
        self.inner = self
            .client
            .get_blob(&self.repo, &self.digest, self.offset)
            .map_err(|re| io::Error::new(e.kind(), format!("{e}; resuming at byte {} failed: {re}", self.offset)))?;
        Ok(())
    }
}

impl Read for Resuming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let err = match self.inner.read(buf) {
                Ok(0) if !buf.is_empty() && self.offset < self.size => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the body ended at byte {} of {}", self.offset, self.size),
                ),
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            if !self.resumable(&err) {
                return Err(err);
            }
            self.resume(err)?;
        }
    }
}
