//! Reads a bundle from any stream (a file, a pipe, stdin) and verifies it as it goes.
//!
//! The first entry must be the index and the second its signature; the signature is checked
//! before a single blob is read. Then every entry must be one the index lists, once, a plain
//! regular file whose sha256 and size match; nothing may be missing and nothing may follow the end
//! of the archive but zero padding. Finally every image's manifests are walked to check that the
//! blobs it needs are the blobs the index says it needs. Callers see each entry's content through a
//! reader that fails on the read that detects a mismatch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};

use crate::bundle::format::{
    BlobEntry, BundleIndex, FileEntry, INDEX_NAME, MAX_INDEX_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE_NAME,
};
use crate::bundle::sign::PublicKey;
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result};
use crate::image::{self, Parsed};
use crate::json;

/// How the signature is treated.
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
    /// The key id the signature was checked with; `None` when it was not checked.
    pub key_id: Option<String>,
    pub trusted_comment: Option<String>,
    pub blobs_checked: usize,
    pub files_checked: usize,
    pub bytes_checked: u64,
}

/// Reads only as far as the index (no verification of anything): for `inspect`.
pub fn read_index(src: impl Read, place: &str) -> Result<BundleIndex> {
    let mut archive = tar::Archive::new(src);
    let mut entries = archive.entries().at(|| place.to_owned())?.raw(true);
    let (_, bytes) = small_entry(&mut entries, place, INDEX_NAME, MAX_INDEX_BYTES)?;
    BundleIndex::parse(&format!("{place}: {INDEX_NAME}"), &bytes)
}

/// Reads and verifies a whole bundle; `on_entry` sees each entry's content as it is verified.
pub fn read<R: Read>(
    src: R,
    place: &str,
    trust: Trust<'_>,
    on_index: &mut dyn FnMut(&BundleIndex) -> Result<()>,
    on_entry: &mut dyn FnMut(Item<'_>, &mut dyn Read) -> Result<()>,
) -> Result<Report> {
    let mut archive = tar::Archive::new(Counting { inner: src, pos: 0 });
    let entries = archive.entries().at(|| place.to_owned())?.raw(true);
    let (signed, entries) = open_signed(entries, place, trust)?;
    let index = &signed.index;
    on_index(index)?;
    let mut expected = Expected::new(index);
    let mut manifests: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    let mut report = signed.report();
    for entry in entries {
        let entry = entry.map_err(|e| Error::integrity(place, format!("malformed tar: {e}")))?;
        let (item, at) = expected.admit(&entry, place)?;
        let (digest, want) = item.digest_and_size();
        let mut v = VerifyingReader::new(entry, digest.clone(), want);
        if item.is_manifest() && want <= json::MAX_JSON_BYTES {
            let mut buf = Vec::new();
            v.read_to_end(&mut buf).map_err(|e| Error::io(&at, e).into_integrity())?;
            on_entry(item, &mut &buf[..])?;
            manifests.insert(digest.clone(), buf);
        } else {
            on_entry(item, &mut v).map_err(Error::into_integrity)?;
            io::copy(&mut v, &mut io::sink()).map_err(|e| Error::io(&at, e).into_integrity())?;
        }
        match item {
            Item::Blob(_) => report.blobs_checked += 1,
            Item::File(_) => report.files_checked += 1,
        }
        report.bytes_checked += want;
    }
    check_tail(archive.into_inner(), place, 512)?;
    expected.check_complete(place)?;
    check_graph(index, &manifests, place)?;
    report.index = signed.index;
    Ok(report)
}

/// The index, once its signature has been checked.
pub(crate) struct Signed {
    pub index: BundleIndex,
    pub key_id: Option<String>,
    pub trusted_comment: Option<String>,
}

impl Signed {
    fn report(&self) -> Report {
        Report {
            index: BundleIndex { images: Vec::new(), blobs: Vec::new(), files: Vec::new(), ..self.index.clone() },
            key_id: self.key_id.clone(),
            trusted_comment: self.trusted_comment.clone(),
            blobs_checked: 0,
            files_checked: 0,
            bytes_checked: 0,
        }
    }
}

/// Reads the first two entries and checks the signature before the index is even parsed.
pub(crate) fn open_signed<'a, R: Read>(
    mut entries: tar::Entries<'a, R>,
    place: &str,
    trust: Trust<'_>,
) -> Result<(Signed, tar::Entries<'a, R>)> {
    let (_, index_bytes) = small_entry(&mut entries, place, INDEX_NAME, MAX_INDEX_BYTES)?;
    let (_, sig_bytes) = small_entry(&mut entries, place, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)?;
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
    Ok((Signed { index, key_id, trusted_comment }, entries))
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

    /// Checks one entry's header against the index: a plain regular file, listed, seen once,
    /// with the listed size. Returns what it is and its place for messages.
    pub fn admit<R: Read>(&mut self, entry: &tar::Entry<'_, R>, place: &str) -> Result<(Item<'a>, String)> {
        let name = entry_name(entry, place)?;
        let at = format!("{place}: entry {name}");
        if !self.seen.insert(name.clone()) {
            return Err(Error::integrity(at, "duplicate entry"));
        }
        let size = entry.header().size().map_err(|e| Error::integrity(&at, e.to_string()))?;
        let item = match (self.blobs.get(&name), self.files.get(name.as_str())) {
            (Some(b), _) => Item::Blob(b),
            (None, Some(f)) => Item::File(f),
            (None, None) => return Err(Error::integrity(at, "not listed in the signed index")),
        };
        let (_, want) = item.digest_and_size();
        if size != want {
            return Err(Error::integrity(at, format!("size is {size} bytes, the signed index says {want}")));
        }
        Ok((item, at))
    }

    /// Nothing the index lists may be missing.
    pub fn check_complete(&self, place: &str) -> Result<()> {
        for b in &self.index.blobs {
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
fn small_entry<R: Read>(
    entries: &mut tar::Entries<'_, R>,
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
    let entry = entries.next().ok_or_else(not_bundle)?;
    let entry = entry.map_err(|e| Error::integrity(place, format!("malformed tar: {e}")))?;
    let name = entry_name(&entry, place)?;
    if name != want {
        return Err(Error::integrity(
            place,
            format!("first entries must be {INDEX_NAME} and {SIGNATURE_NAME}, found `{name}` where {want} belongs"),
        ));
    }
    let bytes = json::read_limited(entry, limit)
        .map_err(|e| Error::io(format!("{place}: {want}"), e).into_integrity())?
        .map_err(|msg| Error::integrity(format!("{place}: {want}"), msg))?;
    Ok((name, bytes))
}

/// A bundle holds only plain ustar regular files with clean relative names.
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>, place: &str) -> Result<String> {
    let h = entry.header();
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let at = format!("{place}: entry `{}`", raw.escape_debug());
    if h.as_ustar().is_none() {
        return Err(Error::integrity(at, "not a plain ustar header (GNU or v7 headers are not used in bundles)"));
    }
    let kind = h.entry_type();
    if !matches!(kind, tar::EntryType::Regular) {
        let what = match kind {
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => "a PAX extension header".to_owned(),
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => "a GNU long-name header".to_owned(),
            tar::EntryType::Symlink | tar::EntryType::Link => "a link".to_owned(),
            other => format!("entry type {:?}", other.as_byte() as char),
        };
        return Err(Error::integrity(at, format!("{what}; bundles hold only regular files")));
    }
    let clean = crate::source::store::normalise(&raw).map_err(|why| Error::integrity(&at, why))?;
    if clean != raw {
        return Err(Error::integrity(at, "entry name is not in canonical form"));
    }
    Ok(clean)
}

/// Each image's manifests must reach exactly the blobs the index says the image uses.
pub(crate) fn check_graph(index: &BundleIndex, manifests: &BTreeMap<Digest, Vec<u8>>, place: &str) -> Result<()> {
    let listed: HashSet<&Digest> = index.blobs.iter().map(|b| &b.digest).collect();
    for img in &index.images {
        let at = format!("{place}: image {}", img.name);
        let mut reached: Vec<&Digest> = Vec::new();
        let mut todo = vec![(img.digest.clone(), img.media_type.clone())];
        while let Some((digest, media_type)) = todo.pop() {
            let bytes = manifests
                .get(&digest)
                .ok_or_else(|| Error::integrity(&at, format!("manifest {digest} is not in the bundle")))?;
            let parsed = image::parse_manifest(bytes, &media_type)
                .map_err(|e| Error::integrity(&at, format!("{digest}: {e}")))?;
            reached.push(manifests.get_key_value(&digest).expect("present").0);
            match parsed {
                Parsed::Index(i) => todo.extend(i.manifests.into_iter().map(|d| (d.digest, d.media_type))),
                Parsed::Manifest(m) => {
                    for d in std::iter::once(&m.config).chain(&m.layers) {
                        let hit = listed
                            .get(&d.digest)
                            .ok_or_else(|| Error::integrity(&at, format!("blob {} is not in the bundle", d.digest)))?;
                        reached.push(hit);
                    }
                }
            }
        }
        let reached: HashSet<&Digest> = reached.into_iter().collect();
        let claimed: HashSet<&Digest> = img.blobs.iter().collect();
        if reached != claimed {
            return Err(Error::integrity(
                at,
                "the blobs its manifests use differ from the blobs the signed index lists for it",
            ));
        }
    }
    Ok(())
}

pub(crate) struct Counting<R> {
    pub inner: R,
    pub pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// After the last entry come at least `min_zeros` zero bytes (the two-block end marker, less what
/// the tar reader already consumed) and nothing else.
pub(crate) fn check_tail<R: Read>(mut c: Counting<R>, place: &str, min_zeros: u64) -> Result<()> {
    let end = c.pos;
    let mut buf = vec![0u8; 1 << 16];
    let mut zeros = 0u64;
    loop {
        let n = c.read(&mut buf).map_err(|e| Error::io(place, e).into_integrity())?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Err(Error::integrity(
                place,
                format!("trailing data after the end of the archive at byte {}", end + zeros + i as u64),
            ));
        }
        zeros += n as u64;
    }
    if end == 0 || zeros < min_zeros {
        return Err(Error::integrity(place, "truncated: the archive's end marker is missing"));
    }
    Ok(())
}
