//! `docker load` tarballs from a verified bundle, its blobs read through [`Blobs`] (the bundle
//! file itself, or a staging directory): `manifest.json`, `repositories` and each config and layer
//! once. Docker's classic store holds one platform per tag, so for an image
//! whose name points at a multi-platform index one platform is chosen (`--platform`, by default
//! the host's).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::atomic::AtomicFile;
use crate::bundle::writer::header;
use crate::digest::Digest;
use crate::digest::Watched;
use crate::error::{Error, IoContext, Result};
use crate::image::{self, Descriptor, Parsed, Platform};
use crate::progress::{Moving, Observer, Phase};
use crate::reference::Reference;
use crate::sink::Blobs;
use crate::sink::read_ahead::ReadAhead;

/// One image as `docker load` will see it.
#[derive(Debug, Clone)]
pub struct DockerImage {
    /// Tags in docker's short form (`busybox:1.36`).
    pub tags: Vec<String>,
    pub manifest: Digest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub platform: String,
    /// The index the manifest was chosen from, for multi-platform images.
    pub chosen_from: Option<Digest>,
}

/// The platform of the machine airlock runs on, in OCI terms.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Platform::linux(arch)
}

/// Resolves every image of the bundle to one manifest for `platform`.
pub fn plan(blobs: &dyn Blobs, platform: &Platform) -> Result<Vec<DockerImage>> {
    let mut by_manifest: BTreeMap<Digest, DockerImage> = BTreeMap::new();
    for entry in &blobs.index().images {
        let name = Reference::parse(&entry.name).map_err(|e| Error::integrity("signed index", e.to_string()))?;
        let at = format!("image {}", entry.name);
        let (manifest_desc, chosen_from) = if image::is_index_type(&entry.media_type) {
            let index = match read_parsed(blobs, &entry.digest, &entry.media_type, &at)? {
                Parsed::Index(i) => i,
                Parsed::Manifest(_) => unreachable!("parsed as index"),
            };
            let child =
                index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.matches(platform))).ok_or_else(
                    || {
                        Error::bad(
                            &at,
                            format!(
                                "has no platform {platform} (it has: {}); choose one with --platform",
                                entry.platforms.join(", ")
                            ),
                        )
                    },
                )?;
            (child.clone(), Some(entry.digest.clone()))
        } else {
            (Descriptor::new(&entry.media_type, entry.digest.clone(), entry.size), None)
        };
        let m = match read_parsed(blobs, &manifest_desc.digest, &manifest_desc.media_type, &at)? {
            Parsed::Manifest(m) => m,
            Parsed::Index(_) => return Err(Error::bad(&at, "nested indexes are not supported")),
        };
        let platform = manifest_desc.platform.as_ref().map_or_else(|| entry.platforms.join(","), |p| p.to_string());
        // A name pinned only by digest has no tag to load it under: it is loaded untagged, never
        // as `:latest`.
        let tags = name.tag().map(|_| name.familiar()).into_iter();
        by_manifest
            .entry(manifest_desc.digest.clone())
            .or_insert_with(|| DockerImage {
                tags: Vec::new(),
                manifest: manifest_desc.digest.clone(),
                config: m.config.clone(),
                layers: m.layers.clone(),
                platform,
                chosen_from,
            })
            .tags
            .extend(tags);
    }
    Ok(by_manifest.into_values().collect())
}

fn read_parsed(blobs: &dyn Blobs, digest: &Digest, media_type: &str, at: &str) -> Result<Parsed> {
    let bytes = blobs.read_small(digest)?;
    image::parse_manifest(&bytes, media_type).map_err(|e| Error::integrity(at, format!("{digest}: {e}")))
}

/// Writes the docker-archive tar for `images` to `out`, its blobs read from `blobs` (verified
/// again as they are read, when they come from a bundle file). `what` names the output to
/// `observer`, which is told the blob bytes as they are written, and in errors writing it.
pub fn write(
    blobs: &dyn Blobs,
    images: &[DockerImage],
    out: impl Write,
    mtime: u64,
    (observer, what): (&dyn Observer, &str),
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let place = || what.to_owned();
    for (name, bytes) in views(images) {
        tar.append(&header(name, bytes.len() as u64, mtime), &bytes[..]).at(place)?;
    }
    let unique = blobs_written(images);
    let total = unique.values().sum();
    let mut moving = Moving::begin((), observer, Phase::Write, what, total);
    for (digest, size) in unique {
        let mut src = Watched { inner: ReadAhead::new(blobs.open(digest)?), failed: false };
        let appended = tar.append(&header(&digest.blob_path(), size, mtime), moving.through(&mut src));
        // A read error is the bundle's (a blob that changed since it verified), not the output's.
        appended.map_err(|e| {
            if src.failed { Error::io(blobs.entry(digest), e).into_integrity() } else { Error::io(place(), e) }
        })?;
    }
    tar.into_inner().at(place)?.flush().at(place)?;
    Ok(())
}

/// The blobs the archive of `images` holds, each once: configs and layers, with their sizes.
pub fn blobs_written(images: &[DockerImage]) -> BTreeMap<&Digest, u64> {
    let mut unique = BTreeMap::new();
    for i in images {
        unique.insert(&i.config.digest, i.config.size);
        for l in &i.layers {
            unique.insert(&l.digest, l.size);
        }
    }
    unique
}

/// What `docker load` reads first: `manifest.json` and `repositories`.
fn views(images: &[DockerImage]) -> [(&'static str, Vec<u8>); 2] {
    let manifest: Vec<Value> = images
        .iter()
        .map(|i| {
            json!({
                "Config": i.config.digest.blob_path(),
                "RepoTags": i.tags,
                "Layers": i.layers.iter().map(|l| l.digest.blob_path()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut repositories = serde_json::Map::new();
    for i in images {
        let top = i.layers.last().map(|l| l.digest.hex().to_owned()).unwrap_or_default();
        for tag in &i.tags {
            let (repo, t) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
            let e = repositories.entry(repo.to_owned()).or_insert_with(|| json!({}));
            e.as_object_mut().expect("object").insert(t.to_owned(), json!(top));
        }
    }
    let bytes = |v: Value| serde_json::to_vec(&v).expect("serialises");
    [("manifest.json", bytes(Value::Array(manifest))), ("repositories", bytes(Value::Object(repositories)))]
}

/// Writes the archive to `dest` atomically (see [`AtomicFile`]).
pub fn write_file(
    blobs: &dyn Blobs,
    images: &[DockerImage],
    dest: &Path,
    mtime: u64,
    observer: &dyn Observer,
) -> Result<()> {
    let out = AtomicFile::create(dest)?;
    let buf = std::io::BufWriter::with_capacity(1 << 20, out.file());
    write(blobs, images, buf, mtime, (observer, &out.place()))?;
    out.commit(0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;
    use crate::bundle::format::BundleIndex;
    use crate::digest::VerifyingReader;

    /// A bundle file whose blobs changed after they verified: each now reads as `changed`.
    struct Changed(BundleIndex);

    impl Blobs for Changed {
        fn index(&self) -> &BundleIndex {
            &self.0
        }
        fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
            Ok(Box::new(VerifyingReader::new(Cursor::new(b"changed".to_vec()), digest.clone(), 7)))
        }
        fn place(&self) -> String {
            "b.tar".into()
        }
    }

    #[test]
    fn a_blob_that_changed_since_it_verified_fails_the_archive_naming_it_and_leaves_nothing() {
        let index = serde_json::from_value(json!({
            "schemaVersion": 2, "mediaType": crate::bundle::format::MEDIA_TYPE, "bundleId": "b",
            "created": "2026-01-01T00:00:00Z", "tool": "t", "images": [], "blobs": [], "files": [],
        }));
        let layer = Descriptor::new("application/vnd.oci.image.layer.v1.tar", Digest::of_bytes(b"layer"), 7);
        let image = DockerImage {
            tags: vec!["x:1".into()],
            manifest: Digest::of_bytes(b"m"),
            config: Descriptor::new("application/vnd.oci.image.config.v1+json", Digest::of_bytes(b"config"), 7),
            layers: vec![layer],
            platform: "linux/amd64".into(),
            chosen_from: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("images.tar");
        let got = write_file(&Changed(index.unwrap()), &[image], &dest, 0, &crate::progress::Silent);
        let Err(Error::Integrity { place, msg }) = got else { panic!("{got:?}") };
        assert_eq!(place, format!("b.tar: entry {}", Digest::of_bytes(b"config").blob_path()));
        assert!(msg.contains("digest mismatch"), "{msg}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no output, no temporary file");
    }
}
