//! Writes a bundle: the signed index first, then the OCI layout and `docker load` metadata, then
//! every blob once, as one reproducible ustar archive committed atomically at the output path.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufWriter, Read};
use std::path::Path;

use serde_json::{Value, json};

use crate::atomic::AtomicFile;
use crate::bundle::format::{BlobEntry, BundleIndex, FileEntry, INDEX_NAME, ImageEntry, MEDIA_TYPE, SIGNATURE_NAME};
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::Trust;
use crate::bundle::sign::SecretKey;
use crate::digest::{Digest, VerifyingReader, Watched};
use crate::error::{Error, IoContext, Result};
use crate::image::{self, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, OCI_INDEX, Parsed};
use crate::source::{Collection, Image, Origin};

pub struct WriteOptions<'a> {
    /// Seconds since the epoch, recorded as the creation time and every entry's mtime.
    pub created: u64,
    pub key: &'a SecretKey,
    /// Called with the number of blob bytes written so far.
    pub progress: &'a (dyn Fn(u64) + Sync),
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
    let files = metadata_files(coll)?;
    let index = build_index(coll, &files, opts.created)?;
    let index_bytes = index.to_bytes();
    let comment = format!("timestamp:{}\tfile:{INDEX_NAME}\tbundle:{}", opts.created, index.bundle_id);
    let signature = opts.key.sign(&index_bytes, &comment);

    let place = || out.display().to_string();
    let tmp = AtomicFile::create(out)?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.file()));
    let mut put = |path: &str, size: u64, data: &mut dyn Read| -> std::io::Result<()> {
        tar.append(&header(path, size, opts.created), data)
    };
    put(INDEX_NAME, index_bytes.len() as u64, &mut &index_bytes[..]).at(place)?;
    put(SIGNATURE_NAME, signature.len() as u64, &mut signature.as_bytes()).at(place)?;
    for (path, bytes) in &files {
        put(path, bytes.len() as u64, &mut &bytes[..]).at(place)?;
    }
    let mut done = 0u64;
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
                let r = crate::source::registry::open_blob(client, repo, &d.digest)?;
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
        done += d.size;
        (opts.progress)(done);
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

fn build_index(coll: &Collection, files: &[(String, Vec<u8>)], created: u64) -> Result<BundleIndex> {
    let images: Vec<ImageEntry> = sorted_images(coll)
        .into_iter()
        .map(|i| ImageEntry {
            name: i.name.to_string(),
            media_type: i.root.media_type.clone(),
            digest: i.root.digest.clone(),
            size: i.root.size,
            platforms: i.platforms.iter().map(|p| p.to_string()).collect(),
            filtered_from: i.filtered_from.clone(),
            docker_load: docker_loadable(i),
            blobs: i.blobs.clone(),
        })
        .collect();
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

/// `oci-layout`, `index.json`, `manifest.json` and `repositories`, in that order.
fn metadata_files(coll: &Collection) -> Result<Vec<(String, Vec<u8>)>> {
    let images = sorted_images(coll);
    let layout = json!({"imageLayoutVersion": "1.0.0"});
    let manifests: Vec<Value> = images
        .iter()
        .map(|i| {
            let name = i.name.to_string();
            json!({
                "mediaType": i.root.media_type,
                "digest": i.root.digest,
                "size": i.root.size,
                "annotations": {ANNOTATION_CONTAINERD_NAME: name, ANNOTATION_REF_NAME: name},
            })
        })
        .collect();
    let oci_index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let (docker, repositories) = docker_load_files(coll, &images)?;
    let to_bytes = |v: &Value| serde_json::to_vec(v).expect("serialises");
    Ok(vec![
        ("oci-layout".into(), to_bytes(&layout)),
        ("index.json".into(), to_bytes(&oci_index)),
        ("manifest.json".into(), to_bytes(&docker)),
        ("repositories".into(), to_bytes(&repositories)),
    ])
}

/// Docker's classic store takes single-platform images with a tag (not a bare digest pin).
fn docker_loadable(image: &Image) -> bool {
    image::is_manifest_type(&image.root.media_type) && image.name.tag().is_some()
}

/// `manifest.json` (one entry per single-platform manifest, with all its tags) and `repositories`.
fn docker_load_files(coll: &Collection, images: &[&Image]) -> Result<(Value, Value)> {
    let mut entries: Vec<(Digest, Value, Vec<String>)> = Vec::new();
    let mut repositories = serde_json::Map::new();
    for image in images.iter().filter(|i| docker_loadable(i)) {
        let Some(Origin::Bytes(bytes)) = coll.blobs.get(&image.root.digest).map(|b| &b.origin) else {
            return Err(Error::bad(format!("image {}", image.name), "manifest bytes are not at hand"));
        };
        let Ok(Parsed::Manifest(m)) = image::parse_manifest(bytes, &image.root.media_type) else {
            return Err(Error::bad(format!("image {}", image.name), "manifest does not parse"));
        };
        let tag = image.name.familiar();
        let top = m.layers.last().map(|l| l.digest.hex().to_owned()).unwrap_or_default();
        let (repo, t) = tag.rsplit_once(':').unwrap_or((&tag, "latest"));
        repositories
            .entry(repo.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(t.into(), json!(top));
        match entries.iter_mut().find(|(d, _, _)| *d == image.root.digest) {
            Some((_, _, tags)) => tags.push(tag),
            None => {
                let layers: Vec<String> = m.layers.iter().map(|l| l.digest.blob_path()).collect();
                let v = json!({"Config": m.config.digest.blob_path(), "Layers": layers});
                entries.push((image.root.digest.clone(), v, vec![tag]));
            }
        }
    }
    let docker: Vec<Value> = entries
        .into_iter()
        .map(|(_, mut v, tags)| {
            v["RepoTags"] = json!(tags);
            v
        })
        .collect();
    Ok((Value::Array(docker), Value::Object(repositories)))
}
