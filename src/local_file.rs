//! Files airlock reads from the local disk (a source archive, the files of an `oci:` layout, a key,
//! an image list) are opened so that a hostile path cannot stall or flood it: the open does not
//! block (a FIFO would otherwise wait forever for a writer), only regular files are read, and
//! small files are size-checked before a byte of them is read.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Reads at an offset without a shared cursor, so several threads can read one input at once
/// (a bundle file, or a split bundle's parts: [`crate::volume::input::Volumes`]).
pub trait ReadAt: Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;

    /// Fills `buf` from `offset`; fewer bytes than asked for is an `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

/// The largest minisign key file accepted.
pub const MAX_KEY_BYTES: u64 = 4096;
/// The largest image list accepted.
pub const MAX_LIST_BYTES: u64 = 4 << 20;
/// The largest `--ca-cert` file accepted (a bundle of a few hundred PEM certificates).
pub const MAX_CA_BYTES: u64 = 1 << 20;
/// The largest docker `config.json` accepted.
pub const MAX_DOCKER_CONFIG_BYTES: u64 = 4 << 20;
/// The largest password accepted on stdin.
pub const MAX_PASSWORD_BYTES: u64 = 64 << 10;

/// Opens `path` for reading if it is a regular file (after symlinks); returns it and its length.
/// A FIFO, socket or device is refused without waiting on it.
pub fn open_regular(path: &Path, place: &str) -> Result<(fs_err::File, u64)> {
    let f = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(place, e))?;
    let meta = f.metadata().at(|| place.to_owned())?;
    if !meta.is_file() {
        let kind = kind_of(&meta.file_type());
        return Err(Error::bad(place, format!("is {kind}, not a regular file")));
    }
    Ok((f, meta.len()))
}

/// Reads a small text file whole, refusing it unread if it is larger than `max` bytes.
pub fn read_text(path: &Path, max: u64, what: &str) -> Result<String> {
    let bytes = read_small(path, max, what)?;
    String::from_utf8(bytes).map_err(|_| Error::bad(path.display().to_string(), format!("{what} is not UTF-8 text")))
}

/// Reads a small file whole, refusing it unread if it is larger than `max` bytes (and after
/// `max` if it grows while read).
pub fn read_small(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let place = path.display().to_string();
    let (f, len) = open_regular(path, &place)?;
    if len > max {
        return Err(Error::bad(&place, format!("{len} bytes is too large for {what} (at most {max})")));
    }
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).at(|| place.clone())?;
    if bytes.len() as u64 > max {
        return Err(Error::bad(&place, format!("too large for {what} (at most {max} bytes)")));
    }
    Ok(bytes)
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_dir() {
        "a directory"
    } else {
        "something other than a file"
    }
}
