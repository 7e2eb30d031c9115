//! Tar archives, read one strict way. Every tar airlock reads (a bundle, a `docker save` archive,
//! an OCI archive) goes through [`Reader`], so that what airlock accepts is what GNU tar, Go's
//! archive/tar and Python's tarfile all read the same way: anything on which they disagree is
//! refused rather than interpreted. That means no entry type but regular files, directories and
//! links; no data on a directory or link; a PAX key given once, no sparse files, no global
//! headers; one name per entry (not a GNU long name *and* a PAX path); UTF-8 names; no duplicate
//! names however spelled; two zero blocks at the end and nothing after them but zeros. Extension
//! headers are size-capped before they are read ([`MAX_PAX_BYTES`], [`MAX_NAME_BYTES`]).
//!
//! [`Reader::next_entry`] yields each [`Entry`]'s header; [`Reader::body`] reads its data. The reader
//! never buffers a body: it skips what the caller did not read, by seeking when the input is a
//! file.

mod header;
mod name;
mod pax;

use std::collections::HashSet;
use std::io::{self, BufReader, Read};

pub use name::{normalise, resolve_dots};

use crate::error::{Error, Result, shown, shown_bytes};
use header::{BLOCK, Format, Header};

/// The longest entry or link name accepted (Linux `PATH_MAX`), checked before a GNU long name
/// is read.
pub const MAX_NAME_BYTES: u64 = 4096;
/// The largest PAX extended header accepted, checked before it is read.
pub const MAX_PAX_BYTES: u64 = 64 * 1024;
/// The most entries one archive may hold (each costs its name in memory).
pub const MAX_ENTRIES: usize = 1_000_000;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link and its target, as written.
    Symlink(String),
    /// A hard link and the (archive) name it links to, as written.
    HardLink(String),
}

/// One entry's header, once every rule above has been checked.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The normalised name ([`normalise`]); empty for `./` itself.
    pub name: String,
    /// The name as written, for messages.
    pub raw: String,
    pub kind: Kind,
    /// The size of its data (zero for anything but a file).
    pub size: u64,
    /// Where its data starts in the archive.
    pub offset: u64,
}

/// Where the reader reads from: anything readable; a file skips by seeking.
pub trait Input: Read {
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

/// A stream (a pipe, stdin, a network body): skipping reads.
pub struct Stream<R>(pub R);

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Input for Stream<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let got = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if got < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

impl Input for BufReader<fs_err::File> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        self.seek_relative(n)
    }
}

/// The extension headers seen before an entry.
#[derive(Default)]
struct Pending {
    /// The name of the first extension header, for messages.
    first: Option<String>,
    pax: Option<pax::Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// Reads a tar archive entry by entry.
pub struct Reader<R> {
    input: R,
    place: String,
    pos: u64,
    /// Data of the current entry not yet read, then its padding.
    left: u64,
    pad: u64,
    len: Option<u64>,
    plain: bool,
    seen: HashSet<String>,
    ended: bool,
}

impl<R: Input> Reader<R> {
    /// `place` names the archive in messages.
    pub fn new(input: R, place: impl Into<String>) -> Self {
        let place = place.into();
        Reader { input, place, pos: 0, left: 0, pad: 0, len: None, plain: false, seen: HashSet::new(), ended: false }
    }

    /// The archive's length, when known (a file): a truncated entry is named at its header.
    pub fn with_len(mut self, len: u64) -> Self {
        self.len = Some(len);
        self
    }

    /// Only plain ustar regular files with names in canonical form (a bundle).
    pub fn plain(mut self) -> Self {
        self.plain = true;
        self
    }

    /// How many bytes have been consumed.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next entry's header, or `None` at the end marker.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.ended {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let start = self.pos;
            let block = self.block()?.ok_or_else(|| self.truncated("it ends without an end-of-archive marker"))?;
            if block.iter().all(|b| *b == 0) {
                return self.end(&pending).map(|()| None);
            }
            let h = header::parse(&block)
                .map_err(|why| Error::bad(format!("{}: header at byte {start}", self.place), why))?;
            match h.kind {
                b'x' | b'L' | b'K' => self.extension(&h, &mut pending)?,
                _ => return self.entry(h, pending).map(Some),
            }
        }
    }

    /// Reads the current entry's data; what is left unread is skipped by the next call to
    /// [`Reader::next_entry`].
    pub fn body(&mut self) -> Body<'_, R> {
        Body { reader: self }
    }

    /// After the end marker, nothing but zeros may follow.
    pub fn finish(mut self) -> Result<()> {
        if !self.ended {
            return Err(Error::bad(&self.place, "the archive was not read to its end"));
        }
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = read_some(&mut self.input, &mut buf).map_err(|e| Error::io(&self.place, e))?;
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
                let at = self.pos + i as u64;
                return Err(Error::bad(
                    &self.place,
                    format!("trailing garbage after the end of the archive at byte {at}"),
                ));
            }
            self.pos += n as u64;
        }
    }

    /// The first zero block was read; the second must follow.
    fn end(&mut self, pending: &Pending) -> Result<()> {
        if let Some(first) = &pending.first {
            return Err(Error::bad(self.entry_place(first), "an extension header is not followed by an entry"));
        }
        let at = self.pos;
        match self.block()? {
            None => Err(self.truncated("its end-of-archive marker is cut short")),
            Some(b) if b.iter().any(|b| *b != 0) => {
                Err(Error::bad(&self.place, format!("trailing garbage after the end of the archive at byte {at}")))
            }
            Some(_) => {
                self.ended = true;
                Ok(())
            }
        }
    }

    /// Reads a PAX header or GNU long name into `pending`, refusing it before reading if too big.
    fn extension(&mut self, h: &Header, pending: &mut Pending) -> Result<()> {
        let raw = String::from_utf8_lossy(&h.name).into_owned();
        let at = self.entry_place(&raw);
        let (what, cap) = match h.kind {
            b'x' => ("a PAX extension header", MAX_PAX_BYTES),
            _ => ("a GNU long-name header", MAX_NAME_BYTES + 1),
        };
        if self.plain {
            return Err(Error::bad(at, format!("{what}, where only regular files are allowed")));
        }
        if h.size > cap {
            return Err(Error::bad(at, format!("{what} of {} bytes (at most {cap} are accepted)", h.size)));
        }
        let data = self.small_body(h.size, &at)?;
        pending.first.get_or_insert(raw);
        let twice = || Error::bad(&at, format!("{what} follows another one for the same entry"));
        match h.kind {
            b'x' if pending.pax.is_some() => return Err(twice()),
            b'x' => pending.pax = Some(pax::parse(&data).map_err(|why| Error::bad(&at, why))?),
            b'L' if pending.long_name.is_some() => return Err(twice()),
            b'L' => pending.long_name = Some(until_nul(data)),
            _ if pending.long_link.is_some() => return Err(twice()),
            _ => pending.long_link = Some(until_nul(data)),
        }
        Ok(())
    }

    fn small_body(&mut self, size: u64, at: &str) -> Result<Vec<u8>> {
        let mut data = vec![0u8; size as usize];
        self.input.read_exact(&mut data).map_err(|e| self.cut(e, at))?;
        let pad = padding(size);
        self.input.skip(pad).map_err(|e| self.cut(e, at))?;
        self.pos += size + pad;
        Ok(data)
    }

    /// Applies the extension headers to a header and checks the result.
    fn entry(&mut self, h: Header, pending: Pending) -> Result<Entry> {
        let pax = pending.pax.unwrap_or_default();
        let raw =
            one_name(pax.path, pending.long_name, h.name, "name").map_err(|why| self.bad_name(&pending.first, why))?;
        let at = self.entry_place(&raw);
        let size = match pax.size {
            Some(p) if h.size != 0 && p != h.size => {
                return Err(Error::bad(at, format!("PAX size {p} conflicts with header size {}", h.size)));
            }
            Some(p) => p,
            None => h.size,
        };
        let link = || one_name(pax.linkpath.clone(), pending.long_link.clone(), h.link.clone(), "link target");
        let kind = match h.kind {
            b'0' | 0 | b'7' if raw.ends_with('/') => {
                return Err(Error::bad(
                    at,
                    "a regular file whose name ends in `/` (other tar readers see a directory)",
                ));
            }
            b'0' | 0 | b'7' => Kind::File,
            b'5' => Kind::Dir,
            b'2' | b'1' => {
                let target = link().map_err(|why| Error::bad(&at, why))?;
                if target.is_empty() {
                    return Err(Error::bad(at, "link without a target"));
                }
                if h.kind == b'2' { Kind::Symlink(target) } else { Kind::HardLink(target) }
            }
            b'g' => return Err(Error::bad(at, "PAX global header is not accepted")),
            other => return Err(Error::bad(at, format!("unsupported entry type {:?}", other as char))),
        };
        self.check_plain(h.format, &kind, &raw, &at)?;
        if kind != Kind::File && size != 0 {
            let msg =
                format!("{} that carries {size} bytes of data (tar readers disagree on what follows it)", what(&kind));
            return Err(Error::bad(at, msg));
        }
        let name = normalise(&raw).map_err(|why| Error::bad(&at, why))?;
        self.admit(&name, size, &at)?;
        self.left = size;
        self.pad = padding(size);
        Ok(Entry { name, raw, kind, size, offset: self.pos })
    }

    fn check_plain(&self, format: Format, kind: &Kind, raw: &str, at: &str) -> Result<()> {
        if !self.plain {
            return Ok(());
        }
        if *kind != Kind::File {
            return Err(Error::bad(at, format!("{}, where only regular files are allowed", what(kind))));
        }
        if format != Format::Ustar {
            return Err(Error::bad(at, "not a plain ustar header (GNU or v7 headers are not used in bundles)"));
        }
        if normalise(raw).ok().as_deref() != Some(raw) {
            return Err(Error::bad(at, "entry name is not in canonical form"));
        }
        Ok(())
    }

    /// Refuses a name seen before, an entry count past the limit, data past the end of the file.
    fn admit(&mut self, name: &str, size: u64, at: &str) -> Result<()> {
        if !name.is_empty() && !self.seen.insert(name.to_owned()) {
            return Err(Error::bad(at, "duplicate entry"));
        }
        if self.seen.len() > MAX_ENTRIES {
            return Err(Error::bad(&self.place, format!("more than {MAX_ENTRIES} entries")));
        }
        let end = self.pos.saturating_add(size);
        match self.len {
            Some(len) if end > len => Err(Error::bad(
                at,
                format!(
                    "truncated archive: the entry's {size} bytes end at byte {end}, past the end of the file ({len} bytes)"
                ),
            )),
            _ => Ok(()),
        }
    }

    fn skip_rest(&mut self) -> Result<()> {
        let n = self.left + self.pad;
        if n > 0 {
            self.input.skip(n).map_err(|e| self.cut(e, &self.place.clone()))?;
            self.pos += n;
            self.left = 0;
            self.pad = 0;
        }
        Ok(())
    }

    /// One block, or `None` at a clean end of input.
    fn block(&mut self) -> Result<Option<[u8; BLOCK]>> {
        let mut block = [0u8; BLOCK];
        let n = read_some(&mut self.input, &mut block).map_err(|e| Error::io(&self.place, e))?;
        if n == 0 {
            return Ok(None);
        }
        if n < BLOCK {
            return Err(self.truncated("it ends in the middle of a header"));
        }
        self.pos += BLOCK as u64;
        Ok(Some(block))
    }

    fn entry_place(&self, raw: &str) -> String {
        format!("{}: entry `{}`", self.place, shown(raw))
    }

    fn bad_name(&self, first: &Option<String>, why: String) -> Error {
        let at = first
            .as_ref()
            .map_or_else(|| format!("{}: header at byte {}", self.place, self.pos), |f| self.entry_place(f));
        Error::bad(at, why)
    }

    fn truncated(&self, why: &str) -> Error {
        Error::bad(&self.place, format!("truncated archive: {why}"))
    }

    fn cut(&self, e: io::Error, at: &str) -> Error {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                Error::bad(at, "truncated archive: the entry ends past the end of the input")
            }
            _ => Error::io(at, e),
        }
    }
}

/// The current entry's data.
pub struct Body<'a, R> {
    reader: &'a mut Reader<R>,
}

impl<R: Input> Read for Body<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        if r.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(r.left).unwrap_or(usize::MAX));
        let n = r.input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated archive: the entry ends past the end of the input",
            ));
        }
        r.left -= n as u64;
        r.pos += n as u64;
        Ok(n)
    }
}

/// The name an entry goes by: a PAX record, a GNU long name or the header's own field, but not a
/// PAX record *and* a GNU long name (readers disagree on which wins).
fn one_name(pax: Option<String>, gnu: Option<Vec<u8>>, header: Vec<u8>, what: &str) -> Result<String, String> {
    let bytes = match (pax, gnu) {
        (Some(p), Some(g)) => {
            let g = String::from_utf8_lossy(&g);
            return Err(format!("PAX {what} `{}` and GNU long {what} `{}` disagree", shown(&p), shown(&g)));
        }
        (Some(p), None) => p.into_bytes(),
        (None, Some(g)) => g,
        (None, None) => header,
    };
    if bytes.len() as u64 > MAX_NAME_BYTES {
        return Err(format!("{what} of {} bytes (at most {MAX_NAME_BYTES} are accepted)", bytes.len()));
    }
    String::from_utf8(bytes).map_err(|e| format!("{what} `{}` is not UTF-8", shown_bytes(e.as_bytes())))
}

fn what(kind: &Kind) -> &'static str {
    match kind {
        Kind::File => "a regular file",
        Kind::Dir => "a directory",
        Kind::Symlink(_) | Kind::HardLink(_) => "a link",
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn until_nul(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(n) = data.iter().position(|b| *b == 0) {
        data.truncate(n);
    }
    data
}

/// Fills `buf` as far as the input allows (a short count only at the end of the input).
pub(crate) fn read_some(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
