//! Reads a bundle from any stream (a file, a pipe, stdin) and verifies it as it goes.
//!
//! The first entry must be the index and the second its signature; the signature is checked
//! before a single blob is read. Then every entry must be one the index lists, once, a plain
//! regular file whose sha256 and size match; nothing may be missing and nothing may follow the end
//! of the archive but zero padding. Finally every image's manifests are walked to check that the
//! blobs it needs are the blobs the index says it needs. Callers see each entry's content as it is
//! read; blobs are hashed on other cores ([`crate::hash_pool`]) and a mismatch fails the read.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use crate::archive::{self, Input, Stream};
use crate::bundle::format::{
    BlobEntry, BundleIndex, FileEntry, INDEX_NAME, MAX_INDEX_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE_NAME,
};
use crate::bundle::graph::Graph;
use crate::bundle::sign::PublicKey;
use crate::bundle::views;
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result, shown};
use crate::hash_pool::{HashPool, Queue};
use crate::image;
use crate::json;

/// How the signature is treated.
#[derive(Clone, Copy)]
pub enum Trust<'a> {
    Key(&'a PublicKey),
    /// `--insecure-no-signature`: the signature is not checked at all.
    Insecure,
}

/// One verified entry of the bundle.
#[derive(Clone, Copy)]
pub enum Item<'a> {
    Blob(&'a BlobEntry),
    File(&'a FileEntry),
}

/// What a complete read established.
#[derive(Debug)]
pub struct Report {
    pub index: BundleIndex,
    /// The sha256 of the signed `airlock.json`, which a delta records to name its bases.
    pub index_digest: Digest,
    /// The key id the signature was checked with; `None` when it was not checked.
    pub key_id: Option<String>,
    pub trusted_comment: Option<String>,
    pub blobs_checked: usize,
    pub files_checked: usize,
    pub bytes_checked: u64,
}

/// Reads only as far as the index (no verification of anything): for `inspect`.
pub fn read_index(src: impl Read, place: &str) -> Result<BundleIndex> {
    let mut tar = archive::Reader::new(Stream(src), place).plain();
    let (_, bytes) = small_entry(&mut tar, place, INDEX_NAME, MAX_INDEX_BYTES)?;
    BundleIndex::parse(&format!("{place}: {INDEX_NAME}"), &bytes)
}

/// Reads and verifies a whole bundle; `on_entry` sees each entry's content as it is read. A blob's
/// digest is computed on another core while the stream moves on, so a mismatch may surface after
/// `on_entry` has seen later entries: callers keep what they write in scratch space until `read`
/// returns `Ok`.
pub fn read<R: Read>(
    src: R,
    place: &str,
    trust: Trust<'_>,
    on_index: &mut dyn FnMut(&BundleIndex) -> Result<()>,
    on_entry: &mut dyn FnMut(Item<'_>, &mut dyn Read) -> Result<()>,
) -> Result<Report> {
    let mut tar = archive::Reader::new(Stream(src), place).plain();
    let signed = open_signed(&mut tar, place, trust)?;
    let index = &signed.index;
    on_index(index)?;
    let mut expected = Expected::new(index);
    let mut graph = Graph::new(index);
    let mut report = signed.report();
    let pool = HashPool::default();
    let mut hashing = Queue::default();
    while let Some(entry) = tar.next_entry().map_err(Error::into_integrity)? {
        let (item, at) = expected.admit(&entry, place)?;
        let (digest, want) = item.digest_and_size();
        if item.is_manifest() && want <= json::MAX_JSON_BYTES {
            let mut buf = Vec::new();
            let mut v = VerifyingReader::new(tar.body(), digest.clone(), want);
            v.read_to_end(&mut buf).map_err(|e| Error::io(&at, e).into_integrity())?;
            on_entry(item, &mut &buf[..])?;
            if let Item::Blob(b) = item {
                graph.add(b, &buf, place)?;
            }
        } else {
            // Hashed on another core while the next bytes are read; checked before `read` returns.
            let mut feed = pool.feed(tar.body());
            on_entry(item, &mut feed).map_err(Error::into_integrity)?;
            let pending = feed.finish().map_err(|e| Error::io(&at, e).into_integrity())?;
            hashing.push(pending, digest, want, at).map_err(|(at, e)| Error::io(at, e).into_integrity())?;
        }
        match item {
            Item::Blob(_) => report.blobs_checked += 1,
            Item::File(_) => report.files_checked += 1,
        }
        report.bytes_checked += want;
    }
    hashing.finish().map_err(|(at, e)| Error::io(at, e).into_integrity())?;
    tar.finish().map_err(Error::into_integrity)?;
    expected.check_complete(place)?;
    check_views(index, &graph, place)?;
    report.index = signed.index;
    Ok(report)
}

/// The index, once its signature has been checked.
pub(crate) struct Signed {
    pub index: BundleIndex,
    /// The sha256 of `airlock.json` as read: what a delta records to name this bundle as a base.
    pub index_digest: Digest,
    pub key_id: Option<String>,
    pub trusted_comment: Option<String>,
}

impl Signed {
    fn report(&self) -> Report {
        Report {
            index: BundleIndex { images: Vec::new(), blobs: Vec::new(), files: Vec::new(), ..self.index.clone() },
            index_digest: self.index_digest.clone(),
            key_id: self.key_id.clone(),
            trusted_comment: self.trusted_comment.clone(),
            blobs_checked: 0,
            files_checked: 0,
            bytes_checked: 0,
        }
    }
}

/// Reads the first two entries and checks the signature before the index is even parsed.
pub(crate) fn open_signed<R: Input>(tar: &mut archive::Reader<R>, place: &str, trust: Trust<'_>) -> Result<Signed> {
    let (index_bytes, sig_bytes) = signed_entries(tar, place)?;
    let (key_id, trusted_comment) = match trust {
        Trust::Key(pk) => {
            let sig = String::from_utf8(sig_bytes)
                .map_err(|_| Error::trust(format!("{place}: {SIGNATURE_NAME} is not text")))?;
            let comment = pk.verify(&index_bytes, &sig).map_err(|e| match e {
                Error::Trust { msg } => Error::trust(format!("{place}: {msg}")),
                other => other,
            })?;
            (Some(pk.key_id()), Some(comment))
        }
        Trust::Insecure => (None, None),
    };
    let index = BundleIndex::parse(&format!("{place}: {INDEX_NAME}"), &index_bytes).map_err(Error::into_integrity)?;
    Ok(Signed { index, index_digest: Digest::of_bytes(&index_bytes), key_id, trusted_comment })
}

/// The first two entries' bytes, `airlock.json` and its signature, neither checked nor parsed.
pub(crate) fn signed_entries<R: Input>(tar: &mut archive::Reader<R>, place: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let (_, index_bytes) = small_entry(tar, place, INDEX_NAME, MAX_INDEX_BYTES)?;
    let (_, sig_bytes) = small_entry(tar, place, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)?;
    Ok((index_bytes, sig_bytes))
}

impl<'a> Item<'a> {
    pub fn digest_and_size(&self) -> (&'a Digest, u64) {
        match self {
            Item::Blob(b) => (&b.digest, b.size),
            Item::File(f) => (&f.digest, f.size),
        }
    }

    pub fn is_manifest(&self) -> bool {
        matches!(self, Item::Blob(b) if image::is_manifest_type(&b.media_type) || image::is_index_type(&b.media_type))
    }
}

/// What the signed index says the archive holds, and what has been seen of it.
pub(crate) struct Expected<'a> {
    blobs: HashMap<String, &'a BlobEntry>,
    files: HashMap<&'a str, &'a FileEntry>,
    seen: HashSet<String>,
    index: &'a BundleIndex,
}

impl<'a> Expected<'a> {
    pub fn new(index: &'a BundleIndex) -> Self {
        Expected {
            blobs: index.blobs.iter().map(|b| (b.digest.blob_path(), b)).collect(),
            files: index.files.iter().map(|f| (f.path.as_str(), f)).collect(),
            seen: HashSet::new(),
            index,
        }
    }

    /// Checks one entry (a plain regular file, seen once: the tar reader's rules) against the
    /// index: listed, with the listed size. Returns what it is and its place for messages.
    pub fn admit(&mut self, entry: &archive::Entry, place: &str) -> Result<(Item<'a>, String)> {
        let name = &entry.name;
        let at = format!("{place}: entry {}", shown(name));
        self.seen.insert(name.clone());
        let item = match (self.blobs.get(name), self.files.get(name.as_str())) {
            (Some(b), _) if !b.is_carried() => {
                let base = b.carried_by.as_deref().unwrap_or_default();
                return Err(Error::integrity(
                    at,
                    format!("the signed index says base bundle {base} carries it, not this one"),
                ));
            }
            (Some(b), _) => Item::Blob(b),
            (None, Some(f)) => Item::File(f),
            (None, None) => return Err(Error::integrity(at, "not listed in the signed index")),
        };
        let (_, want) = item.digest_and_size();
        if entry.size != want {
            return Err(Error::integrity(at, format!("size is {} bytes, the signed index says {want}", entry.size)));
        }
        Ok((item, at))
    }

    /// Nothing the index lists may be missing, but the blobs a delta leaves to its bases.
    pub fn check_complete(&self, place: &str) -> Result<()> {
        if self.seen.is_empty() && self.index.blobs.iter().any(|b| b.is_carried()) {
            let msg = "holds only a signed index (an `airlock index` file?), not the bundle's blobs";
            return Err(Error::integrity(place, msg));
        }
        for b in self.index.blobs.iter().filter(|b| b.is_carried()) {
            if !self.seen.contains(&b.digest.blob_path()) {
                let msg = format!("blob {} listed in the signed index is missing (truncated bundle?)", b.digest);
                return Err(Error::integrity(place, msg));
            }
        }
        for f in &self.index.files {
            if !self.seen.contains(&f.path) {
                return Err(Error::integrity(place, format!("file {} listed in the signed index is missing", f.path)));
            }
        }
        Ok(())
    }
}

/// Reads the next entry, which must be the small file `want`.
fn small_entry<R: Input>(
    tar: &mut archive::Reader<R>,
    place: &str,
    want: &str,
    limit: u64,
) -> Result<(String, Vec<u8>)> {
    let not_bundle = || {
        Error::integrity(
            place,
            format!("not an airlock bundle: its entries must begin with {INDEX_NAME} and {SIGNATURE_NAME}"),
        )
    };
    let entry = tar.next_entry().map_err(Error::into_integrity)?.ok_or_else(not_bundle)?;
    if want == INDEX_NAME && entry.name != SIGNATURE_NAME && entry.name != want {
        return Err(Error::bad(place, not_a_bundle(&entry.name)));
    }
    if entry.name != want {
        return Err(Error::integrity(
            place,
            format!(
                "first entries must be {INDEX_NAME} and {SIGNATURE_NAME}, found `{}` where {want} belongs",
                shown(&entry.raw)
            ),
        ));
    }
    let bytes = json::read_limited(tar.body(), limit)
        .map_err(|e| Error::io(format!("{place}: {want}"), e).into_integrity())?
        .map_err(|msg| Error::integrity(format!("{place}: {want}"), msg))?;
    Ok((entry.name, bytes))
}

/// What a tar whose first entry is none of a bundle's is, as far as its first entry tells.
fn not_a_bundle(first: &str) -> String {
    let image_archive = ["manifest.json", "repositories", "oci-layout", "index.json"].contains(&first)
        || first.starts_with("blobs/")
        || first.ends_with(".json")
        || first.ends_with("/layer.tar");
    let hint = if image_archive { " (a `docker save` or OCI archive? `airlock create` bundles it)" } else { "" };
    format!(
        "not an airlock bundle: it begins with `{}`, a bundle with {INDEX_NAME} and {SIGNATURE_NAME}{hint}",
        shown(first)
    )
}

/// Each image's manifests reach what the index says, and the views say what the index says.
pub(crate) fn check_views(index: &BundleIndex, graph: &Graph<'_>, place: &str) -> Result<()> {
    graph.check(place)?;
    views::check(index, &|d| graph.parts(d), place)
}
