//! Delta bundles on the connected side: which blobs a new bundle may leave out because a base
//! (an earlier bundle of its series, or just that bundle's signed index) already carried them.
//!
//! A base is read only as far as its signed index and checked against the operator's own public
//! key, so the connected side can keep small index files ([`write_index_file`]) instead of old
//! bundles. [`Delta::plan`] owns the rule of what a delta carries: every manifest and index (a
//! sink needs them to tag, and they are small), and every config or layer that no base carries.
//! A base that is itself a delta lends what its own bases carry; those are recorded as bases too,
//! so every blob left out names the bundle that holds it. See docs/bundle-format.md.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};
use std::path::Path;

use crate::archive::{self, Stream};
use crate::atomic::AtomicFile;
use crate::bundle::format::{BaseEntry, BlobEntry, BundleIndex, INDEX_NAME, SIGNATURE_NAME, Series, epoch_seconds};
use crate::bundle::reader::{self, Trust};
use crate::bundle::sign::PublicKey;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image;

/// A base's signed index, its signature checked.
pub struct Base {
    pub place: String,
    pub index: BundleIndex,
    pub entry: BaseEntry,
}

impl Base {
    /// Reads the signed index at the start of `path` (a bundle or an index file), never a blob.
    pub fn read(path: &Path, key: &PublicKey) -> Result<Base> {
        let place = format!("base {}", path.display());
        let file = fs_err::File::open(path).at(|| place.clone())?;
        Self::from_reader(BufReader::new(file), &place, Trust::Key(key))
    }

    /// A base read from `src`; `trust` is the key its signature must verify with.
    pub fn from_reader(src: impl Read, place: &str, trust: Trust<'_>) -> Result<Base> {
        let mut tar = archive::Reader::new(Stream(src), place).plain();
        let signed = reader::open_signed(&mut tar, place, trust)?;
        let Some(position) = signed.index.position() else {
            let msg = "a schema version 1 bundle has no series or sequence number, so no delta can follow it";
            return Err(Error::bad(place, msg));
        };
        let entry = BaseEntry {
            bundle_id: signed.index.bundle_id.clone(),
            index_digest: signed.index_digest,
            series: position.series,
            sequence: position.sequence,
        };
        Ok(Base { place: place.to_owned(), index: signed.index, entry })
    }
}

/// Reads every base, refusing one of another series than `series`.
pub fn read_bases(paths: &[impl AsRef<Path>], key: &PublicKey, series: &Series) -> Result<Vec<Base>> {
    let mut bases = Vec::new();
    for path in paths {
        let base = Base::read(path.as_ref(), key)?;
        if &base.entry.series != series {
            let msg = format!("belongs to series `{}`; this bundle is of series `{series}`", base.entry.series);
            return Err(Error::bad(&base.place, msg));
        }
        bases.push(base);
    }
    Ok(bases)
}

/// The sequence number of a bundle made from `bases`: `given`, which must come after every base,
/// or else the creation time, or one more than the highest base's if that is larger.
pub fn sequence(given: Option<u64>, created: u64, bases: &[Base]) -> Result<u64> {
    let highest = bases.iter().max_by_key(|b| b.entry.sequence);
    match (given, highest) {
        (Some(n), Some(b)) if n <= b.entry.sequence => {
            Err(Error::bad("--sequence", format!("{n} is not after {}, the sequence of {}", b.entry.sequence, b.place)))
        }
        (Some(n), _) => Ok(n),
        (None, Some(b)) => Ok(created.max(b.entry.sequence.saturating_add(1))),
        (None, None) => Ok(created),
    }
}

/// A delta's bases and the blobs it leaves to them, by the bundle id of the base that carries each.
#[derive(Debug, Default)]
pub struct Delta {
    pub bases: Vec<BaseEntry>,
    pub carried_by: BTreeMap<Digest, String>,
}

impl Delta {
    /// A full bundle: no base, every blob carried.
    pub fn full() -> Delta {
        Delta::default()
    }

    pub fn carries(&self, digest: &Digest) -> bool {
        !self.carried_by.contains_key(digest)
    }

    /// Which of `blobs` (digest, size, media type) the new bundle may leave to `bases`: every
    /// config and layer some base carries, or relies on a base of its own for, with the same size.
    pub fn plan<'a>(bases: &[Base], blobs: impl IntoIterator<Item = (&'a Digest, u64, &'a str)>) -> Delta {
        let listed: Vec<HashMap<&Digest, &BlobEntry>> =
            bases.iter().map(|b| b.index.blobs.iter().map(|e| (&e.digest, e)).collect()).collect();
        let mut delta = Delta::full();
        let mut inherited: BTreeMap<String, BaseEntry> = BTreeMap::new();
        for (digest, size, media_type) in blobs {
            let holders = bases.iter().zip(&listed).filter_map(|(base, l)| Some((base, l.get(digest)?)));
            let mut holders: Vec<(&Base, &&BlobEntry)> = holders.filter(|(_, e)| e.size == size).collect();
            if must_carry(media_type, !holders.is_empty()) {
                continue;
            }
            // A base that carries the blob itself first: one bundle less to look for.
            holders.sort_by_key(|(_, e)| !e.is_carried());
            let Some((base, entry)) = holders.first() else { continue };
            let id = match &entry.carried_by {
                None => base.entry.bundle_id.clone(),
                Some(id) => {
                    if let Some(b) = base.index.bases.iter().find(|b| &b.bundle_id == id) {
                        inherited.entry(id.clone()).or_insert_with(|| b.clone());
                    }
                    id.clone()
                }
            };
            delta.carried_by.insert(digest.clone(), id);
        }
        for entry in bases.iter().map(|b| b.entry.clone()).chain(inherited.into_values()) {
            if !delta.bases.iter().any(|b| b.bundle_id == entry.bundle_id) {
                delta.bases.push(entry);
            }
        }
        delta
    }
}

/// The rule of what a delta carries: every manifest and index, and every other blob no base lists.
pub fn must_carry(media_type: &str, in_a_base: bool) -> bool {
    image::is_manifest_type(media_type) || image::is_index_type(media_type) || !in_a_base
}

/// `airlock index`: copies a bundle's signed index and its signature, byte for byte, into a small
/// ustar file at `out`, which every reader of a bundle's index (and `create --base`) takes as it
/// takes the bundle itself. Nothing is verified here; whoever uses the file checks its signature.
pub fn write_index_file(src: impl Read, place: &str, out: &Path) -> Result<BundleIndex> {
    let mut tar = archive::Reader::new(Stream(src), place).plain();
    let (index_bytes, sig_bytes) = reader::signed_entries(&mut tar, place)?;
    let index = BundleIndex::parse(&format!("{place}: {INDEX_NAME}"), &index_bytes).map_err(Error::into_integrity)?;
    let mtime = epoch_seconds(&index.created).unwrap_or(0);
    let file = AtomicFile::create(out)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file.file()));
    for (name, bytes) in [(INDEX_NAME, &index_bytes), (SIGNATURE_NAME, &sig_bytes)] {
        let header = crate::bundle::writer::header(name, bytes.len() as u64, mtime);
        builder.append(&header, &bytes[..]).at(|| file.place())?;
    }
    let mut w = builder.into_inner().at(|| file.place())?;
    std::io::Write::flush(&mut w).at(|| file.place())?;
    drop(w);
    file.commit(0o644)?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn digest(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    /// A base `id` at `sequence` listing blobs (n, carried by) of 10 bytes, and `bases` of its own.
    fn base(id: &str, sequence: u64, blobs: &[(u8, Option<&str>)], bases: Vec<BaseEntry>) -> Base {
        let series = Series::try_from("s".to_owned()).unwrap();
        let entry = BaseEntry { bundle_id: id.into(), index_digest: digest(0), series: series.clone(), sequence };
        let blobs = blobs
            .iter()
            .map(|(n, by)| BlobEntry {
                digest: digest(*n),
                size: 10,
                media_type: LAYER.into(),
                carried_by: by.map(str::to_owned),
            })
            .collect();
        let index = BundleIndex {
            schema_version: 2,
            media_type: String::new(),
            bundle_id: id.into(),
            created: String::new(),
            tool: String::new(),
            images: Vec::new(),
            blobs,
            files: Vec::new(),
            series: Some(series),
            sequence: Some(sequence),
            expires: None,
            bases,
        };
        Base { place: format!("base {id}"), index, entry }
    }

    #[test]
    fn a_delta_leaves_out_what_a_base_or_its_own_base_carries_but_never_a_manifest() {
        let full = base("full", 1, &[(1, None), (2, None)], Vec::new());
        let d1 = base("d1", 2, &[(1, Some("full")), (3, None)], vec![full.entry.clone()]);
        let (one, two, three, four, five) = (digest(1), digest(2), digest(3), digest(4), digest(5));
        let blobs =
            [(&one, 10, LAYER), (&three, 10, LAYER), (&four, 10, LAYER), (&five, 10, MANIFEST), (&two, 9, LAYER)];
        let delta = Delta::plan(&[d1], blobs);
        assert_eq!(delta.carried_by.get(&one).map(String::as_str), Some("full"), "inherited from d1's base");
        assert_eq!(delta.carried_by.get(&three).map(String::as_str), Some("d1"));
        assert!(delta.carries(&four) && delta.carries(&five) && delta.carries(&two), "new, a manifest, another size");
        let ids: Vec<&str> = delta.bases.iter().map(|b| b.bundle_id.as_str()).collect();
        assert_eq!(ids, ["d1", "full"]);
    }

    #[test]
    fn a_delta_comes_after_its_highest_base() {
        let bases = [base("a", 5, &[], Vec::new()), base("b", 100, &[], Vec::new())];
        assert_eq!(sequence(None, 50, &bases).unwrap(), 101);
        assert_eq!(sequence(None, 500, &bases).unwrap(), 500);
        assert_eq!(sequence(Some(101), 0, &bases).unwrap(), 101);
        assert!(sequence(Some(100), 0, &bases).unwrap_err().to_string().contains("100 is not after 100"));
        assert_eq!(sequence(None, 7, &[]).unwrap(), 7);
    }
}
