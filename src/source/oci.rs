//! OCI image layouts (`oci:` directories, `oci-archive:` tars) and the walk from a manifest or
//! index down to its configs and layers, shared with Docker 25+ archives.
//!
//! Manifests, indexes and configs are read whole (they are bounded JSON), verified against their
//! descriptors, parsed strictly and kept as bytes. Layers are only checked for presence and size
//! here; their content is verified while the bundle is written.

use std::sync::Arc;

use serde_json::Value;

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result, shown};
use crate::image::{self, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, Index, Parsed, Platform};
use crate::json;
use crate::reference::Reference;
use crate::source::attachments;
use crate::source::store::Store;
use crate::source::{Blob, Found, Image, Origin, ReadOptions, SourceSpec, needs_name};
use crate::walk::Visited;

/// Reads the images of an OCI layout held in `store`.
pub fn read(spec: &SourceSpec, store: Arc<dyn Store>, opts: &ReadOptions, out: &mut dyn Found) -> Result<()> {
    check_layout(store.as_ref())?;
    let index = read_index(store.as_ref())?;
    let (attached, entries): (Vec<Descriptor>, Vec<Descriptor>) =
        index.manifests.iter().cloned().partition(attachments::is_layout_attachment);
    let chosen = select(spec, &entries)?;
    let carried = attachments::read_layout(&StoreFetch(store.clone()), &attached, &entries, chosen.len(), opts)?;
    if spec.name().is_some() && chosen.len() > 1 {
        return Err(Error::bad(
            spec.to_string(),
            format!("`=NAME` names one image, but this source holds {}; select one with `:REF`", chosen.len()),
        ));
    }
    for desc in chosen {
        let name = match (spec.name(), name_of(desc)) {
            (Some(n), _) => n.clone(),
            (None, Some(n)) => n.map_err(|e| Error::bad(spec.to_string(), e.to_string()))?,
            (None, None) => {
                let what = match desc.annotation(ANNOTATION_REF_NAME) {
                    Some(r) => format!("image `{}` ({})", shown(r), desc.digest),
                    None => format!("image {}", desc.digest),
                };
                return Err(needs_name(spec, &what));
            }
        };
        let fetch = StoreFetch(store.clone());
        let (mut image, manifests) = walk(&fetch, desc, name, spec.to_string(), opts, out)?;
        image.attachments = attachments::attached_to(&manifests, &carried, out);
        out.add_image(image)?;
    }
    Ok(())
}

/// Where a walk reads an image's blobs from: a file store or a registry.
pub trait Fetch {
    /// Where a blob lives, for messages.
    fn place(&self, digest: &Digest) -> String;
    /// Reads a manifest, index or config whole, verified against its descriptor.
    fn read_small(&self, desc: &Descriptor) -> Result<Vec<u8>>;
    /// How the bundle writer will read a layer; checks presence and size where that is cheap.
    fn layer(&self, desc: &Descriptor) -> Result<Origin>;
    /// Whether the source holds a blob at all: an archive may hold only some platforms of an
    /// index (`docker save` from the containerd image store, `ctr export --platform`).
    fn holds(&self, _desc: &Descriptor) -> bool {
        true
    }
    /// Starts reading these small blobs all at once, where that saves round trips (a registry);
    /// [`Fetch::read_small`] then takes them, or their errors, as read.
    fn prefetch(&self, _descs: &[&Descriptor]) {}
}

/// Blobs of an OCI layout in a file store.
pub struct StoreFetch(pub Arc<dyn Store>);

impl Fetch for StoreFetch {
    fn place(&self, digest: &Digest) -> String {
        self.0.place(&digest.blob_path())
    }

    fn read_small(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        read_blob(self.0.as_ref(), desc)
    }

    fn holds(&self, desc: &Descriptor) -> bool {
        self.0.contains(&desc.digest.blob_path())
    }

    fn layer(&self, desc: &Descriptor) -> Result<Origin> {
        let path = desc.digest.blob_path();
        let (_, size) = self.0.open(&path)?;
        if size != desc.size {
            let msg = format!("size is {size} bytes, the manifest says {}", desc.size);
            return Err(Error::integrity(self.place(&desc.digest), msg));
        }
        Ok(Origin::Store { store: self.0.clone(), path })
    }
}

/// Walks one named image from its root descriptor, adding every blob it uses; returns the image
/// (for the caller to add) and the digests of its manifests and indexes the source holds (what
/// signatures and referrers may be attached to), in digest order.
pub fn walk(
    fetch: &dyn Fetch,
    root: &Descriptor,
    name: Reference,
    source: String,
    opts: &ReadOptions,
    out: &mut dyn Found,
) -> Result<(Image, Vec<Digest>)> {
    let mut walker = Walker { fetch, opts, out, name: &name, used: Vec::new(), visited: Visited::default() };
    let (root, platforms, filtered_from) = walker.root(root)?;
    let mut seen = std::collections::HashSet::new();
    let blobs = walker.used.into_iter().filter(|d| seen.insert(d.clone())).collect();
    // A root that --platform filtered is airlock's own: nothing is attached to it, and the
    // source's root is not in the bundle.
    let manifests = walker.visited.sorted().into_iter().filter(|d| Some(d) != filtered_from.as_ref()).collect();
    Ok((Image { name, root, platforms, filtered_from, blobs, source, attachments: Vec::new() }, manifests))
}

pub(crate) fn check_layout(store: &dyn Store) -> Result<()> {
    let bytes = store.read_small("oci-layout")?;
    let v = json::parse(&bytes).map_err(|e| Error::bad(store.place("oci-layout"), e))?;
    match v.get("imageLayoutVersion").and_then(Value::as_str) {
        Some("1.0.0") => Ok(()),
        other => Err(Error::bad(store.place("oci-layout"), format!("unsupported imageLayoutVersion {other:?}"))),
    }
}

pub(crate) fn read_index(store: &dyn Store) -> Result<Index> {
    let bytes = store.read_small("index.json")?;
    match image::parse_manifest(&bytes, image::OCI_INDEX) {
        Ok(Parsed::Index(i)) => Ok(i),
        Ok(Parsed::Manifest(_)) => unreachable!("parsed by index media type"),
        Err(e) => Err(Error::bad(store.place("index.json"), e)),
    }
}

/// The image's full name from its annotations, if it has one. A `ref.name` without `/` or `:` is
/// only a tag (as umoci and skopeo write for `oci:dir:tag`) and names nothing.
pub(crate) fn name_of(desc: &Descriptor) -> Option<Result<Reference, crate::reference::ReferenceError>> {
    if let Some(n) = desc.annotation(ANNOTATION_CONTAINERD_NAME) {
        return Some(Reference::parse(n));
    }
    let r = desc.annotation(ANNOTATION_REF_NAME)?;
    (r.contains('/') || r.contains(':')).then(|| Reference::parse(r))
}

/// The index entries a spec selects: all of them, or those whose name or ref.name is `:REF`.
fn select<'a>(spec: &SourceSpec, all: &'a [Descriptor]) -> Result<Vec<&'a Descriptor>> {
    let Some(sel) = spec.selector() else { return Ok(all.iter().collect()) };
    let wanted = Reference::parse(&sel).ok();
    let hits: Vec<&Descriptor> = all
        .iter()
        .filter(|d| {
            d.annotation(ANNOTATION_REF_NAME) == Some(sel.as_str())
                || d.annotation(ANNOTATION_CONTAINERD_NAME) == Some(sel.as_str())
                || matches!((name_of(d), &wanted), (Some(Ok(n)), Some(w)) if &n == w)
        })
        .collect();
    if hits.is_empty() {
        let names: Vec<String> = all.iter().filter_map(|d| d.annotation(ANNOTATION_REF_NAME)).map(shown).collect();
        let msg = format!("no image named `{}` (it has: {})", shown(&sel), names.join(", "));
        return Err(Error::bad(spec.to_string(), msg));
    }
    // One ref.name may appear twice in a broken index; keep the first of each digest.
    let mut seen = std::collections::HashSet::new();
    Ok(hits.into_iter().filter(|d| seen.insert(d.digest.clone())).take(1).collect())
}

/// Reads a small blob whole and verifies it against its descriptor.
pub(crate) fn read_blob(store: &dyn Store, desc: &Descriptor) -> Result<Vec<u8>> {
    let path = desc.digest.blob_path();
    if desc.size > json::MAX_JSON_BYTES {
        return Err(Error::bad(
            store.place(&path),
            format!("{} bytes is too large for a manifest or config", desc.size),
        ));
    }
    let (r, _) = store.open(&path)?;
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut VerifyingReader::new(r, desc.digest.clone(), desc.size), &mut buf)
        .at(|| store.place(&path))?;
    Ok(buf)
}

/// Fails if `--platform` asks for platforms and a single-platform image is none of them.
pub(crate) fn check_platform(name: &Reference, platform: &Platform, opts: &ReadOptions) -> Result<()> {
    match opts.platforms.first() {
        Some(w) if !opts.platforms.iter().any(|w| platform.matches(w)) => {
            Err(lacks(name, opts, w, &[platform.to_string()]))
        }
        _ => Ok(()),
    }
}

/// The error for a requested platform an image does not have.
fn lacks(name: &Reference, opts: &ReadOptions, wanted: &Platform, has: &[String]) -> Error {
    let hint = if opts.skip_missing_platforms { "" } else { "; --skip-missing-platforms takes what there is" };
    Error::bad(format!("image {name}"), format!("has no platform {wanted} (it has: {}){hint}", has.join(", ")))
}

struct Walker<'a> {
    fetch: &'a dyn Fetch,
    opts: &'a ReadOptions,
    out: &'a mut dyn Found,
    name: &'a Reference,
    used: Vec<Digest>,
    /// The walk's limits (crate::walk): an index naming a child many times reads it once.
    visited: Visited,
}

impl Walker<'_> {
    fn use_blob(&mut self, desc: Descriptor, origin: Origin) {
        self.used.push(desc.digest.clone());
        self.out.add_blob(desc, origin);
    }

    fn place(&self, desc: &Descriptor) -> String {
        format!("image {}: {}", self.name, self.fetch.place(&desc.digest))
    }

    /// Returns the (possibly filtered) root, its platforms and the digest before filtering.
    fn root(&mut self, desc: &Descriptor) -> Result<(Descriptor, Vec<Platform>, Option<Digest>)> {
        self.visited.enter(&desc.digest, 0).map_err(|why| Error::bad(self.place(desc), why))?;
        let bytes = self.fetch.read_small(desc)?;
        let parsed = image::parse_manifest(&bytes, &desc.media_type).map_err(|e| Error::bad(self.place(desc), e))?;
        let root = Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size);
        match parsed {
            Parsed::Manifest(m) => {
                let platform = self.manifest(desc, &m)?;
                check_platform(self.name, &platform, self.opts)?;
                self.use_blob(root.clone(), Origin::Bytes(bytes.into()));
                Ok((root, vec![platform], None))
            }
            Parsed::Index(index) => self.index(root, bytes, &index),
        }
    }

    fn lacks(&self, wanted: &Platform, has: &[String]) -> Error {
        lacks(self.name, self.opts, wanted, has)
    }

    /// The error for a requested platform the index lists but the source does not hold.
    fn not_held(&self, root: &Descriptor, child: &Descriptor, index: &Index) -> Error {
        let held: Vec<&Descriptor> = index.manifests.iter().filter(|d| self.fetch.holds(d)).collect();
        Error::bad(
            self.place(child),
            format!(
                "the {} manifest of index {} is not in this source, which holds only {} of it \
                 (`docker save` and `ctr export --platform` keep only the platforms that were \
                 pulled); leave {} out of --platform",
                labels(&[child]),
                root.digest,
                labels(&held),
                labels(&[child])
            ),
        )
    }

    fn index(
        &mut self,
        root: Descriptor,
        bytes: Vec<u8>,
        index: &Index,
    ) -> Result<(Descriptor, Vec<Platform>, Option<Digest>)> {
        let wanted = &self.opts.platforms;
        let (keep, absent): (Vec<&Descriptor>, Vec<&Descriptor>) = index
            .manifests
            .iter()
            .filter(|d| wanted.is_empty() || d.platform.as_ref().is_some_and(|p| wanted.iter().any(|w| p.matches(w))))
            .partition(|d| self.fetch.holds(d));
        let has = || -> Vec<String> {
            index.manifests.iter().filter_map(|d| d.platform.as_ref()).map(|p| p.to_string()).collect()
        };
        let is = |w: &Platform, d: &Descriptor| d.platform.as_ref().is_some_and(|p| p.matches(w));
        for w in wanted {
            let missing = !keep.iter().any(|d| is(w, d));
            if missing && (!self.opts.skip_missing_platforms || keep.is_empty()) {
                return Err(match absent.iter().find(|d| is(w, d)) {
                    Some(d) => self.not_held(&root, d, index),
                    None => self.lacks(w, &has()),
                });
            }
        }
        if keep.is_empty() && !absent.is_empty() {
            let msg = "holds none of the manifests this index lists";
            return Err(Error::bad(self.place(&root), msg));
        }
        if !absent.is_empty() {
            let msg = format!(
                "{}: left out {}, whose manifests the source does not hold; kept {} under a filtered \
                 index (the bundle records this index's digest as the original)",
                self.place(&root),
                labels(&absent),
                labels(&keep)
            );
            self.out.notice(msg);
        }
        let first = self.first_visits(&root, &keep)?;
        // The children, then their configs, each all at once: two round trips, not two per child.
        self.fetch.prefetch(&first);
        let mut children = Vec::new();
        for child in first {
            if !image::is_manifest_type(&child.media_type) {
                return Err(Error::bad(
                    self.place(child),
                    format!("nested index `{}` is not supported", crate::error::shown(&child.media_type)),
                ));
            }
            let child_bytes = self.fetch.read_small(child)?;
            let m = match image::parse_manifest(&child_bytes, &child.media_type) {
                Ok(Parsed::Manifest(m)) => m,
                Ok(Parsed::Index(_)) => unreachable!("parsed by manifest media type"),
                Err(e) => return Err(Error::bad(self.place(child), e)),
            };
            children.push((child, child_bytes, m));
        }
        self.fetch.prefetch(&children.iter().map(|(_, _, m)| &m.config).collect::<Vec<_>>());
        let mut platforms = Vec::new();
        for (child, child_bytes, m) in children {
            let p = self.manifest(child, &m)?;
            platforms.push(child.platform.clone().unwrap_or(p));
            self.use_blob((*child).clone(), Origin::Bytes(child_bytes.into()));
        }
        if keep.len() == index.manifests.len() {
            self.use_blob(root.clone(), Origin::Bytes(bytes.into()));
            return Ok((root, platforms, None));
        }
        let filtered = filter_index(&bytes, &keep).map_err(|e| Error::bad(self.place(&root), e))?;
        let desc = Descriptor::new(&root.media_type, Digest::of_bytes(&filtered), filtered.len() as u64);
        self.use_blob(desc.clone(), Origin::Bytes(filtered.into()));
        Ok((desc, platforms, Some(root.digest)))
    }

    /// The children of an index not visited yet, each once, within the walk's limits.
    fn first_visits<'d>(&mut self, root: &Descriptor, children: &[&'d Descriptor]) -> Result<Vec<&'d Descriptor>> {
        let mut first = Vec::new();
        for child in children {
            if self.visited.enter(&child.digest, 1).map_err(|why| Error::bad(self.place(root), why))? {
                first.push(*child);
            }
        }
        Ok(first)
    }

    /// Checks a manifest's config and layers; returns the platform its config declares.
    fn manifest(&mut self, desc: &Descriptor, m: &image::Manifest) -> Result<Platform> {
        let config_bytes = self.fetch.read_small(&m.config)?;
        let is_image = m.is_image();
        let mut platform = Platform::unknown();
        let mut diff_ids = Vec::new();
        if is_image {
            let cfg = image::parse_config(&config_bytes).map_err(|e| Error::bad(self.place(&m.config), e))?;
            if cfg.rootfs.diff_ids.len() != m.layers.len() {
                return Err(Error::bad(
                    self.place(desc),
                    format!(
                        "manifest lists {} layers but its config has {} diff_ids",
                        m.layers.len(),
                        cfg.rootfs.diff_ids.len()
                    ),
                ));
            }
            platform = cfg.platform().map_err(|e| Error::bad(self.place(&m.config), e))?;
            diff_ids = cfg.rootfs.diff_ids;
        }
        self.use_blob(m.config.clone(), Origin::Bytes(config_bytes.into()));
        for (i, layer) in m.layers.iter().enumerate() {
            if layer.urls.is_some() {
                return Err(Error::bad(self.place(layer), "foreign layers (with urls) are not supported"));
            }
            let origin = self.fetch.layer(layer).map_err(|e| match e {
                Error::Integrity { msg, .. } => Error::integrity(self.place(layer), msg),
                other => other,
            })?;
            if let Some(diff_id) = diff_ids.get(i) {
                self.out
                    .compressed_layers()
                    .entry(diff_id.clone())
                    .or_insert_with(|| Blob { descriptor: layer.clone(), origin: origin.clone() });
            }
            self.use_blob(layer.clone(), origin);
        }
        Ok(platform)
    }
}

/// Index entries for messages: their platforms, or digests where they declare none.
fn labels(entries: &[&Descriptor]) -> String {
    let label = |d: &&Descriptor| match &d.platform {
        Some(p) => p.to_string(),
        None => format!("manifest {}", d.digest),
    };
    entries.iter().map(label).collect::<Vec<_>>().join(", ")
}

/// The index with only the kept manifests, every other field (and every kept entry) as it was.
fn filter_index(bytes: &[u8], keep: &[&Descriptor]) -> std::result::Result<Vec<u8>, String> {
    let mut v = json::parse(bytes)?;
    let wanted: std::collections::HashSet<&str> = keep.iter().map(|d| d.digest.as_str()).collect();
    let entries = v["manifests"].as_array_mut().ok_or("`manifests` is not an array")?;
    entries.retain(|e| e.get("digest").and_then(Value::as_str).is_some_and(|d| wanted.contains(d)));
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}
