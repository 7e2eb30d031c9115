//! A bundle file opened for random access, for commands that need only some of its blobs (a push
//! of which the registry already holds most) or several at once (parallel uploads).
//!
//! Opening checks everything that needs no blob content: the signature (first), every header
//! against the signed index (regular file, listed, once, exact size), completeness, the tail, and
//! each image's manifest graph (manifests are small and are read and verified). Blob content is
//! verified when a blob is read: [`IndexedBundle::open_blob`] returns a reader that fails on the
//! read that detects a mismatch.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::sync::Arc;

use crate::archive;
use crate::bundle::format::BundleIndex;
use crate::bundle::graph::Graph;
use crate::bundle::reader::{self, Expected, Item, Report, Trust};
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::hash_pool::{self, Range};
use crate::json;
use crate::progress::{Moving, Observer, Phase};
use crate::volume::input::{Source, Volumes};

/// An entry's name, digest, and data offset and size (if the archive holds it).
type Located<'a> = (String, &'a Digest, Option<&'a (u64, u64)>);

pub struct IndexedBundle {
    /// The bundle's file, or its parts.
    volumes: Arc<Volumes>,
    place: String,
    /// Data offset and size of every blob.
    offsets: HashMap<Digest, (u64, u64)>,
    /// Data offset and size of every other file, by path.
    file_offsets: HashMap<String, (u64, u64)>,
    report: Report,
}

impl IndexedBundle {
    /// Opens a bundle held in one file or in parts; a split bundle's index must carry the bundle
    /// id its signed part list names.
    pub fn open(volumes: Arc<Volumes>, trust: Trust<'_>) -> Result<Self> {
        let place = volumes.place().to_owned();
        let input = BufReader::with_capacity(1 << 16, volumes.cursor(0, volumes.len()));
        let mut tar = archive::Reader::new(input, &place).with_len(volumes.len()).plain();
        let signed = reader::open_signed(&mut tar, &place, trust)?;
        if let Some(list) = volumes.list() {
            crate::volume::list::check_bundle_id(list, &signed.index, &place)?;
        }
        let mut offsets = HashMap::new();
        let mut file_offsets = HashMap::new();
        let mut expected = Expected::new(&signed.index);
        while let Some(entry) = tar.next_entry().map_err(Error::into_integrity)? {
            let (item, _) = expected.admit(&entry, &place)?;
            match item {
                Item::Blob(b) => offsets.insert(b.digest.clone(), (entry.offset, b.size)),
                Item::File(f) => file_offsets.insert(f.path.clone(), (entry.offset, f.size)),
            };
        }
        tar.finish().map_err(Error::into_integrity)?;
        expected.check_complete(&place)?;
        let report = Report {
            index_digest: signed.index_digest,
            key_id: signed.key_id,
            trusted_comment: signed.trusted_comment,
            blobs_checked: 0,
            files_checked: 0,
            bytes_checked: 0,
            index: signed.index,
        };
        let bundle = IndexedBundle { volumes, place, offsets, file_offsets, report };
        bundle.check_manifests()?;
        Ok(bundle)
    }

    /// Opens the bundle a user named: a file, or a split bundle by a part or its directory.
    pub fn open_path(path: &std::path::Path, trust: Trust<'_>) -> Result<Self> {
        match crate::volume::input::open(&[path.to_owned()], &trust)? {
            Source::Volumes(v) => Self::open(v, trust),
            _ => Err(Error::bad(path.display().to_string(), "needs a bundle file or its parts, not a pipe")),
        }
    }

    /// Reads each manifest once (one at a time: only its edges are kept) and checks the graph
    /// and the views against the signed index.
    fn check_manifests(&self) -> Result<()> {
        let mut graph = Graph::new(&self.report.index);
        for b in &self.report.index.blobs {
            let is_manifest = Item::Blob(b).is_manifest();
            if is_manifest && b.size <= json::MAX_JSON_BYTES {
                graph.add(b, &self.read_small(&b.digest)?, &self.place)?;
            }
        }
        reader::check_views(&self.report.index, &graph, &self.place)
    }

    pub fn index(&self) -> &BundleIndex {
        &self.report.index
    }

    /// What opening established (signature, key id); no blob content has been checked yet.
    pub fn report(&self) -> &Report {
        &self.report
    }

    pub fn place(&self) -> &str {
        &self.place
    }

    /// The bundle's file or parts, for positional reads of what [`IndexedBundle::blob_at`] says.
    pub fn volumes(&self) -> &Arc<Volumes> {
        &self.volumes
    }

    /// Where a blob's bytes start in the file, and how many there are (`None`: not carried).
    pub fn blob_at(&self, digest: &Digest) -> Option<(u64, u64)> {
        self.offsets.get(digest).copied()
    }

    /// Checks the content of every blob and file, on every core (positional reads, largest
    /// first); afterwards the report counts what was checked.
    pub fn check_contents(&mut self, observer: &dyn Observer) -> Result<&Report> {
        self.check_ranges(self.contents().collect(), observer)?;
        self.count_all_checked();
        Ok(&self.report)
    }

    /// Checks, as [`IndexedBundle::check_contents`] does, every blob and file except the blobs
    /// `skip` names and the files `skip_files` names: those a sink verifies as it reads them.
    /// The report is left as it is; see [`IndexedBundle::into_checked_report`].
    pub fn check_except(&self, skip: &HashSet<&Digest>, skip_files: &[&str], observer: &dyn Observer) -> Result<u64> {
        let skipped = |(name, digest, _): &Located<'_>| {
            (skip.contains(*digest) && *name == digest.blob_path()) || skip_files.contains(&name.as_str())
        };
        self.check_ranges(self.contents().filter(|e| !skipped(e)).collect(), observer)
    }

    /// The report of a bundle every blob and file of which has now been checked, the rest by a
    /// sink as it read them after [`IndexedBundle::check_except`]; it counts them all.
    pub fn into_checked_report(mut self) -> Report {
        self.count_all_checked();
        self.report
    }

    /// Every blob the archive carries and every file, located.
    fn contents(&self) -> impl Iterator<Item = Located<'_>> {
        let index = &self.report.index;
        let carried = index.blobs.iter().filter(|b| b.is_carried());
        let blobs = carried.map(|b| (b.digest.blob_path(), &b.digest, self.offsets.get(&b.digest)));
        let files = index.files.iter().map(|f| (f.path.clone(), &f.digest, self.file_offsets.get(&f.path)));
        blobs.chain(files)
    }

    fn count_all_checked(&mut self) {
        let r = &mut self.report;
        let carried = r.index.blobs.iter().filter(|b| b.is_carried());
        r.blobs_checked = carried.clone().count();
        r.files_checked = r.index.files.len();
        r.bytes_checked = carried.map(|b| b.size).chain(r.index.files.iter().map(|f| f.size)).sum();
    }

    /// Checks the content of some of the blobs this bundle carries (those a delta relies on);
    /// returns the bytes checked.
    pub fn check_blobs(&self, digests: &[&Digest], observer: &dyn Observer) -> Result<u64> {
        let entries = digests.iter().map(|d| (d.blob_path(), *d, self.offsets.get(*d))).collect();
        self.check_ranges(entries, observer)
    }

    /// Hashes the named entries in parallel against their digests.
    fn check_ranges(&self, entries: Vec<Located<'_>>, observer: &dyn Observer) -> Result<u64> {
        let mut ranges = Vec::new();
        for (name, digest, at) in entries {
            // `open` saw every listed entry; this only keeps a broken invariant from panicking.
            let &(offset, size) = at.ok_or_else(|| Error::integrity(&self.place, format!("{name} is missing")))?;
            ranges.push(Range { offset, size, digest: digest.clone(), tag: name });
        }
        if ranges.is_empty() {
            // Nothing to hash: no task to show (an empty one reads as a stream of unknown size).
            return Ok(0);
        }
        let total = ranges.iter().map(|r| r.size).sum();
        let task = Moving::begin((), observer, Phase::Verify, &self.place, total);
        hash_pool::check_ranges(hash_pool::cores(), &*self.volumes, &ranges, &|n| task.observer_moved(n))
            .map_err(|(name, e)| Error::io(format!("{}: entry {name}", self.place), e).into_integrity())?;
        Ok(total)
    }

    /// Whether this bundle's archive holds the blob.
    pub fn carries(&self, digest: &Digest) -> bool {
        self.offsets.contains_key(digest)
    }

    /// What opening (and [`IndexedBundle::check_contents`]) established.
    pub fn into_report(self) -> Report {
        self.report
    }

    /// A reader of one blob that verifies its size and sha256 as it is read.
    pub fn open_blob(&self, digest: &Digest) -> Result<VerifyingReader<Box<dyn Read + Send>>> {
        let at = self.offsets.get(digest).ok_or_else(|| Error::integrity(self.entry(digest), "not in the bundle"))?;
        Ok(self.open_at(*at, digest))
    }

    /// A reader of one of the bundle's files (`index.json`, `oci-layout`, …) that verifies its
    /// size and sha256 as it is read.
    pub fn open_file(&self, path: &str) -> Result<VerifyingReader<Box<dyn Read + Send>>> {
        let listed = self.report.index.files.iter().find(|f| f.path == path);
        match (listed, self.file_offsets.get(path)) {
            (Some(f), Some(at)) => Ok(self.open_at(*at, &f.digest)),
            _ => Err(Error::integrity(format!("{}: entry {path}", self.place), "not in the bundle")),
        }
    }

    /// How messages name one of its blobs.
    pub fn entry(&self, digest: &Digest) -> String {
        format!("{}: entry {}", self.place, digest.blob_path())
    }

    fn open_at(&self, (offset, size): (u64, u64), digest: &Digest) -> VerifyingReader<Box<dyn Read + Send>> {
        let r: Box<dyn Read + Send> =
            Box::new(BufReader::with_capacity(1 << 20, self.volumes.cursor(offset, offset.saturating_add(size))));
        VerifyingReader::new(r, digest.clone(), size)
    }

    /// Reads and verifies a small blob whole (a manifest or index).
    pub fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut buf).map_err(|e| Error::io(self.entry(digest), e).into_integrity())?;
        Ok(buf)
    }
}
