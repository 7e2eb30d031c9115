//! Read-only file stores that image sources read from: a tar archive read as an indexed store
//! ([`TarStore`]) or a directory ([`DirStore`]).
//!
//! Archives are never extracted. A tar is scanned once by the strict [`crate::archive::Reader`]
//! (which owns every rule about entries, names and the end of the archive); the store adds that
//! links stay inside the archive, and remembers each regular file by its offset so it can be read
//! later, by several threads at once, with a seek.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::archive::{self, Kind, normalise, resolve_dots};
use crate::error::{Error, IoContext, Result, shown};

/// Where a source reads its files from.
pub trait Store: Send + Sync {
    /// The file or directory, for messages.
    fn location(&self) -> String;
    /// Opens a regular file by its path inside the store; links are followed within the store.
    fn open(&self, path: &str) -> Result<(Box<dyn Read + Send + '_>, u64)>;
    fn contains(&self, path: &str) -> bool;
    /// Every regular file path (links included under their own name), sorted.
    fn paths(&self) -> Vec<String>;

    /// Reads a small file whole (JSON metadata), bounded by the JSON size limit.
    fn read_small(&self, path: &str) -> Result<Vec<u8>> {
        let (r, _) = self.open(path)?;
        crate::json::read_bounded(r).at(|| self.place(path))?.map_err(|msg| Error::bad(self.place(path), msg))
    }

    fn place(&self, path: &str) -> String {
        format!("{}: {path}", self.location())
    }
}

#[derive(Debug, Clone)]
enum Node {
    File { offset: u64, size: u64 },
    Link(String),
    Dir,
}

/// A tar file read as an indexed store.
pub struct TarStore {
    file: PathBuf,
    /// What messages call the archive: its path, or where it came from.
    label: String,
    nodes: HashMap<String, Node>,
}

const MAX_LINK_HOPS: usize = 16;

impl TarStore {
    pub fn open(file: &Path) -> Result<Self> {
        Self::open_as(file, file.display().to_string())
    }

    /// Opens `file`, named `label` in messages (a temporary file holding a daemon's save).
    pub fn open_as(file: &Path, label: String) -> Result<Self> {
        let (f, len) = crate::local_file::open_regular(file, &label)?;
        let mut store = TarStore { file: file.to_owned(), label, nodes: HashMap::new() };
        let mut tar = archive::Reader::new(BufReader::with_capacity(1 << 16, f), store.loc()).with_len(len);
        while let Some(entry) = tar.next_entry()? {
            let place = || format!("{}: entry `{}`", store.loc(), shown(&entry.raw));
            let node = node_for(&entry).map_err(|why| Error::bad(place(), why))?;
            if !entry.name.is_empty() {
                store.nodes.insert(entry.name, node);
            }
        }
        tar.finish()?;
        store.check_links()?;
        Ok(store)
    }

    fn loc(&self) -> String {
        self.label.clone()
    }

    fn check_links(&self) -> Result<()> {
        for name in self.nodes.keys() {
            if matches!(self.nodes[name], Node::Link(_)) {
                self.resolve(name)?;
            }
        }
        Ok(())
    }

    /// Follows links to a regular file: (offset, size).
    fn resolve(&self, path: &str) -> Result<(u64, u64)> {
        let mut cur = path.to_owned();
        for _ in 0..MAX_LINK_HOPS {
            match self.nodes.get(&cur) {
                Some(Node::File { offset, size }) => return Ok((*offset, *size)),
                Some(Node::Link(target)) => cur = target.clone(),
                Some(Node::Dir) => {
                    return Err(Error::bad(
                        self.place(path),
                        format!("`{cur}` is a directory where a file is expected"),
                    ));
                }
                None if cur == path => return Err(Error::bad(self.place(path), "no such file in the archive")),
                None => {
                    return Err(Error::bad(
                        self.place(path),
                        format!("link points to `{cur}`, which is not in the archive"),
                    ));
                }
            }
        }
        Err(Error::bad(self.place(path), "too many levels of links"))
    }
}

impl Store for TarStore {
    fn location(&self) -> String {
        self.loc()
    }

    fn open(&self, path: &str) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        let (offset, size) = self.resolve(path)?;
        let mut f = fs_err::File::open(&self.file).at(|| self.loc())?;
        f.seek(SeekFrom::Start(offset)).at(|| self.place(path))?;
        Ok((Box::new(BufReader::with_capacity(1 << 16, f).take(size)), size))
    }

    fn contains(&self, path: &str) -> bool {
        self.resolve(path).is_ok()
    }

    fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.nodes.iter().filter(|(_, n)| !matches!(n, Node::Dir)).map(|(k, _)| k.clone()).collect();
        v.sort();
        v
    }
}

/// A directory on disk, such as an OCI image layout. A path is checked before it is joined, and
/// what it resolves to (through any symlink) must be a regular file inside the directory: a blob
/// linked to a host file, or `blobs/` linked elsewhere, is refused.
pub struct DirStore {
    /// The directory as the user named it, for messages.
    label: String,
    /// The directory with every symlink resolved.
    root: PathBuf,
}

impl DirStore {
    pub fn open(root: &Path) -> Result<Self> {
        let place = root.display().to_string();
        let meta = fs_err::metadata(root).map_err(|e| Error::io(&place, e))?;
        if !meta.is_dir() {
            return Err(Error::bad(place, "not a directory"));
        }
        let root = fs_err::canonicalize(root).map_err(|e| Error::io(&place, e))?;
        Ok(DirStore { label: place, root })
    }

    /// The file `path` names, resolved, once it is known to be inside the directory.
    fn full(&self, path: &str) -> Result<PathBuf> {
        let clean = normalise(path).map_err(|why| Error::bad(self.place(path), why))?;
        let resolved = fs_err::canonicalize(self.root.join(clean)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::bad(self.place(path), "no such file in the directory"),
            _ => Error::io(self.place(path), e),
        })?;
        if !resolved.starts_with(&self.root) {
            let msg = format!("resolves to `{}`, outside the directory", shown(&resolved.display().to_string()));
            return Err(Error::bad(self.place(path), msg));
        }
        Ok(resolved)
    }
}

impl Store for DirStore {
    fn location(&self) -> String {
        self.label.clone()
    }

    fn open(&self, path: &str) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        let full = self.full(path)?;
        let (f, len) = crate::local_file::open_regular(&full, &self.place(path))?;
        Ok((Box::new(BufReader::with_capacity(1 << 16, f)), len))
    }

    fn contains(&self, path: &str) -> bool {
        self.full(path).is_ok_and(|p| p.is_file())
    }

    fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(&self.root)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.path().strip_prefix(&self.root).ok().map(|p| p.to_string_lossy().into_owned()))
            .collect();
        v.sort();
        v
    }
}

/// What the store remembers of an entry; a symlink's target is resolved against its directory.
fn node_for(entry: &archive::Entry) -> std::result::Result<Node, String> {
    match &entry.kind {
        Kind::File => Ok(Node::File { offset: entry.offset, size: entry.size }),
        Kind::Dir => Ok(Node::Dir),
        Kind::Symlink(target) => {
            if target.starts_with('/') {
                return Err(format!("symlink to absolute path `{}` points outside the archive", shown(target)));
            }
            let parent = entry.name.rsplit_once('/').map_or("", |(p, _)| p);
            let joined = if parent.is_empty() { target.clone() } else { format!("{parent}/{target}") };
            let outside = || format!("symlink to `{}` points outside the archive", shown(target));
            Ok(Node::Link(resolve_dots(&joined).ok_or_else(outside)?))
        }
        Kind::HardLink(target) => Ok(Node::Link(normalise(target).map_err(|why| format!("hard link target: {why}"))?)),
    }
}
