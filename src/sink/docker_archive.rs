//! `docker load` tarballs from a staged (verified) bundle: `manifest.json`, `repositories` and
//! each config and layer once. Docker's classic store holds one platform per tag, so for an image
//! whose name points at a multi-platform index one platform is chosen (`--platform`, by default
//! the host's).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::atomic::AtomicFile;
use crate::bundle::writer::header;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::{self, Descriptor, Parsed, Platform};
use crate::progress::{Moving, Observer, Phase};
use crate::reference::Reference;
use crate::sink::Staged;

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
pub fn plan(staged: &Staged, platform: &Platform) -> Result<Vec<DockerImage>> {
    let mut by_manifest: BTreeMap<Digest, DockerImage> = BTreeMap::new();
    for entry in &staged.index().images {
        let name = Reference::parse(&entry.name).map_err(|e| Error::integrity("signed index", e.to_string()))?;
        let at = format!("image {}", entry.name);
        let (manifest_desc, chosen_from) = if image::is_index_type(&entry.media_type) {
            let index = match read_parsed(staged, &entry.digest, &entry.media_type, &at)? {
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
        let m = match read_parsed(staged, &manifest_desc.digest, &manifest_desc.media_type, &at)? {
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

fn read_parsed(staged: &Staged, digest: &Digest, media_type: &str, at: &str) -> Result<Parsed> {
    let path = staged.blob_path(digest);
    let bytes = crate::local_file::read_small(&path, crate::json::MAX_JSON_BYTES, "a manifest")?;
    image::parse_manifest(&bytes, media_type).map_err(|e| Error::integrity(at, format!("{digest}: {e}")))
}

/// Writes the docker-archive tar for `images` to `out` (named `what` to `observer`, which is
/// told the blob bytes as they are written).
pub fn write(
    staged: &Staged,
    images: &[DockerImage],
    out: impl Write,
    mtime: u64,
    (observer, what): (&dyn Observer, &str),
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let place = "docker archive";
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
    for (name, v) in [("manifest.json", Value::Array(manifest)), ("repositories", Value::Object(repositories))] {
        let bytes = serde_json::to_vec(&v).expect("serialises");
        tar.append(&header(name, bytes.len() as u64, mtime), &bytes[..]).at(|| place.to_owned())?;
    }
    let mut blobs: BTreeMap<&Digest, u64> = BTreeMap::new();
    for i in images {
        blobs.insert(&i.config.digest, i.config.size);
        for l in &i.layers {
            blobs.insert(&l.digest, l.size);
        }
    }
    let total = blobs.values().sum();
    let mut moving = Moving::begin((), observer, Phase::Write, what, total);
    for (digest, size) in blobs {
        let path = staged.blob_path(digest);
        let f = fs_err::File::open(&path).at(|| path.display().to_string())?;
        tar.append(&header(&digest.blob_path(), size, mtime), moving.through(f)).at(|| place.to_owned())?;
    }
    tar.into_inner().at(|| place.to_owned())?.flush().at(|| place.to_owned())?;
    Ok(())
}

/// Writes the archive to `dest` atomically (see [`AtomicFile`]).
pub fn write_file(
    staged: &Staged,
    images: &[DockerImage],
    dest: &Path,
    mtime: u64,
    observer: &dyn Observer,
) -> Result<()> {
    let out = AtomicFile::create(dest)?;
    let buf = std::io::BufWriter::with_capacity(1 << 20, out.file());
    write(staged, images, buf, mtime, (observer, &dest.display().to_string())).map_err(|e| match e {
        Error::Io { source, .. } => Error::io(out.place(), source),
        other => other,
    })?;
    out.commit(0o644)?;
    Ok(())
}
