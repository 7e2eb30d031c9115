//! The record of bundles `serve` verified in full, so that starting again on the same unchanged
//! files takes seconds instead of a read of every blob.
//!
//! A bundle counts as verified before when its files (one, or a split bundle's data parts) are the
//! same files, unchanged: the same device, inode, size, modification time and status-change time
//! (which no user can set back, and which any write or `touch` moves), the same signed index (its sha256) and the same signing key. The
//! signature, the headers and the manifests are still checked on every start (they cost no blob
//! read), and every blob served whole is still hashed on the way, so a change the record misses
//! is caught when it is read. The record is a small JSON file beside the importers' state
//! (`serve-verified.json`), rewritten atomically; one that cannot be read is started afresh.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::json;
use crate::local_file;

const VERSION: u32 = 1;
/// Bundles remembered; the oldest are forgotten first.
const MAX_ENTRIES: usize = 256;
const MAX_BYTES: u64 = 1 << 20;

/// What identifies one state of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Identity {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Identity {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    /// The bundle file, or a split bundle's first part.
    path: PathBuf,
    /// Each file: the bundle, or every data part in order.
    files: Vec<Identity>,
    index: Digest,
    key_id: String,
    /// When, RFC 3339.
    verified_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: u32,
    bundles: Vec<Entry>,
}

pub struct Record {
    path: PathBuf,
    doc: Doc,
}

impl Record {
    /// Reads the record at `path`; none yet, or one that cannot be read, is empty.
    pub fn open(path: &Path) -> Record {
        let doc = local_file::read_text(path, MAX_BYTES, "a serve verification record")
            .ok()
            .and_then(|text| json::parse_as::<Doc>(text.as_bytes()).ok())
            .filter(|d| d.version == VERSION)
            .unwrap_or(Doc { version: VERSION, bundles: Vec::new() });
        Record { path: path.to_owned(), doc }
    }

    /// When the bundle at `path` (canonical) was verified in full in this very state, if it was.
    pub fn verified_at(&self, path: &Path, files: &[Identity], index: &Digest, key_id: &str) -> Option<&str> {
        let e = self.doc.bundles.iter().find(|e| e.path == path)?;
        (e.files == files && e.index == *index && e.key_id == key_id).then_some(e.verified_at.as_str())
    }

    /// Remembers a full verification of the bundle at `path` (canonical).
    pub fn remember(&mut self, path: &Path, files: Vec<Identity>, index: Digest, key_id: &str, now: String) {
        self.doc.bundles.retain(|e| e.path != path);
        let entry = Entry { path: path.to_owned(), files, index, key_id: key_id.to_owned(), verified_at: now };
        self.doc.bundles.push(entry);
        let excess = self.doc.bundles.len().saturating_sub(MAX_ENTRIES);
        self.doc.bundles.drain(..excess);
    }

    pub fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir).at(|| dir.display().to_string())?;
        }
        let mut bytes = serde_json::to_vec_pretty(&self.doc).expect("record serialises");
        bytes.push(b'\n');
        let out = AtomicFile::create(&self.path)?;
        out.file().write_all(&bytes).at(|| out.place())?;
        out.commit(0o644)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_holds_only_for_the_same_file_index_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let file = Identity { device: 1, inode: 2, size: 3, mtime_ns: 4, ctime_ns: 5 };
        let index = Digest::of_bytes(b"index");
        let mut r = Record::open(&path);
        r.remember(Path::new("/b.tar"), vec![file.clone()], index.clone(), "K", "2026-01-01T00:00:00Z".into());
        r.save().unwrap();
        let r = Record::open(&path);
        let at = |files: &[Identity], index: &Digest, key: &str| r.verified_at(Path::new("/b.tar"), files, index, key);
        let one = std::slice::from_ref(&file);
        assert_eq!(at(one, &index, "K"), Some("2026-01-01T00:00:00Z"));
        let touched = Identity { ctime_ns: 6, ..file.clone() };
        assert_eq!(at(&[touched], &index, "K"), None);
        assert_eq!(at(one, &Digest::of_bytes(b"other"), "K"), None);
        assert_eq!(at(one, &index, "L"), None);
        assert_eq!(at(&[file.clone(), file.clone()], &index, "K"), None, "another number of parts");
        std::fs::write(&path, "{damaged").unwrap();
        assert!(Record::open(&path).doc.bundles.is_empty(), "a damaged record is started afresh");
    }
}
