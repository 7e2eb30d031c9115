//! Writes a bundle: the signed index first, then the OCI layout and `docker load` metadata, then
//! every blob once, as one reproducible ustar archive committed atomically at the output path.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufWriter, Read};
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::bundle::format::{BlobEntry, BundleIndex, FileEntry, INDEX_NAME, ImageEntry, MEDIA_TYPE, SIGNATURE_NAME};
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::Trust;
use crate::bundle::sign::SecretKey;
use crate::bundle::views;
use crate::digest::{Digest, VerifyingReader, Watched};
use crate::error::{Error, IoContext, Result};
use crate::image::{self, Parsed};
use crate::progress::{Moving, Observer, Phase};
use crate::source::{Collection, Image, Origin};

pub struct WriteOptions<'a> {
    /// Seconds since the epoch, recorded as the creation time and every entry's mtime.
    pub created: u64,
    pub key: &'a SecretKey,
    /// Told how many blob bytes have been written, as they are.
    pub observer: &'a dyn Observer,
    /// Decompress every layer of the written bundle and check it against its `diff_id` before
    /// the bundle is committed ([`crate::layers`]).
    pub check_layers: bool,
}

/// What `create` reports.
#[derive(Debug)]
pub struct Written {
    pub index: BundleIndex,
    pub bundle_bytes: u64,
    /// Blob bytes that separate per-image archives would have stored again.
    pub bytes_saved: u64,
}

pub fn write(coll: &Collection, out: &Path, opts: &WriteOptions<'_>) -> Result<Written> {
    let images = image_entries(coll);
    let files = views::files(&images, &|d| parts(coll, d)).map_err(|why| Error::bad("bundle views", why))?;
    let index = build_index(coll, images, &files, opts.created)?;
    let index_bytes = index.to_bytes();
    let comment = format!("timestamp:{}\tfile:{INDEX_NAME}\tbundle:{}", opts.created, index.bundle_id);
    let signature = opts.key.sign(&index_bytes, &comment);

    let place = || out.display().to_string();
    let tmp = AtomicFile::create(out)?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.file()));
    let total = coll.blobs.values().map(|b| b.descriptor.size).sum();
    let mut moving = Moving::begin((), opts.observer, Phase::Write, &place(), total);
    let mut put = |path: &str, size: u64, data: &mut dyn Read| -> std::io::Result<()> {
        tar.append(&header(path, size, opts.created), moving.through(data))
    };
    put(INDEX_NAME, index_bytes.len() as u64, &mut &index_bytes[..]).at(place)?;
    put(SIGNATURE_NAME, signature.len() as u64, &mut signature.as_bytes()).at(place)?;
    for (path, bytes) in &files {
        put(path, bytes.len() as u64, &mut &bytes[..]).at(place)?;
    }
    for blob in coll.blobs.values() {
        let d = &blob.descriptor;
        let path = d.digest.blob_path();
        match &blob.origin {
            Origin::Bytes(bytes) => put(&path, d.size, &mut &bytes[..]).at(place)?,
            Origin::Staged(file) => {
                let mut f = fs_err::File::open(file).at(|| file.display().to_string())?;
                put(&path, d.size, &mut f).at(place)?;
            }
            Origin::Cached(file) => {
                let f = fs_err::File::open(file).at(|| file.display().to_string())?;
                let mut v = Watched { inner: VerifyingReader::new(f, d.digest.clone(), d.size), failed: false };
                let at = || file.display().to_string();
                put(&path, d.size, &mut v).map_err(|e| Error::io(if v.failed { at() } else { place() }, e))?;
            }
            Origin::Registry { client, repo } => {
                let r = client.open_blob(repo, &d.digest, d.size, 0)?;
                let at = || format!("{}/{repo}@{}", client.registry(), d.digest);
                let mut v = Watched { inner: VerifyingReader::new(r, d.digest.clone(), d.size), failed: false };
                put(&path, d.size, &mut v).map_err(|e| match v.failed {
                    true => crate::source::registry::read_error(&at(), e),
                    false => Error::io(place(), e),
                })?;
            }
            Origin::Store { store, path: src } => {
                let (r, _) = store.open(src)?;
                let mut v = Watched { inner: VerifyingReader::new(r, d.digest.clone(), d.size), failed: false };
                // A read error (or mismatch) is the source's fault; a write error the output's.
                put(&path, d.size, &mut v)
                    .map_err(|e| Error::io(if v.failed { store.place(src) } else { place() }, e))?;
            }
        }
    }
    let buf = tar.into_inner().at(place)?;
    buf.into_inner().map_err(|e| Error::io(place(), e.into_error()))?;
    if opts.check_layers {
        let written = IndexedBundle::open_named(tmp.temp_path(), place(), Trust::Insecure)?;
        crate::layers::check_bundle(&written)?;
    }
    // A bundle is not secret: the usual file mode, not tempfile's 0600.
    let bundle_bytes = tmp.commit(0o644)?;
    let bytes_saved = bytes_saved(&index);
    Ok(Written { index, bundle_bytes, bytes_saved })
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

fn image_entries(coll: &Collection) -> Vec<ImageEntry> {
    sorted_images(coll)
        .into_iter()
        .map(|i| ImageEntry {
            name: i.name.to_string(),
            media_type: i.root.media_type.clone(),
            digest: i.root.digest.clone(),
            size: i.root.size,
            platforms: i.platforms.iter().map(|p| p.to_string()).collect(),
            filtered_from: i.filtered_from.clone(),
            docker_load: views::docker_loadable(&i.root.media_type, &i.name),
            blobs: i.blobs.clone(),
        })
        .collect()
}

fn build_index(
    coll: &Collection,
    images: Vec<ImageEntry>,
    files: &[(String, Vec<u8>)],
    created: u64,
) -> Result<BundleIndex> {
    let blobs: Vec<BlobEntry> = coll
        .blobs
        .values()
        .map(|b| BlobEntry {
            digest: b.descriptor.digest.clone(),
            size: b.descriptor.size,
            media_type: b.descriptor.media_type.clone(),
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
    let created = crate::bundle::format::created_rfc3339(created)?;
    let id_source = serde_json::to_vec(&(&created, &images, &blobs, &files)).expect("serialises");
    let bundle_id = Digest::of_bytes(&id_source).hex()[..32].to_owned();
    let tool = format!("airlock {}", env!("CARGO_PKG_VERSION"));
    Ok(BundleIndex { schema_version: 1, media_type: MEDIA_TYPE.into(), bundle_id, created, tool, images, blobs, files })
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
    let Origin::Bytes(bytes) = &blob.origin else { return None };
    match image::parse_manifest(bytes, &blob.descriptor.media_type) {
        Ok(Parsed::Manifest(m)) => Some((m.config.digest, m.layers.into_iter().map(|l| l.digest).collect())),
        _ => None,
    }
}
