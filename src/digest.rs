//! Content digests and the readers/writers that compute them while bytes flow.
//!
//! A [`Digest`] can only hold a lowercase `sha256:<64 hex>` string, so a path or URL built from one
//! is always safe. [`HashingReader`] and [`HashingWriter`] hash on the fly; [`VerifyingReader`]
//! turns a size or digest mismatch into an I/O error at the point it is detected, so no caller can
//! forget to check.

use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated `sha256:` content digest.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

/// Why a string is not a digest airlock accepts.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a sha256 digest (want `sha256:` and 64 lowercase hex digits)")]
pub struct DigestError {
    pub text: String,
}

impl Digest {
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let ok = text
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok { Ok(Digest(text.to_owned())) } else { Err(DigestError { text: crate::error::shown(text) }) }
    }

    /// Parses the 64 hex digits alone (legacy docker-save names such as `<hex>.json`).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        Self::parse(&format!("sha256:{hex}"))
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// Where the blob lives in an OCI image layout: `blobs/sha256/<hex>`.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }

    /// A short form for tables: the first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 with a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> (Digest, u64) {
        let hex = hex::encode(self.sha.finalize());
        (Digest(format!("sha256:{hex}")), self.len)
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Hasher::default() }
    }

    pub fn finish(self) -> (Digest, u64) {
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::default() }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        let (digest, len) = self.hasher.finish();
        (self.inner, digest, len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Remembers whether a read failed, so the error of a copy can be blamed on the reading or the
/// writing side.
pub struct Watched<R> {
    pub inner: R,
    pub failed: bool,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

/// What a [`VerifyingReader`] found wrong, carried inside an `io::Error` of kind `InvalidData`.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("size mismatch: expected {expected} bytes, found {found}")]
    Size { expected: u64, found: u64 },
    #[error("digest mismatch: expected {expected}, found {found}")]
    Digest { expected: Digest, found: Digest },
}

impl Mismatch {
    /// Finds a mismatch inside an I/O error produced by a [`VerifyingReader`].
    pub fn from_io(err: &io::Error) -> Option<&Mismatch> {
        err.get_ref().and_then(|e| e.downcast_ref::<Mismatch>())
    }

    /// Checks what was hashed (`found`, over `len` bytes) against what was expected, the size
    /// first; a mismatch is an `InvalidData` error carrying it (see [`Mismatch::from_io`]).
    pub fn check(expected: &Digest, size: u64, found: Digest, len: u64) -> io::Result<()> {
        let m = if len != size {
            Mismatch::Size { expected: size, found: len }
        } else if found != *expected {
            Mismatch::Digest { expected: expected.clone(), found }
        } else {
            return Ok(());
        };
        Err(io::Error::new(io::ErrorKind::InvalidData, m))
    }
}

/// Reads exactly `size` bytes whose sha256 must be `digest`; anything else is an error on the read
/// that detects it (too many bytes, too few, or the wrong hash at EOF).
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        VerifyingReader { inner, hasher: Hasher::default(), expected, size, done: false }
    }

    fn fail(m: Mismatch) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, m)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        // Ask for one byte past the expected size so an over-long stream is caught.
        let left = self.size - self.hasher.len();
        let want = buf.len().min(usize::try_from(left + 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.hasher.update(&buf[..n]);
        let seen = self.hasher.len();
        if seen > self.size {
            return Err(Self::fail(Mismatch::Size { expected: self.size, found: seen }));
        }
        if n == 0 {
            self.done = true;
            let (found, len) = std::mem::take(&mut self.hasher).finish();
            Mismatch::check(&self.expected, self.size, found, len)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_accepts_only_lowercase_sha256() {
        assert!(Digest::parse(EMPTY).is_ok());
        assert!(Digest::parse(&EMPTY.to_uppercase()).is_err());
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse(&EMPTY[..70]).is_err());
    }

    #[test]
    fn verifying_reader_accepts_exact_content() {
        let mut out = Vec::new();
        let mut r = VerifyingReader::new(&b""[..], Digest::parse(EMPTY).unwrap(), 0);
        r.read_to_end(&mut out).unwrap();
        let data = b"hello world";
        let d = Digest::of_bytes(data);
        let mut r = VerifyingReader::new(&data[..], d, data.len() as u64);
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn verifying_reader_rejects_flipped_byte_and_wrong_sizes() {
        let data = b"hello world";
        let d = Digest::of_bytes(data);
        let mut sink = Vec::new();
        let e = VerifyingReader::new(&b"hello worle"[..], d.clone(), 11).read_to_end(&mut sink).unwrap_err();
        assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Digest { .. })));
        let e = VerifyingReader::new(&b"hello"[..], d.clone(), 11).read_to_end(&mut sink).unwrap_err();
        assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Size { expected: 11, found: 5 })));
        let e = VerifyingReader::new(&b"hello world!"[..], d, 11).read_to_end(&mut sink).unwrap_err();
        assert!(matches!(Mismatch::from_io(&e), Some(Mismatch::Size { expected: 11, found: 12 })));
    }
}
