//! The views a bundle carries besides its blobs: `oci-layout` and `index.json` (the OCI layout
//! that skopeo, podman and containerd read), `manifest.json` and `repositories` (what `docker
//! load` reads). They are derived from the signed index alone (and the manifests it names), here,
//! once: the writer writes what [`files`] derives, and every reader checks with [`check`] that the
//! bundle's copies are exactly that, so that no tool sees another image than `verify` vouched for.

use serde_json::{Value, json};

use crate::attachments::{ANNOTATION_KIND, ANNOTATION_SUBJECT};
use crate::bundle::format::{BundleIndex, FileEntry, ImageEntry};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, OCI_INDEX};
use crate::reference::Reference;

/// A single-platform manifest's config and layers, by digest.
pub type Parts = (Digest, Vec<Digest>);

/// Docker's classic store takes single-platform images with a tag (not a bare digest pin), and
/// `docker load` takes an image from the bundle only if the bundle carries every blob of it: a
/// delta's image that relies on a base is left out, so loading a delta never half-loads.
pub fn docker_loadable(
    media_type: &str,
    name: &Reference,
    blobs: &[Digest],
    carried: &dyn Fn(&Digest) -> bool,
) -> bool {
    image::is_manifest_type(media_type) && name.tag().is_some() && blobs.iter().all(carried)
}

/// `oci-layout`, `index.json`, `manifest.json` and `repositories`, in that order, for `images`
/// (in the signed index's order); `parts` gives the config and layers of an image's manifest.
pub fn files(
    images: &[ImageEntry],
    parts: &dyn Fn(&Digest) -> Option<Parts>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let layout = json!({"imageLayoutVersion": "1.0.0"});
    let manifests: Vec<Value> = images
        .iter()
        .map(|i| {
            json!({
                "mediaType": i.media_type,
                "digest": i.digest,
                "size": i.size,
                "annotations": {ANNOTATION_CONTAINERD_NAME: i.name, ANNOTATION_REF_NAME: i.name},
            })
        })
        .chain(attachment_entries(images))
        .collect();
    let oci_index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let (docker, repositories) = docker_load(images, parts)?;
    let to_bytes = |v: &Value| serde_json::to_vec(v).expect("serialises");
    Ok(vec![
        ("oci-layout".into(), to_bytes(&layout)),
        ("index.json".into(), to_bytes(&oci_index)),
        ("manifest.json".into(), to_bytes(&docker)),
        ("repositories".into(), to_bytes(&repositories)),
    ])
}

/// `index.json` lists every attachment once after the images, so that layout readers (oras,
/// `skopeo copy oci:DIR:sha256-<hex>.sig`) find them: cosign's under their tag as `ref.name`,
/// each marked with its kind and subject, which is how airlock's own layout source tells them
/// from images.
fn attachment_entries(images: &[ImageEntry]) -> impl Iterator<Item = Value> + '_ {
    let mut seen = std::collections::HashSet::new();
    images.iter().flat_map(|i| &i.attachments).filter(move |a| seen.insert(&a.digest)).map(|a| {
        let mut annotations = json!({ANNOTATION_KIND: a.kind, ANNOTATION_SUBJECT: a.subject});
        if let Some(tag) = a.tag() {
            annotations[ANNOTATION_REF_NAME] = json!(tag);
        }
        let mut entry = json!({"mediaType": a.media_type, "digest": a.digest, "size": a.size});
        if let Some(t) = &a.artifact_type {
            entry["artifactType"] = json!(t);
        }
        entry["annotations"] = annotations;
        entry
    })
}

/// `manifest.json` (one entry per single-platform manifest, with all its tags) and `repositories`.
fn docker_load(images: &[ImageEntry], parts: &dyn Fn(&Digest) -> Option<Parts>) -> Result<(Value, Value), String> {
    let mut entries: Vec<(Digest, Value, Vec<String>)> = Vec::new();
    let mut repositories = serde_json::Map::new();
    for image in images.iter().filter(|i| i.docker_load) {
        let name = Reference::parse(&image.name).map_err(|e| e.to_string())?;
        let (config, layers) =
            parts(&image.digest).ok_or_else(|| format!("image {}: its manifest is not at hand", image.name))?;
        let tag = name.familiar();
        let top = layers.last().map(|l| l.hex().to_owned()).unwrap_or_default();
        let (repo, t) = tag.rsplit_once(':').unwrap_or((&tag, "latest"));
        repositories
            .entry(repo.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(t.into(), json!(top));
        match entries.iter_mut().find(|(d, _, _)| *d == image.digest) {
            Some((_, _, tags)) => tags.push(tag),
            None => {
                let layers: Vec<String> = layers.iter().map(Digest::blob_path).collect();
                let v = json!({"Config": config.blob_path(), "Layers": layers});
                entries.push((image.digest.clone(), v, vec![tag]));
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

/// The bundle's views must be exactly those its signed index implies (their content was checked
/// against the listed digests as it was read), and each image's `dockerLoad` flag what it implies.
pub fn check(index: &BundleIndex, parts: &dyn Fn(&Digest) -> Option<Parts>, place: &str) -> Result<()> {
    let absent: std::collections::HashSet<&Digest> = index.absent_blobs().map(|b| &b.digest).collect();
    for img in &index.images {
        let name = Reference::parse(&img.name).map_err(|e| Error::integrity(place, e.to_string()))?;
        if img.docker_load != docker_loadable(&img.media_type, &name, &img.blobs, &|d| !absent.contains(d)) {
            let msg = "its dockerLoad flag is not what its name and media type imply";
            return Err(Error::integrity(format!("{place}: image {}", img.name), msg));
        }
    }
    let derived = files(&index.images, parts).map_err(|why| Error::integrity(place, why))?;
    let derived: Vec<FileEntry> = derived
        .into_iter()
        .map(|(path, bytes)| FileEntry { path, digest: Digest::of_bytes(&bytes), size: bytes.len() as u64 })
        .collect();
    for (i, want) in derived.iter().enumerate() {
        match index.files.get(i) {
            Some(f) if f == want => {}
            _ => {
                let msg = "says something other than the signed index's images (names, digests or platforms)";
                return Err(Error::integrity(format!("{place}: {}", want.path), msg));
            }
        }
    }
    if let Some(extra) = index.files.get(derived.len()) {
        return Err(Error::integrity(format!("{place}: {}", extra.path), "is not a file a bundle holds"));
    }
    Ok(())
}
