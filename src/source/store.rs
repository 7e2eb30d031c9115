//! Read-only file stores that image sources read from: a tar archive read as an indexed store
//! ([`TarStore`]) or a directory ([`DirStore`]).
//!
//! Archives are never extracted. A tar is scanned once: every entry name is normalised and checked
//! (no absolute or `..` paths, no duplicates, links stay inside, no device files, no PAX size that
//! disagrees with the header, nothing but zeros after the end marker), and each regular file is
//! remembered by its offset so it can be read later, by several threads at once, with a seek.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::error::{Error, IoContext, Result};

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
        let f = fs_err::File::open(file).map_err(|e| Error::io(&label, e))?;
        let len = f.metadata().at(|| label.clone())?.len();
        let mut store = TarStore { file: file.to_owned(), label, nodes: HashMap::new() };
        let end = store.scan(BufReader::with_capacity(1 << 16, f), len)?;
        store.check_tail(end, len)?;
        store.check_links()?;
        Ok(store)
    }

    fn loc(&self) -> String {
        self.label.clone()
    }

    /// Indexes every entry; `len` is the file's length, to name an entry that a truncation cut.
    fn scan(&mut self, reader: impl Read, len: u64) -> Result<u64> {
        let mut archive = tar::Archive::new(reader);
        let mut end = 0u64;
        let entries = archive.entries().at(|| self.loc())?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::bad(self.loc(), format!("malformed tar: {e}")))?;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let place = format!("{}: entry `{}`", self.loc(), raw_name.escape_debug());
            let name = normalise(&raw_name).map_err(|why| Error::bad(&place, why))?;
            check_pax(&mut entry, &raw_name).map_err(|why| Error::bad(&place, why))?;
            let node = self.node_for(&entry, &name).map_err(|why| Error::bad(&place, why))?;
            let data_end = entry.raw_file_position() + entry.size();
            if data_end > len {
                let msg = format!(
                    "truncated archive: the entry's {} bytes end at byte {data_end}, past the end of the file ({len} bytes)",
                    entry.size()
                );
                return Err(Error::bad(place, msg));
            }
            end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
            if name.is_empty() {
                continue; // "./" itself
            }
            if self.nodes.insert(name.clone(), node).is_some() {
                return Err(Error::bad(place, "duplicate entry"));
            }
        }
        Ok(end)
    }

    fn node_for<R: Read>(&self, entry: &tar::Entry<'_, R>, name: &str) -> std::result::Result<Node, String> {
        let kind = entry.header().entry_type();
        let link = || -> std::result::Result<String, String> {
            let target = entry.link_name_bytes().ok_or("link without a target")?;
            Ok(String::from_utf8_lossy(&target).into_owned())
        };
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                Ok(Node::File { offset: entry.raw_file_position(), size: entry.size() })
            }
            EntryType::Directory => Ok(Node::Dir),
            EntryType::Symlink => {
                let target = link()?;
                if target.starts_with('/') {
                    return Err(format!("symlink to absolute path `{target}` points outside the archive"));
                }
                let parent = name.rsplit_once('/').map_or("", |(p, _)| p);
                let joined = if parent.is_empty() { target.clone() } else { format!("{parent}/{target}") };
                let resolved =
                    resolve_dots(&joined).ok_or_else(|| format!("symlink to `{target}` points outside the archive"))?;
                Ok(Node::Link(resolved))
            }
            EntryType::Link => {
                let target = link()?;
                Ok(Node::Link(normalise(&target).map_err(|why| format!("hard link target: {why}"))?))
            }
            EntryType::XGlobalHeader => Err("PAX global header is not accepted".into()),
            other => Err(format!("unsupported entry type {:?}", other.as_byte() as char)),
        }
    }

    /// After the last entry there must be an end-of-archive marker and nothing but zeros.
    fn check_tail(&self, end: u64, len: u64) -> Result<()> {
        if end > len || len - end < 512 {
            return Err(Error::bad(self.loc(), "truncated archive: it ends before its last entry or end marker"));
        }
        let mut f = fs_err::File::open(&self.file).at(|| self.loc())?;
        f.seek(SeekFrom::Start(end)).at(|| self.loc())?;
        let mut buf = vec![0u8; 1 << 16];
        let mut pos = end;
        loop {
            let n = f.read(&mut buf).at(|| self.loc())?;
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
                let at = pos + i as u64;
                return Err(Error::bad(
                    self.loc(),
                    format!("trailing garbage after the end of the archive at byte {at}"),
                ));
            }
            pos += n as u64;
        }
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

/// A directory on disk, such as an OCI image layout. Paths are checked before they are joined.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn open(root: &Path) -> Result<Self> {
        let meta = fs_err::metadata(root).map_err(|e| Error::io(root.display().to_string(), e))?;
        if !meta.is_dir() {
            return Err(Error::bad(root.display().to_string(), "not a directory"));
        }
        Ok(DirStore { root: root.to_owned() })
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        let clean = normalise(path).map_err(|why| Error::bad(self.place(path), why))?;
        Ok(self.root.join(clean))
    }
}

impl Store for DirStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn open(&self, path: &str) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        let full = self.full(path)?;
        let f = fs_err::File::open(&full).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::bad(self.place(path), "no such file in the directory"),
            _ => Error::io(full.display().to_string(), e),
        })?;
        let meta = f.metadata().at(|| full.display().to_string())?;
        if !meta.is_file() {
            return Err(Error::bad(self.place(path), "not a regular file"));
        }
        Ok((Box::new(BufReader::with_capacity(1 << 16, f)), meta.len()))
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

/// Normalises an archive path: strips `./` and empty components, refuses absolute paths and `..`.
pub fn normalise(raw: &str) -> std::result::Result<String, String> {
    if raw.starts_with('/') {
        return Err("absolute path".into());
    }
    if raw.contains('\0') || raw.contains('\\') {
        return Err("path contains a NUL or backslash".into());
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("path contains `..`".into()),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves `.` and `..` in a joined link target; `None` if it climbs above the root.
fn resolve_dots(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// PAX records that disagree with what the tar reader uses are a known trick to make two tar
/// readers see different files: a `size` unlike a non-zero ustar size, or a `path`/`linkpath`
/// unlike the name in effect (a GNU long name wins in tar-rs, the last record in others).
fn check_pax<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> std::result::Result<(), String> {
    let header_size = entry.header().size().unwrap_or(0);
    let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
    let Some(exts) = entry.pax_extensions().map_err(|e| format!("bad PAX header: {e}"))? else {
        return Ok(());
    };
    for ext in exts {
        let ext = ext.map_err(|e| format!("bad PAX record: {e}"))?;
        let value = ext.value().map_err(|_| "PAX record is not UTF-8".to_owned())?;
        match ext.key() {
            Ok("size") => match value.parse::<u64>() {
                Err(_) => return Err("PAX size record is not a number".into()),
                Ok(p) if header_size != 0 && p != header_size => {
                    return Err(format!("PAX size {p} conflicts with header size {header_size}"));
                }
                Ok(_) => {}
            },
            Ok("path") if value != name => {
                return Err(format!("PAX path `{value}` conflicts with the entry's name `{name}` (GNU long name?)"));
            }
            Ok("linkpath") if link.as_deref() != Some(value) => {
                return Err(format!("PAX linkpath `{value}` conflicts with the entry's link target {link:?}"));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_refuses_escapes() {
        assert_eq!(normalise("./a/./b").unwrap(), "a/b");
        assert!(normalise("/etc/passwd").is_err());
        assert!(normalise("a/../../b").is_err());
        assert_eq!(resolve_dots("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(resolve_dots("a/../../c"), None);
    }
}
