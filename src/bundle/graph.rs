//! The manifests of a bundle as a graph, checked against the signed index: each image's manifests
//! must reach exactly the blobs the index lists for it, name each child with the media type and
//! size the index lists, and (for an index) list the platforms the signed index shows.
//!
//! Manifests are parsed as they are read and only their edges are kept, as positions in the
//! signed index's blob list (4 bytes a child, each child once), so memory stays a small fraction
//! of the manifests' size however many there are. The walk of each image keeps the limits of
//! [`crate::walk`].

use std::collections::{HashMap, HashSet};

use crate::attachments::MAX_ATTACHMENTS;
use crate::bundle::format::{BlobEntry, BundleIndex, ImageEntry};
use crate::bundle::views::Parts;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Descriptor, Parsed};
use crate::walk::Visited;

enum Node {
    /// An index: its distinct children, each with the platform its descriptor declares.
    Index(Vec<(u32, Option<String>)>),
    /// A manifest: its config, then its layers.
    Manifest(Vec<u32>),
}

pub(crate) struct Graph<'a> {
    index: &'a BundleIndex,
    slots: HashMap<&'a Digest, u32>,
    nodes: HashMap<u32, Node>,
    /// Attachments' manifests, whose layers are opaque ([`image::parse_artifact`]).
    artifacts: HashSet<&'a Digest>,
}

impl<'a> Graph<'a> {
    pub fn new(index: &'a BundleIndex) -> Self {
        let slots = index.blobs.iter().enumerate().map(|(i, b)| (&b.digest, i as u32)).collect();
        let images: HashSet<&Digest> = index.images.iter().flat_map(|i| &i.blobs).collect();
        let artifacts = index
            .images
            .iter()
            .flat_map(|i| &i.attachments)
            .map(|a| &a.digest)
            .filter(|d| !images.contains(d))
            .collect();
        Graph { index, slots, nodes: HashMap::new(), artifacts }
    }

    fn blob(&self, slot: u32) -> &'a BlobEntry {
        &self.index.blobs[slot as usize]
    }

    /// Records a manifest or index read from the bundle (already verified against its digest).
    pub fn add(&mut self, blob: &BlobEntry, bytes: &[u8], place: &str) -> Result<()> {
        let at = format!("{place}: manifest {}", blob.digest);
        let parse = if self.artifacts.contains(&blob.digest) { image::parse_artifact } else { image::parse_manifest };
        let parsed = parse(bytes, &blob.media_type).map_err(|e| Error::integrity(&at, e))?;
        let node = match parsed {
            Parsed::Index(i) => {
                let mut seen = HashSet::new();
                let mut children = Vec::new();
                for d in &i.manifests {
                    let s = self.slot_of(d, &at)?;
                    if seen.insert(s) {
                        children.push((s, d.platform.as_ref().map(ToString::to_string)));
                    }
                }
                Node::Index(children)
            }
            Parsed::Manifest(m) => {
                let parts = std::iter::once(&m.config).chain(&m.layers);
                Node::Manifest(parts.map(|d| self.slot_of(d, &at)).collect::<Result<_>>()?)
            }
        };
        let slot = self.slots[&blob.digest];
        self.nodes.insert(slot, node);
        Ok(())
    }

    /// A descriptor's blob, which the signed index must list with the same media type and size.
    fn slot_of(&self, d: &Descriptor, at: &str) -> Result<u32> {
        let s = *self
            .slots
            .get(&d.digest)
            .ok_or_else(|| Error::integrity(at, format!("blob {} is not in the bundle", d.digest)))?;
        let listed = self.blob(s);
        if listed.media_type != d.media_type || listed.size != d.size {
            let msg = format!(
                "names {} as `{}` of {} bytes, the signed index lists `{}` of {} bytes",
                d.digest, d.media_type, d.size, listed.media_type, listed.size
            );
            return Err(Error::integrity(at, msg));
        }
        Ok(s)
    }

    /// A single-platform manifest's config and layers.
    pub fn parts(&self, digest: &Digest) -> Option<Parts> {
        match self.nodes.get(self.slots.get(digest)?)? {
            Node::Manifest(p) => {
                let d = |s: &u32| self.blob(*s).digest.clone();
                Some((d(&p[0]), p[1..].iter().map(d).collect()))
            }
            Node::Index(_) => None,
        }
    }

    /// Walks every image of the signed index (see the module's doc).
    pub fn check(&self, place: &str) -> Result<()> {
        for img in &self.index.images {
            self.check_image(img, &format!("{place}: image {}", img.name))?;
        }
        Ok(())
    }

    fn check_image(&self, img: &ImageEntry, at: &str) -> Result<()> {
        let missing = |d: &Digest| Error::integrity(at, format!("manifest {d} is not in the bundle"));
        let root = *self.slots.get(&img.digest).ok_or_else(|| missing(&img.digest))?;
        let listed = self.blob(root);
        if listed.media_type != img.media_type || listed.size != img.size {
            return Err(Error::integrity(at, "its media type or size differs from its manifest's blob entry"));
        }
        let mut visited = Visited::default();
        let mut reached = HashSet::new();
        let mut todo = vec![(root, 0)];
        while let Some((s, depth)) = todo.pop() {
            if !visited.enter(&self.blob(s).digest, depth).map_err(|why| Error::integrity(at, why))? {
                continue;
            }
            reached.insert(s);
            match self.nodes.get(&s).ok_or_else(|| missing(&self.blob(s).digest))? {
                Node::Index(children) => todo.extend(children.iter().map(|(c, _)| (*c, depth + 1))),
                Node::Manifest(parts) => reached.extend(parts.iter().copied()),
            }
        }
        let mut claimed = HashSet::new();
        for d in &img.blobs {
            claimed.insert(
                *self.slots.get(d).ok_or_else(|| Error::integrity(at, format!("blob {d} is not in the bundle")))?,
            );
        }
        if reached != claimed {
            return Err(Error::integrity(
                at,
                "the blobs its manifests use differ from the blobs the signed index lists for it",
            ));
        }
        self.check_platforms(img, root, at)?;
        self.check_attachments(img, at)
    }

    /// Each attachment is a manifest of the bundle, attached to one of the image's manifests or
    /// to an attachment listed before it, using exactly the blobs the signed index lists for it.
    fn check_attachments(&self, img: &ImageEntry, at: &str) -> Result<()> {
        if img.attachments.len() > MAX_ATTACHMENTS {
            return Err(Error::integrity(at, format!("more than {MAX_ATTACHMENTS} attachments")));
        }
        let mut subjects: HashSet<&Digest> = img.blobs.iter().collect();
        for a in &img.attachments {
            let at = format!("{at}: attachment {}", a.digest);
            if !subjects.contains(&a.subject) {
                let msg =
                    format!("is attached to {}, which is neither the image's nor an earlier attachment's", a.subject);
                return Err(Error::integrity(at, msg));
            }
            let slot = *self.slots.get(&a.digest).ok_or_else(|| Error::integrity(&at, "is not in the bundle"))?;
            let listed = self.blob(slot);
            if listed.media_type != a.media_type || listed.size != a.size {
                return Err(Error::integrity(at, "its media type or size differs from its manifest's blob entry"));
            }
            let Some(Node::Manifest(parts)) = self.nodes.get(&slot) else {
                return Err(Error::integrity(at, "is not a manifest of the bundle"));
            };
            let reached: HashSet<u32> = std::iter::once(slot).chain(parts.iter().copied()).collect();
            let claimed = a.blobs.iter().map(|d| self.slots.get(d).copied()).collect::<Option<HashSet<u32>>>();
            if claimed.as_ref() != Some(&reached) {
                let msg = "the blobs its manifest uses differ from the blobs the signed index lists for it";
                return Err(Error::integrity(at, msg));
            }
            subjects.insert(&a.digest);
        }
        Ok(())
    }

    /// The platforms the signed index shows are those of the index's children (a manifest: one).
    fn check_platforms(&self, img: &ImageEntry, root: u32, at: &str) -> Result<()> {
        let ok = match &self.nodes[&root] {
            Node::Manifest(_) => img.platforms.len() == 1,
            Node::Index(children) => match children.iter().map(|(_, p)| p.clone()).collect::<Option<Vec<String>>>() {
                Some(declared) => declared == img.platforms,
                None => children.len() == img.platforms.len(),
            },
        };
        if !ok {
            let msg = format!("the platforms it lists ({}) are not those of its manifests", img.platforms.join(", "));
            return Err(Error::integrity(at, msg));
        }
        Ok(())
    }
}
