//! Finds what is attached to an image taken from a registry: for the image's digest and each of
//! its child manifests' digests, cosign's three tags and the OCI 1.1 referrers (the API, else the
//! `sha256-<hex>` fallback tag index), then the same for every attachment found, level by level
//! up to [`MAX_DEPTH`], at most [`MAX_ATTACHMENTS`] in all. Only the tags the repository's listing
//! holds are fetched, and the referrers API only of a registry that has one ([`Lookups`]), so an
//! image with nothing attached costs no round trip of its own. Every lookup of a level runs at
//! once on the pool the caller runs on (`create`'s transfer pool).
//!
//! Attachment manifests are read whole and checked like any manifest, but their layers stay
//! opaque ([`crate::image::parse_artifact`]); configs and layers are streamed into the bundle
//! when it is written, like an image's.

use std::collections::HashSet;
use std::sync::Arc;

use rayon::prelude::*;

use crate::attachments::{
    ANNOTATION_KIND, ANNOTATION_SUBJECT, Attachment, COSIGN_LAYOUT_KIND, Kind, MAX_ATTACHMENTS, MAX_DEPTH, Selection,
    fallback_tag, parse_referrers,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Descriptor, Parsed};
use crate::json;
use crate::reference::Reference;
use crate::registry::Client;
use crate::source::lookups::{Lookups, Tags};
use crate::source::oci::Fetch;
use crate::source::{Found, Origin, ReadOptions};

/// One repository of a registry, where an image and its attachments live.
pub struct Repository<'a> {
    pub client: Arc<Client>,
    pub repo: String,
    /// What is known of its tags and its registry, shared by every image of the run.
    pub lookups: &'a Lookups,
}

/// An attachment named by a lookup, before its manifest is read.
struct Candidate {
    kind: Kind,
    subject: Digest,
    media_type: String,
    digest: Digest,
    size: u64,
    artifact_type: Option<String>,
    /// The manifest, when the lookup (a tag) returned it already.
    bytes: Option<Vec<u8>>,
}

/// Discovers the attachments of `image`, whose own manifests are `subjects`; returns them
/// (parents before children) and hands the blobs they use to `out`.
pub fn discover(
    at: &Repository,
    image: &Reference,
    subjects: &[Digest],
    sel: &Selection,
    out: &mut dyn Found,
) -> Result<Vec<Attachment>> {
    let mut found = Vec::new();
    if sel.is_none() {
        return Ok(found);
    }
    let own: HashSet<&Digest> = subjects.iter().collect();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut level: Vec<Digest> = subjects.to_vec();
    let tags = at.lookups.tags(&at.client, &at.repo);
    for depth in 0..MAX_DEPTH {
        if level.is_empty() {
            break;
        }
        let lookups: Vec<(&Digest, Option<Kind>)> =
            level.iter().flat_map(|s| Kind::COSIGN.map(Some).into_iter().chain([None]).map(move |k| (s, k))).collect();
        let answers: Vec<Vec<Candidate>> =
            lookups.par_iter().with_max_len(1).map(|(s, kind)| at.look_up(&tags, s, *kind)).collect::<Result<_>>()?;
        let mut fresh = Vec::new();
        for c in answers.into_iter().flatten() {
            if own.contains(&c.digest) {
                let msg = format!("{} lists the image's own manifest {} as attached to it", c.subject, c.digest);
                return Err(Error::bad(format!("image {image}: attachments"), msg));
            }
            if !sel.takes(c.kind, c.artifact_type.as_deref()) || !seen.insert(c.digest.clone()) {
                continue;
            }
            if seen.len() > MAX_ATTACHMENTS {
                let msg = format!("more than {MAX_ATTACHMENTS} attachments (signatures, SBOMs, referrers)");
                return Err(Error::bad(format!("image {image}"), msg));
            }
            fresh.push(c);
        }
        let read: Vec<Option<Loaded>> =
            fresh.into_par_iter().with_max_len(1).map(|c| at.read(image, c, sel)).collect::<Result<_>>()?;
        level = Vec::new();
        for (attachment, blobs) in read.into_iter().flatten() {
            level.push(attachment.digest.clone());
            found.push(attachment);
            blobs.into_iter().for_each(|(d, origin)| out.add_blob(d, origin));
        }
        if depth + 1 == MAX_DEPTH && !level.is_empty() {
            out.notice(format!("image {image}: attachments nested deeper than {MAX_DEPTH} levels were not looked for"));
        }
    }
    Ok(found)
}

impl Repository<'_> {
    fn place(&self, what: &str) -> String {
        format!("{}/{}{what}", self.client.registry(), self.repo)
    }

    /// One lookup: a cosign tag of `subject`, or (`None`) its referrers; a tag `tags` lacks is
    /// not asked for.
    fn look_up(&self, tags: &Tags, subject: &Digest, kind: Option<Kind>) -> Result<Vec<Candidate>> {
        let Some(kind) = kind else { return self.referrers(tags, subject) };
        let tag = format!("{}.{}", fallback_tag(subject), kind.tag_suffix().unwrap_or_default());
        if !tags.may_hold(&tag) {
            return Ok(Vec::new());
        }
        let Some((bytes, media_type)) = self.client.find_manifest(&self.repo, &tag)? else { return Ok(Vec::new()) };
        let digest = Digest::of_bytes(&bytes);
        let size = bytes.len() as u64;
        Ok(vec![Candidate {
            kind,
            subject: subject.clone(),
            media_type,
            digest,
            size,
            artifact_type: None,
            bytes: Some(bytes),
        }])
    }

    /// The referrers of `subject`: the API's list, else the fallback tag's index, else none.
    fn referrers(&self, tags: &Tags, subject: &Digest) -> Result<Vec<Candidate>> {
        let list = match self.lookups.referrers(&self.client, &self.repo, subject)? {
            Some(list) => list,
            None if !tags.may_hold(&fallback_tag(subject)) => return Ok(Vec::new()),
            None => match self.client.find_manifest(&self.repo, &fallback_tag(subject))? {
                Some((bytes, media_type)) if image::is_index_type(&media_type) => bytes,
                _ => return Ok(Vec::new()),
            },
        };
        let place = self.place(&format!("@{subject} (referrers)"));
        let listed = parse_referrers(&list).map_err(|e| Error::bad(&place, e))?;
        if listed.len() > MAX_ATTACHMENTS {
            let msg = format!("lists {} referrers, more than the {MAX_ATTACHMENTS} an image may carry", listed.len());
            return Err(Error::bad(place, msg));
        }
        Ok(listed
            .into_iter()
            .map(|r| Candidate {
                kind: Kind::Referrer,
                subject: subject.clone(),
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                artifact_type: r.artifact_type,
                bytes: None,
            })
            .collect())
    }

    /// Reads a candidate's manifest and makes it an attachment; `None` (with no error) for what
    /// is not carried: an index-typed referrer, or an artifact type the selection leaves out.
    fn read(&self, image: &Reference, c: Candidate, sel: &Selection) -> Result<Option<Loaded>> {
        let place = format!("image {image}: attachment {}", self.place(&format!("@{}", c.digest)));
        if !image::is_manifest_type(&c.media_type) {
            return Ok(None);
        }
        if c.size > json::MAX_JSON_BYTES {
            return Err(Error::bad(place, format!("{} bytes is too large for a manifest", c.size)));
        }
        let bytes = match c.bytes {
            Some(b) => b,
            None => self.client.get_manifest(&self.repo, c.digest.as_str())?.0,
        };
        let m = match image::parse_artifact(&bytes, &c.media_type) {
            Ok(Parsed::Manifest(m)) => m,
            Ok(Parsed::Index(_)) => return Ok(None),
            Err(e) => return Err(Error::bad(place, e)),
        };
        if c.kind == Kind::Referrer && m.subject.as_ref().map(|s| &s.digest) != Some(&c.subject) {
            return Err(Error::bad(place, format!("is listed as a referrer of {}, but its subject is not", c.subject)));
        }
        let artifact_type = c.artifact_type.or(m.artifact_type.clone()).or_else(|| match c.kind {
            Kind::Referrer => Some(m.config.media_type.clone()),
            _ => None,
        });
        if !sel.takes(c.kind, artifact_type.as_deref()) {
            return Ok(None);
        }
        let origin = |part: &Descriptor| {
            if part.urls.is_some() {
                return Err(Error::bad(&place, format!("blob {} is foreign (has urls)", part.digest)));
            }
            Ok(Origin::Registry { client: self.client.clone(), repo: self.repo.clone() })
        };
        let root = Descriptor::new(&c.media_type, c.digest, c.size);
        load(c.kind, c.subject, root, artifact_type, &m, bytes, &origin).map(Some)
    }
}

/// An attachment of `kind` to `subject` whose manifest `root` (`bytes`, parsed as `m`) was read:
/// its blobs are the manifest, its config and its layers, each read from `origin`.
fn load(
    kind: Kind,
    subject: Digest,
    root: Descriptor,
    artifact_type: Option<String>,
    m: &image::Manifest,
    bytes: Vec<u8>,
    origin: &dyn Fn(&Descriptor) -> Result<Origin>,
) -> Result<Loaded> {
    let mut blobs = vec![(root.clone(), Origin::Bytes(bytes.into()))];
    for part in std::iter::once(&m.config).chain(&m.layers) {
        blobs.push((Descriptor::new(&part.media_type, part.digest.clone(), part.size), origin(part)?));
    }
    let mut listed = HashSet::new();
    let digests = blobs.iter().map(|(b, _)| b.digest.clone()).filter(|b| listed.insert(b.clone())).collect();
    let Descriptor { media_type, digest, size, .. } = root;
    Ok((Attachment { kind, subject, media_type, digest, size, artifact_type, blobs: digests }, blobs))
}

/// Whether an entry of a layout's `index.json` is an attachment rather than an image: marked by
/// airlock ([`ANNOTATION_KIND`]) or by `cosign save` (`kind: dev.cosignproject.cosign/sigs`).
pub fn is_layout_attachment(d: &Descriptor) -> bool {
    d.annotation(ANNOTATION_KIND).is_some()
        || d.annotation(COSIGN_LAYOUT_KIND).and_then(Kind::from_cosign_layout).is_some()
}

/// Reads the attachments a layout holds: the entries [`is_layout_attachment`] picked out of its
/// `index.json` (`entries` are the others), each with the subject its annotation or manifest
/// names (in a `cosign save` layout, the layout's image). `taken`: how many images this read
/// takes, which bounds how many attachments it may hold.
pub fn read_layout(
    fetch: &dyn Fetch,
    attached: &[Descriptor],
    entries: &[Descriptor],
    taken: usize,
    opts: &ReadOptions,
) -> Result<Vec<Loaded>> {
    if attached.is_empty() || opts.attachments.is_none() || taken == 0 {
        return Ok(Vec::new());
    }
    if attached.len() > MAX_ATTACHMENTS * taken {
        let msg = format!("holds {} attachments, more than {MAX_ATTACHMENTS} an image", attached.len());
        return Err(Error::bad(fetch.place(&attached[0].digest), msg));
    }
    let cosign_image = entries
        .iter()
        .find(|d| {
            matches!(
                d.annotation(COSIGN_LAYOUT_KIND),
                Some("dev.cosignproject.cosign/image" | "dev.cosignproject.cosign/imageIndex")
            )
        })
        .map(|d| d.digest.clone());
    let mut read = Vec::new();
    for d in attached {
        read.extend(read_layout_attachment(fetch, d, cosign_image.as_ref(), &opts.attachments)?);
    }
    Ok(read)
}

/// An attachment and the blobs it uses, with where to read them.
pub type Loaded = (Attachment, Vec<(Descriptor, Origin)>);

/// The attachments of `read` whose subject is one of `own` or, level by level up to
/// [`MAX_DEPTH`], one of the attachments taken before; their blobs go to `out`.
pub fn attached_to(own: &[Digest], read: &[Loaded], out: &mut dyn Found) -> Vec<Attachment> {
    let mut subjects: HashSet<&Digest> = own.iter().collect();
    let mut taken: Vec<Attachment> = Vec::new();
    for _ in 0..MAX_DEPTH {
        let level: Vec<&Loaded> = read
            .iter()
            .filter(|(a, _)| subjects.contains(&a.subject) && !taken.iter().any(|t| t.digest == a.digest))
            .collect();
        if level.is_empty() {
            break;
        }
        for (a, blobs) in level {
            subjects.insert(&a.digest);
            taken.push(a.clone());
            blobs.iter().cloned().for_each(|(d, origin)| out.add_blob(d, origin));
        }
    }
    taken
}

/// Reads one attachment entry of a layout; `None` for one not carried (an index, no subject,
/// left out by the selection).
fn read_layout_attachment(
    fetch: &dyn Fetch,
    d: &Descriptor,
    cosign_image: Option<&Digest>,
    sel: &Selection,
) -> Result<Option<Loaded>> {
    let place = fetch.place(&d.digest);
    let kind = d.annotation(ANNOTATION_KIND).and_then(Kind::parse);
    let Some(kind) = kind.or_else(|| d.annotation(COSIGN_LAYOUT_KIND).and_then(Kind::from_cosign_layout)) else {
        return Ok(None);
    };
    if !image::is_manifest_type(&d.media_type) {
        return Ok(None);
    }
    let bytes = fetch.read_small(d)?;
    let m = match image::parse_artifact(&bytes, &d.media_type) {
        Ok(Parsed::Manifest(m)) => m,
        Ok(Parsed::Index(_)) => return Ok(None),
        Err(e) => return Err(Error::bad(place, e)),
    };
    let annotated = match d.annotation(ANNOTATION_SUBJECT) {
        Some(s) => Some(Digest::parse(s).map_err(|e| Error::bad(&place, e.to_string()))?),
        None => None,
    };
    let subject = annotated
        .or_else(|| m.subject.as_ref().map(|s| s.digest.clone()))
        .or_else(|| cosign_image.filter(|_| kind != Kind::Referrer).cloned());
    let Some(subject) = subject else { return Ok(None) };
    let artifact_type =
        m.artifact_type.clone().or_else(|| (kind == Kind::Referrer).then(|| m.config.media_type.clone()));
    if !sel.takes(kind, artifact_type.as_deref()) {
        return Ok(None);
    }
    let origin = |part: &Descriptor| fetch.layer(&Descriptor::new(&part.media_type, part.digest.clone(), part.size));
    let root = Descriptor::new(&d.media_type, d.digest.clone(), d.size);
    load(kind, subject, root, artifact_type, &m, bytes, &origin).map(Some)
}
