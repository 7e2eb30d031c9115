//! `docker save` archives (`docker-archive:`), in the layouts docker has written:
//!
//! - legacy (Docker ≤ 24, podman, skopeo): `manifest.json` names a `<hex>.json` config and
//!   uncompressed `<id>/layer.tar` files per image. There is no registry manifest, so airlock
//!   compresses each layer (checking it against the config's `diff_ids`) and writes a new OCI
//!   manifest; the config is kept byte-for-byte, so the image ID docker shows is unchanged.
//! - Docker 25+ with the graphdriver store: an OCI image layout that also carries `manifest.json`,
//!   whose manifests docker synthesized around uncompressed layers. Those layers are compressed
//!   under a new manifest exactly as legacy ones are (`--compression none` keeps the archive's
//!   manifests byte-for-byte); manifests with compressed layers are kept byte-for-byte.
//! - Docker 25+ with the containerd image store: `index.json` may name a multi-platform image
//!   index of which only the pulled platforms are present; `manifest.json` lists the config of
//!   the platform the entry was saved for. The index is followed to its children (see
//!   [`oci::walk`] for the platforms left out).
//!
//! In both Docker 25+ forms `manifest.json` must agree with `index.json`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Descriptor, OCI_CONFIG, OCI_MANIFEST, Parsed};
use crate::json;
use crate::reference::Reference;
use crate::source::stage::{LayerJob, Stager};
use crate::source::store::Store;
use crate::source::{Found, Image, Origin, ReadOptions, SourceSpec, needs_name, oci};

/// One entry of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub fn read(
    spec: &SourceSpec,
    store: Arc<dyn Store>,
    opts: &ReadOptions,
    stager: &Stager,
    out: &mut dyn Found,
) -> Result<()> {
    let bytes = store.read_small("manifest.json")?;
    let entries: Vec<SaveEntry> = json::parse_as(&bytes).map_err(|e| Error::bad(store.place("manifest.json"), e))?;
    let chosen = select(spec, store.as_ref(), &entries)?;
    if store.contains("index.json") && store.contains("oci-layout") {
        read_docker25(spec, store, opts, stager, &chosen, out)
    } else {
        read_legacy(spec, store.as_ref(), opts, stager, &chosen, out)
    }
}

/// The names an entry is loaded under, and the entries chosen by the spec.
fn select<'a>(
    spec: &SourceSpec,
    store: &dyn Store,
    entries: &'a [SaveEntry],
) -> Result<Vec<(&'a SaveEntry, Vec<Reference>)>> {
    let mut chosen = Vec::new();
    let wanted = match &spec.selector() {
        Some(s) => Some(Reference::parse(s).map_err(|e| Error::bad(spec.to_string(), e.to_string()))?),
        None => None,
    };
    for (i, entry) in entries.iter().enumerate() {
        let mut names = Vec::new();
        for tag in entry.repo_tags.iter().flatten() {
            let r = Reference::parse(tag)
                .map_err(|e| Error::bad(store.place(&format!("manifest.json: image {i}")), e.to_string()))?;
            names.push(r);
        }
        if let Some(w) = &wanted {
            if !names.contains(w) {
                continue;
            }
            names = vec![w.clone()];
        }
        if let Some(n) = spec.name() {
            names = vec![n.clone()];
        }
        if names.is_empty() {
            return Err(needs_name(spec, &format!("image {i} (config {})", entry.config)));
        }
        chosen.push((entry, names));
    }
    if chosen.is_empty() {
        return Err(Error::bad(spec.to_string(), "no image with that tag in manifest.json"));
    }
    if spec.name().is_some() && chosen.len() > 1 {
        return Err(Error::bad(
            spec.to_string(),
            "`=NAME` names one image, but this archive holds several; select one with `:TAG`",
        ));
    }
    Ok(chosen)
}

/// Compresses each entry's uncompressed layers under a new OCI manifest (config unchanged).
fn read_legacy(
    spec: &SourceSpec,
    store: &dyn Store,
    opts: &ReadOptions,
    stager: &Stager,
    chosen: &[(&SaveEntry, Vec<Reference>)],
    out: &mut dyn Found,
) -> Result<()> {
    // First every config, so all layers can be staged in one parallel batch.
    let mut configs = Vec::new();
    let mut jobs = Vec::new();
    for (entry, _) in chosen {
        let bytes = store.read_small(&entry.config)?;
        let digest = Digest::of_bytes(&bytes);
        let stem = entry.config.rsplit('/').next().unwrap_or("").trim_end_matches(".json");
        if let Ok(named) = Digest::from_hex(stem)
            && named != digest
        {
            let msg = format!("content has {digest}, its name says {named}");
            return Err(Error::integrity(store.place(&entry.config), msg));
        }
        let cfg = image::parse_config(&bytes).map_err(|e| Error::bad(store.place(&entry.config), e))?;
        if cfg.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(Error::bad(
                store.place("manifest.json"),
                format!(
                    "image config {} lists {} diff_ids but manifest.json lists {} layers",
                    entry.config,
                    cfg.rootfs.diff_ids.len(),
                    entry.layers.len()
                ),
            ));
        }
        for (path, diff_id) in entry.layers.iter().zip(&cfg.rootfs.diff_ids) {
            jobs.push(LayerJob { store, path: path.clone(), diff_id: diff_id.clone() });
        }
        let platform = cfg.platform().map_err(|e| Error::bad(store.place(&entry.config), e))?;
        configs.push((Descriptor::new(OCI_CONFIG, digest, bytes.len() as u64), bytes, platform));
    }
    let staged = stager.stage_all(&jobs, out.compressed_layers())?;
    let mut staged = staged.into_iter();
    for ((entry, names), (config, config_bytes, platform)) in chosen.iter().zip(configs) {
        for name in names {
            oci::check_platform(name, &platform, opts)?;
        }
        let layers: Vec<(Descriptor, Origin)> = staged.by_ref().take(entry.layers.len()).collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("manifest serialises");
        let root = Descriptor::new(OCI_MANIFEST, Digest::of_bytes(&manifest), manifest.len() as u64);
        let mut blobs = vec![root.digest.clone(), config.digest.clone()];
        out.add_blob(config, Origin::Bytes(config_bytes.into()));
        for (d, origin) in layers {
            if !blobs.contains(&d.digest) {
                blobs.push(d.digest.clone());
            }
            out.add_blob(d, origin);
        }
        out.add_blob(root.clone(), Origin::Bytes(manifest.into()));
        for name in names {
            out.add_image(Image {
                name: name.clone(),
                root: root.clone(),
                platforms: vec![platform.clone()],
                filtered_from: None,
                blobs: blobs.clone(),
                source: spec.to_string(),
                attachments: Vec::new(),
            })?;
        }
    }
    Ok(())
}

fn read_docker25(
    spec: &SourceSpec,
    store: Arc<dyn Store>,
    opts: &ReadOptions,
    stager: &Stager,
    chosen: &[(&SaveEntry, Vec<Reference>)],
    out: &mut dyn Found,
) -> Result<()> {
    oci::check_layout(store.as_ref())?;
    let index = oci::read_index(store.as_ref())?;
    let mut recompress = Vec::new();
    for (entry, names) in chosen {
        let found = matching_root(store.as_ref(), &index.manifests, entry)?;
        check_names(store.as_ref(), &index.manifests, found.root, entry)?;
        if found.uncompressed && stager.compresses() {
            recompress.push((*entry, names.clone()));
            continue;
        }
        for name in names {
            let fetch = oci::StoreFetch(store.clone());
            let (image, _) = oci::walk(&fetch, found.root, name.clone(), spec.to_string(), opts, out)?;
            out.add_image(image)?;
        }
    }
    read_legacy(spec, store.as_ref(), opts, stager, &recompress, out)
}

/// The `index.json` entry for a `manifest.json` entry.
struct Match<'a> {
    root: &'a Descriptor,
    /// The root is a manifest whose layers are all uncompressed tars (docker synthesized it).
    uncompressed: bool,
}

/// The `index.json` entry whose manifest, or one of whose index's manifests present in the
/// archive, has the config and layers a `manifest.json` entry names.
fn matching_root<'a>(store: &dyn Store, roots: &'a [Descriptor], entry: &SaveEntry) -> Result<Match<'a>> {
    let disagree = |why: String| Error::bad(store.place("manifest.json"), format!("disagrees with index.json: {why}"));
    for root in roots {
        let children = if image::is_index_type(&root.media_type) {
            match parse(store, root)? {
                Parsed::Index(i) => i.manifests,
                Parsed::Manifest(_) => unreachable!("parsed by index media type"),
            }
        } else {
            vec![root.clone()]
        };
        let present = children.iter().filter(|d| {
            image::is_manifest_type(&d.media_type) && (*d == root || store.contains(&d.digest.blob_path()))
        });
        for desc in present {
            let Parsed::Manifest(m) = parse(store, desc)? else { unreachable!("parsed by manifest media type") };
            if m.config.digest.blob_path() != entry.config {
                continue;
            }
            let layers: Vec<String> = m.layers.iter().map(|l| l.digest.blob_path()).collect();
            if layers != entry.layers {
                return Err(disagree(format!(
                    "image {} lists other layers than manifest {}",
                    entry.config, desc.digest
                )));
            }
            let plain = |l: &Descriptor| image::is_uncompressed_layer(&l.media_type);
            let uncompressed = desc == root && !m.layers.is_empty() && m.layers.iter().all(plain);
            return Ok(Match { root, uncompressed });
        }
    }
    Err(disagree(format!("no manifest in index.json, or in an index it names, has config {}", entry.config)))
}

/// The names index.json gives an image must be the RepoTags manifest.json gives it: `docker load`
/// reads one file and containerd the other, and both must load the same image under the same
/// names. (An index.json that names nothing, as for an untagged save, leaves RepoTags alone.)
fn check_names(store: &dyn Store, roots: &[Descriptor], root: &Descriptor, entry: &SaveEntry) -> Result<()> {
    let place = || store.place("manifest.json");
    let mut named = BTreeSet::new();
    for d in roots.iter().filter(|d| d.digest == root.digest) {
        if let Some(n) = oci::name_of(d) {
            named.insert(n.map_err(|e| Error::bad(store.place("index.json"), e.to_string()))?);
        }
    }
    let mut tags = BTreeSet::new();
    for t in entry.repo_tags.iter().flatten() {
        tags.insert(Reference::parse(t).map_err(|e| Error::bad(place(), e.to_string()))?);
    }
    if !named.is_empty() && named != tags {
        let list = |s: &BTreeSet<Reference>| s.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let msg = format!(
            "disagrees with index.json: image {} has RepoTags [{}], index.json names it [{}]",
            entry.config,
            list(&tags),
            list(&named)
        );
        return Err(Error::bad(place(), msg));
    }
    Ok(())
}

/// Reads and parses a manifest or index of the archive.
fn parse(store: &dyn Store, desc: &Descriptor) -> Result<Parsed> {
    let bytes = oci::read_blob(store, desc)?;
    image::parse_manifest(&bytes, &desc.media_type).map_err(|e| Error::bad(store.place(&desc.digest.blob_path()), e))
}
