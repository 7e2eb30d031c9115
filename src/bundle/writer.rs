//! Writes a bundle: the signed index first, then the OCI layout and `docker load` metadata, then
//! every blob once, as one reproducible ustar archive committed atomically at the output path.
//!
//! Every digest and size is known before the first blob byte arrives, so the archive is planned
//! first (`Layout`: the offset of every entry) and the blobs are then copied into their slots
//! at once, each on a worker of the transfer pool, hashed on the way; the index and its signature
//! are written first, as they lead the archive, and the output is committed only when every slot
//! is verified. The output is byte for byte the sequential ustar archive of the same entries
//! (sorted blobs, fixed headers), whatever order blobs arrive in.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::bundle::delta::Delta;
use crate::bundle::format::{
    BlobEntry, BundleIndex, FileEntry, INDEX_NAME, ImageEntry, MEDIA_TYPE, Position, SCHEMA_VERSION, SIGNATURE_NAME,
    created_rfc3339,
};
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::Trust;
use crate::bundle::sign::SecretKey;
use crate::bundle::views;
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::image::{self, Parsed};
use crate::plan::{Blob, Collection, FileStamp, Image, Opened};
use crate::progress::{Moving, Observer, Phase};
use crate::transfer::Pool;
use crate::volume::list::PartList;
use crate::volume::output::{Output, Split};

pub struct WriteOptions<'a> {
    /// Seconds since the epoch, recorded as the creation time and every entry's mtime.
    pub created: u64,
    /// The bundle's series, sequence number and expiry (seconds since the epoch).
    pub position: Position,
    pub key: &'a SecretKey,
    /// Told how many blob bytes have been written, as they are.
    pub observer: &'a dyn Observer,
    /// Decompress every layer of the written bundle and check it against its `diff_id` before
    /// the bundle is committed ([`crate::bundle::layers`]).
    pub check_layers: bool,
    /// Copies blobs into the bundle, several at once.
    pub pool: &'a Pool,
    /// A delta's bases and the blobs it leaves to them ([`Delta::full`]: none).
    pub delta: &'a Delta,
    /// Volumes of a fixed size (`--volume-size`) and parity parts, instead of one file.
    pub split: Option<Split>,
}

/// What `create` reports.
#[derive(Debug)]
pub struct Written {
    pub index: BundleIndex,
    pub bundle_bytes: u64,
    /// Blob bytes that separate per-image archives would have stored again.
    pub bytes_saved: u64,
    /// The signed part list, when the bundle was split into volumes.
    pub parts: Option<PartList>,
}

pub fn write(coll: &Collection, out: &Path, opts: &WriteOptions<'_>) -> Result<Written> {
    let images = image_entries(coll, opts.delta);
    let files = views::files(&images, &|d| parts(coll, d)).map_err(|why| Error::bad("bundle views", why))?;
    let index = build_index(coll, images, &files, opts, opts.delta)?;
    let index_bytes = index.to_bytes();
    let comment = format!("timestamp:{}\tfile:{INDEX_NAME}\tbundle:{}", opts.created, index.bundle_id);
    let signature = opts.key.sign(&index_bytes, &comment);

    let mut small: Vec<(&str, &[u8])> = vec![(INDEX_NAME, &index_bytes), (SIGNATURE_NAME, signature.as_bytes())];
    small.extend(files.iter().map(|(path, bytes)| (path.as_str(), &bytes[..])));
    let mut layout = Layout::default();
    let small: Vec<(u64, &str, &[u8])> =
        small.into_iter().map(|(path, bytes)| (layout.place(bytes.len() as u64), path, bytes)).collect();
    let carried: Vec<&Blob> = coll.blobs.values().filter(|b| opts.delta.carries(&b.descriptor.digest)).collect();
    let blobs: Vec<(u64, &Blob)> = carried.into_iter().map(|b| (layout.place(b.descriptor.size), b)).collect();

    let place = || out.display().to_string();
    // Every gap (padding, the end-of-archive blocks) reads as zeros, as a tar writer pads.
    let output = Output::create(out, layout.archive_len(), opts.split)?;
    let file = &output;
    let total = blobs.iter().map(|(_, b)| b.descriptor.size).sum();
    let moving = Moving::begin((), opts.observer, Phase::Write, &place(), total);
    let moved = |n: u64| moving.observer_moved(n);
    // The small entries lead the archive: written first, so digests and parity of a split bundle
    // follow the blobs as they land (nothing is visible before the commit).
    for (at, path, bytes) in small {
        put(file, at, path, bytes.len() as u64, opts.created)?;
        file.write_all_at(bytes, at + BLOCK)?;
    }
    file.zeros(layout.archive_len() - 2 * BLOCK, 2 * BLOCK)?;
    opts.pool.try_for_each(&blobs, |(at, blob)| {
        let d = &blob.descriptor;
        put(file, *at, &d.digest.blob_path(), d.size, opts.created)?;
        copy_blob(file, at + BLOCK, blob, &moved)
    })?;
    if opts.check_layers {
        let written = IndexedBundle::open(Arc::new(file.written()?), Trust::Insecure)?;
        super::layers::check_bundle(&written)?;
    }
    let (bundle_bytes, parts) = output.commit(&index.bundle_id, opts.key, opts.created)?;
    let bytes_saved = bytes_saved(&index);
    Ok(Written { index, bundle_bytes, bytes_saved, parts })
}

const BLOCK: u64 = 512;

/// Where each entry of the ustar archive starts, planned before a byte is written: a 512-byte
/// header, the data, zeros up to the next 512-byte boundary; two zero blocks end the archive.
#[derive(Default)]
struct Layout {
    next: u64,
}

impl Layout {
    /// The offset of the header of an entry of `size` bytes.
    fn place(&mut self, size: u64) -> u64 {
        let at = self.next;
        self.next = at + BLOCK + size.div_ceil(BLOCK) * BLOCK;
        at
    }

    fn archive_len(&self) -> u64 {
        self.next + 2 * BLOCK
    }
}

/// Writes an entry's header at `at`; the padding after its data stays zeros.
fn put(file: &Output, at: u64, path: &str, size: u64, mtime: u64) -> Result<()> {
    file.write_all_at(header(path, size, mtime).as_bytes(), at)?;
    file.zeros(at + BLOCK + size, size.next_multiple_of(BLOCK) - size)
}

/// Bytes copied per read: small enough that a pool of workers keeps memory flat.
const COPY_BUFFER: usize = 256 << 10;
/// What a read is compared with to leave zeros as a hole (a slice comparison is a `memcmp`).
static ZEROS: [u8; COPY_BUFFER] = [0; COPY_BUFFER];

/// Streams one blob into its slot at `at`, verified against its digest on the way: a source that
/// sends more than the blob's size fails before its excess is written, so a slot never overflows.
/// A local copy this run has verified already (`--cache`) is copied in the kernel instead, if its
/// stamp says it has not changed since.
fn copy_blob(file: &Output, at: u64, blob: &Blob, moved: &(dyn Fn(u64) + Sync)) -> Result<()> {
    let d = &blob.descriptor;
    if let Some((path, stamp)) = blob.origin.verified_file() {
        let place = path.display().to_string();
        let src = fs_err::File::open(path).map_err(|e| Error::io(&place, e))?;
        if FileStamp::of(&src.metadata().map_err(|e| Error::io(&place, e))?) != *stamp {
            return Err(Error::integrity(place, format!("changed after it was checked against {}", d.digest)));
        }
        return file.copy_file_at(src.file(), &place, d.size, at, moved);
    }
    let Opened { reader, blame } = blob.open()?;
    let mut source = VerifyingReader::new(reader, d.digest.clone(), d.size);
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut pos = at;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(blame.error(e)),
        };
        // The output starts as zeros (a sized new file): a run of zeros is left as a hole, so a
        // sparse layer stays sparse in the bundle.
        if buf[..n] != ZEROS[..n] {
            file.write_all_at(&buf[..n], pos)?;
        } else {
            file.zeros(pos, n as u64)?;
        }
        pos += n as u64;
        moved(n as u64);
    }
}

/// A plain ustar header for a regular file with airlock's fixed owner and mode.
pub(crate) fn header(path: &str, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("bundle paths are short and relative");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// Images in name order; a name is unique in a collection.
fn sorted_images(coll: &Collection) -> Vec<&Image> {
    let mut v: Vec<&Image> = coll.images.iter().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn image_entries(coll: &Collection, delta: &Delta) -> Vec<ImageEntry> {
    sorted_images(coll)
        .into_iter()
        .map(|i| ImageEntry {
            name: i.name.to_string(),
            media_type: i.root.media_type.clone(),
            digest: i.root.digest.clone(),
            size: i.root.size,
            platforms: i.platforms.iter().map(|p| p.to_string()).collect(),
            filtered_from: i.filtered_from.clone(),
            docker_load: views::docker_loadable(&i.root.media_type, &i.name, &i.blobs, &|d| delta.carries(d)),
            blobs: i.blobs.clone(),
            attachments: i.attachments.clone(),
        })
        .collect()
}

fn build_index(
    coll: &Collection,
    images: Vec<ImageEntry>,
    files: &[(String, Vec<u8>)],
    opts: &WriteOptions<'_>,
    delta: &Delta,
) -> Result<BundleIndex> {
    let (created, position) = (opts.created, &opts.position);
    let blobs: Vec<BlobEntry> = coll
        .blobs
        .values()
        .map(|b| BlobEntry {
            digest: b.descriptor.digest.clone(),
            size: b.descriptor.size,
            media_type: b.descriptor.media_type.clone(),
            carried_by: delta.carried_by.get(&b.descriptor.digest).cloned(),
        })
        .collect();
    let files: Vec<FileEntry> = files
        .iter()
        .map(|(path, bytes)| FileEntry {
            path: path.clone(),
            digest: Digest::of_bytes(bytes),
            size: bytes.len() as u64,
        })
        .collect();
    let created = created_rfc3339(created)?;
    let expires = position.expires.map(created_rfc3339).transpose()?;
    let series = (&position.series, position.sequence, &expires);
    let mut id_source = serde_json::to_vec(&(&created, &images, &blobs, &files, series)).expect("serialises");
    if !delta.bases.is_empty() {
        // A full bundle's id stays what it was before deltas existed.
        id_source.extend(serde_json::to_vec(&delta.bases).expect("serialises"));
    }
    let bundle_id = Digest::of_bytes(&id_source).hex()[..32].to_owned();
    Ok(BundleIndex {
        schema_version: SCHEMA_VERSION,
        media_type: MEDIA_TYPE.into(),
        bundle_id,
        created,
        tool: format!("airlock {}", env!("CARGO_PKG_VERSION")),
        images,
        blobs,
        files,
        series: Some(position.series.clone()),
        sequence: Some(position.sequence),
        expires,
        bases: delta.bases.clone(),
    })
}

/// Blob bytes that one archive per distinct image would have stored beyond the bundle's own.
fn bytes_saved(index: &BundleIndex) -> u64 {
    let sizes: BTreeMap<&Digest, u64> = index.blobs.iter().map(|b| (&b.digest, b.size)).collect();
    let mut roots = HashSet::new();
    let naive: u64 = index
        .images
        .iter()
        .filter(|i| roots.insert(&i.digest))
        .flat_map(|i| i.blobs.iter())
        .map(|d| sizes.get(d).copied().unwrap_or(0))
        .sum();
    naive.saturating_sub(index.total_blob_bytes())
}

/// The config and layers of a single-platform manifest the collection holds as bytes.
fn parts(coll: &Collection, digest: &Digest) -> Option<views::Parts> {
    let blob = coll.blobs.get(digest)?;
    match image::parse_manifest(blob.bytes()?, &blob.descriptor.media_type) {
        Ok(Parsed::Manifest(m)) => Some((m.config.digest, m.layers.into_iter().map(|l| l.digest).collect())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Descriptor;
    use crate::plan::{Found, Origin};

    fn collection(sizes: &[usize]) -> Collection {
        let mut coll = Collection::default();
        for (i, &n) in sizes.iter().enumerate() {
            let bytes: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            let desc = Descriptor::new("application/octet-stream", Digest::of_bytes(&bytes), n as u64);
            coll.add_blob(desc, Origin::Bytes(bytes.into()));
        }
        coll
    }

    fn position() -> Position {
        let series = crate::bundle::format::Series::try_from("default".to_owned()).unwrap();
        Position { series, sequence: 1, expires: None }
    }

    fn key() -> SecretKey {
        let k = crate::bundle::sign::generate(None).unwrap();
        SecretKey::from_box("k", &k.secret_box, || unreachable!()).unwrap()
    }

    /// Writes `coll` to `out`, one file, a fresh key, four workers.
    fn write_plain(coll: &Collection, out: &Path, created: u64) -> Result<Written> {
        let pool = Pool::new(4).unwrap();
        let opts = WriteOptions {
            created,
            position: position(),
            key: &key(),
            observer: &crate::progress::Silent,
            check_layers: false,
            pool: &pool,
            delta: &Delta::full(),
            split: None,
        };
        write(coll, out, &opts)
    }

    #[test]
    fn the_planned_archive_is_the_sequential_ustar_archive_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.tar");
        let coll = collection(&[0, 1, 511, 512, 513, 70_000, 300_000]);
        let created = 1_700_000_000;
        write_plain(&coll, &out, created).unwrap();
        let planned = std::fs::read(&out).unwrap();

        // The same entries, in the same order, through the tar crate's sequential writer.
        let mut sequential = tar::Builder::new(Vec::new());
        for entry in tar::Archive::new(&planned[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            sequential.append(&header(&path, data.len() as u64, 1_700_000_000), &data[..]).unwrap();
        }
        let sequential = sequential.into_inner().unwrap();
        assert_eq!(planned.len(), sequential.len());
        assert!(planned == sequential, "the planned archive differs from the sequential one");
    }

    #[test]
    fn a_verified_copy_is_taken_as_it_is_but_one_replaced_since_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut coll = collection(&[70_000]);
        let blob = coll.blobs.values_mut().next().unwrap();
        let cached = dir.path().join("cached");
        std::fs::write(&cached, blob.bytes().unwrap()).unwrap();
        let stamp = FileStamp::of(&std::fs::metadata(&cached).unwrap());
        blob.origin = Origin::Cached { path: cached.clone(), stamp };
        let created = 0;
        let out = dir.path().join("b.tar");
        write_plain(&coll, &out, created).unwrap();
        let blob = coll.blobs.values().next().unwrap();
        let bundle = std::fs::read(&out).unwrap();
        let mut entries = tar::Archive::new(&bundle[..]);
        let mut entry = entries
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some(&blob.descriptor.digest.blob_path()))
            .unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        assert!(data == std::fs::read(&cached).unwrap(), "the slot does not hold the copy");

        let other = dir.path().join("other");
        std::fs::write(&other, vec![7u8; 70_000]).unwrap();
        std::fs::rename(&other, &cached).unwrap();
        let err = write_plain(&coll, &dir.path().join("c.tar"), created).unwrap_err();
        assert_eq!(err.class(), crate::error::Class::Integrity, "{err}");
        assert!(err.to_string().contains("changed after it was checked"), "{err}");
        assert!(!dir.path().join("c.tar").exists());
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_leaves_no_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.tar");
        let mut coll = collection(&[1000, 2000]);
        let victim = coll.blobs.values_mut().next().unwrap();
        victim.origin = Origin::Bytes(vec![7u8; victim.descriptor.size as usize].into());
        let digest = victim.descriptor.digest.clone();
        let created = 0;
        let err = write_plain(&coll, &out, created).unwrap_err();
        assert_eq!(err.class(), crate::error::Class::Integrity, "{err}");
        assert!(err.to_string().starts_with(&format!("{digest}: digest mismatch")), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a partial bundle was left behind");
    }
}
