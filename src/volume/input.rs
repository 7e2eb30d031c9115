//! A bundle as files on disk, read as one: a single file, or the data parts of a split bundle in
//! order. [`Volumes`] reads at any offset of the joined stream ([`ReadAt`], so blobs can be read
//! and hashed on many cores at once) and hands out sequential readers ([`Cursor`]) for the
//! streaming commands; nothing is ever joined on disk. [`open`] resolves what a user names — a
//! bundle, a part, a list of parts, a directory, or `-` — into a [`Source`].

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::reader::Trust;
use crate::error::{Error, Result};
use crate::volume::list::{self, PartList, Which};
use crate::volume::{Names, repair};

pub use crate::local_file::ReadAt;

/// One file of the joined stream, starting at `start`.
struct Member {
    path: PathBuf,
    file: std::fs::File,
    start: u64,
    len: u64,
}

/// A bundle held in one file or split across several, read as one stream.
pub struct Volumes {
    members: Vec<Member>,
    len: u64,
    place: String,
    /// A split bundle's names and signed part list.
    split: Option<(Names, PartList)>,
}

impl Volumes {
    /// A bundle in one file.
    pub fn file(path: &Path) -> Result<Self> {
        Self::files(&[path.to_owned()], path.display().to_string())
    }

    /// The files `paths`, joined in order and named `place` in messages.
    pub fn files(paths: &[PathBuf], place: String) -> Result<Self> {
        let mut members = Vec::new();
        let mut start = 0u64;
        for path in paths {
            let (file, len) = crate::local_file::open_regular(path, &path.display().to_string())?;
            members.push(Member { path: path.clone(), file: file.into_parts().0, start, len });
            start += len;
        }
        Ok(Volumes { members, len: start, place, split: None })
    }

    /// The data parts of a split bundle, each checked present and of its listed size. When one
    /// is not, every part is checked (sizes and sha256) and all damaged ones are named in one
    /// error that says whether `repair` can rebuild them.
    pub fn open_parts(names: &Names, list: PartList) -> Result<Self> {
        let damage = repair::check_sizes(names, &list);
        if damage.iter().any(|d| matches!(d.which, Which::Data(_))) {
            return Err(repair::damage_error(names, &list, &repair::check_all(names, &list)));
        }
        let paths: Vec<PathBuf> = (0..list.parts.len()).map(|i| names.part(i)).collect();
        let place = names.part(0).display().to_string();
        let mut v = Self::files(&paths, place)?;
        v.split = Some((names.clone(), list));
        Ok(v)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The files read, in order, with their paths (to check that none has changed).
    pub fn members(&self) -> impl Iterator<Item = (&Path, &std::fs::File)> {
        self.members.iter().map(|m| (m.path.as_path(), &m.file))
    }

    /// How messages name the bundle: its file, or its first part.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// The signed part list of a split bundle.
    pub fn list(&self) -> Option<&PartList> {
        self.split.as_ref().map(|(_, l)| l)
    }

    /// A failure reading a split bundle, explained by its damaged parts when some are: they are
    /// named, with what `repair` can do (every part is hashed, so only on failure).
    pub fn explain(&self, err: Error) -> Error {
        let Some((names, list)) = &self.split else { return err };
        if err.class() == crate::error::Class::Registry {
            return err;
        }
        let damage = repair::check_all(names, list);
        if damage.is_empty() { err } else { repair::damage_error(names, list, &damage) }
    }

    /// A sequential reader of bytes `from..to`.
    pub fn cursor(self: &Arc<Self>, from: u64, to: u64) -> Cursor {
        Cursor { volumes: Arc::clone(self), pos: from, end: to.min(self.len) }
    }

    /// The whole stream, buffered, for the streaming reader.
    pub fn stream(self: &Arc<Self>) -> BufReader<Cursor> {
        BufReader::with_capacity(1 << 20, self.cursor(0, self.len))
    }
}

impl ReadAt for Volumes {
    /// Reads from the member holding `offset`, never across two (a short read, as files do).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let i = self.members.partition_point(|m| m.start + m.len <= offset);
        let Some(m) = self.members.get(i) else { return Ok(0) };
        let left = usize::try_from(m.start + m.len - offset).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        FileExt::read_at(&m.file, &mut buf[..want], offset - m.start)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", m.path.display())))
    }
}

/// Reads a stretch of [`Volumes`] in order.
pub struct Cursor {
    volumes: Arc<Volumes>,
    pos: u64,
    end: u64,
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.volumes.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl crate::archive::Input for BufReader<Cursor> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        self.seek_relative(n)
    }
}

/// Where a bundle is read from.
pub enum Source {
    Stdin,
    /// A FIFO or device: read in order, once.
    Pipe(PathBuf),
    /// A file or a split bundle's parts: read anywhere.
    Volumes(Arc<Volumes>),
}

impl Source {
    /// A sequential reader and the bundle's name for messages.
    pub fn reader(&self) -> Result<(Box<dyn Read>, String)> {
        Ok(match self {
            Source::Stdin => {
                widen_pipe(io::stdin());
                (Box::new(io::stdin().lock()), "<stdin>".into())
            }
            Source::Pipe(p) => {
                let f = fs_err::File::open(p).map_err(|e| Error::io(p.display().to_string(), e))?;
                widen_pipe(&f);
                (Box::new(BufReader::with_capacity(1 << 20, f)), p.display().to_string())
            }
            Source::Volumes(v) => (Box::new(v.stream()), v.place().to_owned()),
        })
    }

    /// See [`Volumes::explain`].
    pub fn explain(&self, err: Error) -> Error {
        match self {
            Source::Volumes(v) => v.explain(err),
            _ => err,
        }
    }

    /// The bundle's length, when it is in files.
    pub fn known_len(&self) -> Option<u64> {
        match self {
            Source::Stdin | Source::Pipe(_) => None,
            Source::Volumes(v) => Some(v.len()),
        }
    }
}

/// Raises a pipe's capacity from 64 KiB to 1 MiB where the system allows, so the program writing
/// into it and the reader here take turns sixteen times less often; anything else is left as is.
fn widen_pipe(fd: impl std::os::fd::AsFd) {
    let _ = rustix::pipe::fcntl_setpipe_size(fd, 1 << 20);
}

/// Resolves the bundle a user named: `-` (stdin); a bundle file, a FIFO; a split bundle by its first
/// part, any part, its part list, its own name (when only the parts are there), all its data
/// parts in order, or the directory holding it. The part list's signature is checked with
/// `trust` before a part is opened.
pub fn open(paths: &[PathBuf], trust: &Trust<'_>) -> Result<Source> {
    let usage = |msg: &str| Error::bad(paths.first().map_or(String::new(), |p| p.display().to_string()), msg);
    let [first, rest @ ..] = paths else { return Err(usage("no bundle given")) };
    if first.as_os_str() == "-" && rest.is_empty() {
        return Ok(Source::Stdin);
    }
    let names = match split_names(first)? {
        Some(names) => names,
        None if rest.is_empty() && first.metadata().is_ok_and(|m| !m.is_file()) => {
            return Ok(Source::Pipe(first.clone()));
        }
        None if rest.is_empty() => {
            let file = Volumes::file(first)?;
            refuse_key_file(&file)?;
            return Ok(Source::Volumes(Arc::new(file)));
        }
        None => return Err(usage("several files given, but they are not the parts of a split bundle (OUT.001 …)")),
    };
    let list = list::load(&names, trust)?;
    if !rest.is_empty() {
        let listed: Vec<PathBuf> = (0..list.parts.len()).map(|i| names.part(i)).collect();
        if listed.iter().map(|p| p.file_name()).ne(paths.iter().map(|p| p.file_name())) {
            let first_part = names.part(0);
            return Err(usage(&format!(
                "give every data part in order ({} … {}), the first part alone, or the directory",
                first_part.display(),
                names.part(list.parts.len() - 1).display()
            )));
        }
    }
    Ok(Source::Volumes(Arc::new(Volumes::open_parts(&names, list)?)))
}

/// A minisign key or signature given where the bundle belongs (the arguments swapped) is named as
/// such, not read as a damaged archive.
fn refuse_key_file(file: &Volumes) -> Result<()> {
    let mut head = [0u8; 19];
    if file.read_exact_at(&mut head, 0).is_ok() && &head == b"untrusted comment: " {
        let msg = "is a minisign key or signature, not a bundle (the public key goes after -p, the bundle last)";
        return Err(Error::bad(file.place(), msg));
    }
    Ok(())
}

/// The split bundle `path` names, if it names one: a part, its list, its directory, or the
/// bundle's own name when only its parts are there.
pub fn split_names(path: &Path) -> Result<Option<Names>> {
    if path.is_dir() {
        return find_list(path).map(Some);
    }
    if let Some(names) = Names::of_member(path).filter(|n| n.list().exists()) {
        return Ok(Some(names));
    }
    let whole = Names::new(path);
    Ok((!path.exists() && whole.list().exists()).then_some(whole))
}

/// The one part list in `dir`.
fn find_list(dir: &Path) -> Result<Names> {
    let place = || dir.display().to_string();
    let mut found = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(|e| Error::io(place(), e))? {
        let path = entry.map_err(|e| Error::io(place(), e))?.path();
        if path.extension().is_some_and(|e| e == "parts") {
            found.extend(Names::of_member(&path));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::bad(place(), "holds no part list (OUT.parts): name the bundle or its first part")),
        n => Err(Error::bad(place(), format!("holds {n} part lists: name the bundle's first part"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_at_any_offset_across_the_members() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut paths = Vec::new();
        for (i, piece) in [&bytes[..300], &bytes[300..301], &bytes[301..]].iter().enumerate() {
            let p = dir.path().join(format!("p{i}"));
            std::fs::write(&p, piece).unwrap();
            paths.push(p);
        }
        let v = Arc::new(Volumes::files(&paths, "b".into()).unwrap());
        assert_eq!(v.len(), 1000);
        for (from, to) in [(0, 1000), (299, 302), (301, 1000), (999, 1000), (1000, 1000), (5, 4)] {
            let mut got = Vec::new();
            v.cursor(from, to).read_to_end(&mut got).unwrap();
            assert_eq!(got, bytes[from as usize..(to as usize).max(from as usize)], "{from}..{to}");
        }
        let mut c = v.stream();
        crate::archive::Input::skip(&mut c, 600).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, bytes[600..]);
    }
}
