//! What `airlock serve` answers from: every repository with its tags and the digests it may hand
//! out, and where each blob's bytes lie (which served bundle file, at which offset). It is built
//! once from the verified bundles' signed indexes, in sequence order, so a later bundle's tag wins,
//! and a blob a delta does not carry is found in whichever served bundle does.
//!
//! Repository names are the bundle's own (`docker.io/library/busybox`) unless the registry host is
//! dropped (`library/busybox`), which is what a docker `registry-mirrors` entry asks for. A host's
//! port becomes `_PORT` (`registry.local_5000/team/app`): a path component cannot hold a `:`, and
//! a host name cannot hold a `_`, so the two never meet.
//!
//! Attachments travel with their image: cosign's signatures, attestations and SBOMs under cosign's
//! tags in the image's repository, OCI referrers listed by the referrers API and by their
//! subject's fallback tag (`sha256-<hex>`, for clients that use the tag scheme), whose index is
//! made here from the same list (a tag the bundles carry under that name wins).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::attachments::{Kind, fallback_tag, referrers_index};
use crate::bundle::format::{BundleIndex, one_image_per_name};
use crate::digest::Digest;
use crate::error::Result;
use crate::image;
use crate::reference::Reference;

/// How a repository is named on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `docker.io/library/busybox`: the original registry host is the first path component.
    KeepHost,
    /// `library/busybox`.
    DropHost,
}

/// Where one blob's bytes lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Which served bundle (its place in the list given to [`Content::add`]).
    pub bundle: usize,
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub at: Location,
    pub media_type: String,
}

impl Blob {
    pub fn is_manifest(&self) -> bool {
        image::is_manifest_type(&self.media_type) || image::is_index_type(&self.media_type)
    }
}

#[derive(Debug, Default)]
pub struct Repo {
    pub tags: BTreeMap<String, Digest>,
    /// Every blob an image of this repository uses: the only ones it hands out.
    pub digests: BTreeSet<Digest>,
    /// The referrers of each subject: their entries in a referrers index.
    pub referrers: BTreeMap<Digest, Vec<serde_json::Value>>,
    /// The fallback tag indexes of the subjects with referrers, by their digest.
    fallback: BTreeMap<Digest, Vec<u8>>,
}

impl Repo {
    /// Makes the fallback tag index of every subject again from [`Repo::referrers`], and tags it.
    fn index_fallback_tags(&mut self) {
        let old = std::mem::take(&mut self.fallback);
        self.tags.retain(|_, d| !old.contains_key(d));
        for (subject, listed) in &self.referrers {
            // A JSON value always serialises.
            let bytes = serde_json::to_vec(&referrers_index(listed)).unwrap_or_default();
            let digest = Digest::of_bytes(&bytes);
            self.tags.entry(fallback_tag(subject)).or_insert_with(|| digest.clone());
            self.fallback.insert(digest, bytes);
        }
    }
}

/// A manifest this server hands out.
#[derive(Debug, Clone, Copy)]
pub enum Manifest<'a> {
    /// Stored in a bundle.
    Stored(&'a Digest, &'a Blob),
    /// A subject's fallback tag index, made from the referrers the bundles carry.
    Fallback(&'a Digest, &'a [u8]),
}

/// A bundle's blobs as [`Content::add`] needs them: its signed index and where each blob it
/// carries starts.
pub trait Carried {
    fn index(&self) -> &BundleIndex;
    /// Offset and size of a blob this bundle carries (`None`: carried by another bundle).
    fn blob_at(&self, digest: &Digest) -> Option<(u64, u64)>;
    /// A small blob it carries (a manifest), read and verified whole.
    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>>;
}

impl Carried for crate::bundle::indexed::IndexedBundle {
    fn index(&self) -> &BundleIndex {
        self.index()
    }

    fn blob_at(&self, digest: &Digest) -> Option<(u64, u64)> {
        self.blob_at(digest)
    }

    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.read_small(digest)
    }
}

#[derive(Debug)]
pub struct Content {
    naming: Naming,
    repos: BTreeMap<String, Repo>,
    blobs: HashMap<Digest, Blob>,
    images: usize,
}

/// What a manifest request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl Content {
    pub fn new(naming: Naming) -> Self {
        Content { naming, repos: BTreeMap::new(), blobs: HashMap::new(), images: 0 }
    }

    /// Adds the `n`th served bundle; call in sequence order, oldest first: a later tag wins.
    /// Reads the manifests of its referrers (for their annotations).
    pub fn add(&mut self, n: usize, bundle: &dyn Carried) -> Result<()> {
        let index = bundle.index();
        for b in &index.blobs {
            if let Some((offset, size)) = bundle.blob_at(&b.digest) {
                let at = Location { bundle: n, offset, size };
                self.blobs.entry(b.digest.clone()).or_insert(Blob { at, media_type: b.media_type.clone() });
            }
        }
        let served = index.images.iter().filter_map(|img| {
            let r = Reference::parse(&img.name).ok()?;
            Some((format!("{}:{}", self.repo_name(&r), r.tag()?), img))
        });
        let apart = "--drop-registry-host drops the hosts that keep them apart";
        one_image_per_name(served, "be served as", Some(apart))?;
        for img in &index.images {
            // The signed index holds only normalised references (checked when it was parsed).
            let Ok(r) = Reference::parse(&img.name) else { continue };
            let repo = self.repos.entry(self.repo_name(&r)).or_default();
            repo.digests.extend(img.blobs.iter().cloned());
            repo.digests.insert(img.digest.clone());
            if let Some(tag) = r.tag() {
                repo.tags.insert(tag.to_owned(), img.digest.clone());
            }
            for a in &img.attachments {
                repo.digests.extend(a.blobs.iter().cloned());
                repo.digests.insert(a.digest.clone());
                if let Some(tag) = a.tag() {
                    repo.tags.insert(tag, a.digest.clone());
                }
                if a.kind == Kind::Referrer {
                    let listed = repo.referrers.entry(a.subject.clone()).or_default();
                    if !listed.iter().any(|d| d["digest"] == a.digest.as_str()) {
                        listed.push(a.referrer_descriptor(&bundle.read_small(&a.digest)?));
                    }
                }
            }
            self.images += 1;
        }
        self.repos.values_mut().for_each(Repo::index_fallback_tags);
        Ok(())
    }

    fn repo_name(&self, r: &Reference) -> String {
        match self.naming {
            Naming::KeepHost => format!("{}/{}", host_component(r.registry()), r.repository()),
            Naming::DropHost => r.repository().to_owned(),
        }
    }

    pub fn naming(&self) -> Naming {
        self.naming
    }

    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.get(name)
    }

    pub fn repo_names(&self) -> impl Iterator<Item = &str> {
        self.repos.keys().map(String::as_str)
    }

    pub fn image_count(&self) -> usize {
        self.images
    }

    /// The manifest or index a tag or digest names in `repo`, if this server can hand it out.
    pub fn manifest(&self, repo: &str, reference: &ManifestRef) -> Option<Manifest<'_>> {
        let r = self.repos.get(repo)?;
        let digest = match reference {
            ManifestRef::Tag(t) => r.tags.get(t)?,
            ManifestRef::Digest(d) => r.digests.get(d).or_else(|| r.fallback.get_key_value(d).map(|(k, _)| k))?,
        };
        if let Some(bytes) = r.fallback.get(digest) {
            return Some(Manifest::Fallback(digest, bytes));
        }
        let blob = self.blobs.get(digest).filter(|b| b.is_manifest())?;
        Some(Manifest::Stored(digest, blob))
    }

    /// A blob of `repo` (manifests too, as registries do), if some served bundle carries it.
    pub fn blob(&self, repo: &str, digest: &Digest) -> Option<&Blob> {
        self.repos.get(repo)?.digests.get(digest)?;
        self.blobs.get(digest)
    }

    /// Blobs the images use that no served bundle carries (a delta served without its base).
    pub fn missing(&self) -> BTreeSet<&Digest> {
        self.repos.values().flat_map(|r| &r.digests).filter(|d| !self.blobs.contains_key(*d)).collect()
    }
}

/// A registry host as the first component of a repository path: `registry.local:5000` becomes
/// `registry.local_5000`.
pub fn host_component(registry: &str) -> String {
    registry.replace(':', "_")
}

/// One page of a sorted list: the names after `last`, at most `n` of them, and whether more
/// follow (the caller then gives a `Link` to the next page).
pub fn page<'a>(names: impl Iterator<Item = &'a str>, n: Option<usize>, last: Option<&str>) -> (Vec<&'a str>, bool) {
    let mut after = names.filter(|name| last.is_none_or(|l| *name > l));
    let Some(n) = n else { return (after.collect(), false) };
    let items: Vec<&str> = after.by_ref().take(n).collect();
    let more = after.next().is_some();
    (items, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(BundleIndex, Vec<Digest>);

    impl Carried for Fake {
        fn index(&self) -> &BundleIndex {
            &self.0
        }

        fn blob_at(&self, digest: &Digest) -> Option<(u64, u64)> {
            self.1.iter().position(|d| d == digest).map(|i| (i as u64 * 1024, 10))
        }

        fn read_small(&self, _: &Digest) -> Result<Vec<u8>> {
            Ok(br#"{"annotations":{"a":"b"}}"#.to_vec())
        }
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn bundle(sequence: u64, images: &[(&str, char, &[char])], carried: &[char]) -> Fake {
        let imgs: Vec<_> = images
            .iter()
            .map(|(name, m, blobs)| {
                serde_json::json!({"name": name, "mediaType": image::OCI_MANIFEST, "digest": digest(*m), "size": 10,
                    "platforms": [], "dockerLoad": false, "blobs": blobs.iter().map(|c| digest(*c)).collect::<Vec<_>>()})
            })
            .collect();
        let blobs: Vec<_> = carried
            .iter()
            .map(|c| {
                let mt = if *c == 'a' || *c == 'b' { image::OCI_MANIFEST } else { "application/octet-stream" };
                serde_json::json!({"digest": digest(*c), "size": 10, "mediaType": mt})
            })
            .collect();
        let doc = serde_json::json!({"schemaVersion": 2, "mediaType": crate::bundle::format::MEDIA_TYPE,
            "bundleId": "b", "created": "2026-01-01T00:00:00Z", "tool": "t", "images": imgs, "blobs": blobs,
            "files": [], "series": "s", "sequence": sequence});
        let index = BundleIndex::parse("i", doc.to_string().as_bytes()).unwrap();
        Fake(index, carried.iter().map(|c| digest(*c)).collect())
    }

    #[test]
    fn a_later_bundle_wins_a_tag_and_a_blob_is_found_in_whichever_bundle_carries_it() {
        let full = bundle(1, &[("docker.io/library/busybox:1", 'a', &['a', 'c'])], &['a', 'c']);
        let delta = bundle(2, &[("docker.io/library/busybox:1", 'b', &['b', 'c'])], &['b']);
        let mut content = Content::new(Naming::KeepHost);
        content.add(0, &full).unwrap();
        content.add(1, &delta).unwrap();
        let repo = "docker.io/library/busybox";
        let Some(Manifest::Stored(d, blob)) = content.manifest(repo, &ManifestRef::Tag("1".into())) else { panic!() };
        assert_eq!((d, blob.at.bundle), (&digest('b'), 1));
        assert_eq!(content.blob(repo, &digest('c')).unwrap().at.bundle, 0);
        assert!(content.manifest(repo, &ManifestRef::Digest(digest('c'))).is_none(), "a layer is no manifest");
        assert!(content.blob("docker.io/library/other", &digest('c')).is_none());
        assert!(content.missing().is_empty());
    }

    #[test]
    fn a_subjects_fallback_tag_names_the_index_of_its_referrers_unless_a_bundle_carries_that_tag() {
        let mut b = bundle(1, &[("docker.io/library/busybox:1", 'a', &['a'])], &['a', 'b']);
        let referrer = |d: char| {
            serde_json::from_value(serde_json::json!({"kind": "referrer", "subject": digest('a'),
                "mediaType": image::OCI_MANIFEST, "digest": digest(d), "size": 10, "blobs": [digest(d)]}))
            .unwrap()
        };
        b.0.images[0].attachments = vec![referrer('b')];
        let mut content = Content::new(Naming::DropHost);
        content.add(0, &b).unwrap();
        let tag = ManifestRef::Tag(fallback_tag(&digest('a')));
        let Some(Manifest::Fallback(d, bytes)) = content.manifest("library/busybox", &tag) else { panic!() };
        let index: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest('b').as_str());
        assert_eq!(index["manifests"][0]["annotations"]["a"], "b");
        assert_eq!(*d, Digest::of_bytes(bytes));
        let by_digest = content.manifest("library/busybox", &ManifestRef::Digest(d.clone()));
        assert!(matches!(by_digest, Some(Manifest::Fallback(..))));

        let tagged = format!("docker.io/library/busybox:{}", fallback_tag(&digest('a')));
        let mut carried = bundle(2, &[("docker.io/library/busybox:1", 'a', &['a']), (&tagged, 'b', &['b'])], &[]);
        carried.0.images[0].attachments = vec![referrer('b')];
        content.add(1, &carried).unwrap();
        let Some(Manifest::Stored(d, _)) = content.manifest("library/busybox", &tag) else { panic!() };
        assert_eq!(*d, digest('b'), "the tag a bundle carries wins");
    }

    #[test]
    fn dropping_the_host_names_repositories_by_path_alone_and_a_kept_port_becomes_underscore() {
        let b = bundle(1, &[("registry.example:5000/team/app:1.4", 'a', &['a'])], &['a']);
        let mut dropped = Content::new(Naming::DropHost);
        dropped.add(0, &b).unwrap();
        assert_eq!(dropped.repo_names().collect::<Vec<_>>(), ["team/app"]);
        let mut kept = Content::new(Naming::KeepHost);
        kept.add(0, &b).unwrap();
        assert_eq!(kept.repo_names().collect::<Vec<_>>(), ["registry.example_5000/team/app"]);
    }

    #[test]
    fn pages_follow_last_and_say_whether_more_follow() {
        let names = ["a", "b", "c", "d"];
        assert_eq!(page(names.into_iter(), Some(2), None), (vec!["a", "b"], true));
        assert_eq!(page(names.into_iter(), Some(2), Some("b")), (vec!["c", "d"], false));
        assert_eq!(page(names.into_iter(), None, Some("c")), (vec!["d"], false));
        assert_eq!(page(names.into_iter(), Some(0), None), (vec![], true));
    }
}
