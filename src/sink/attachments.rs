//! `push` of what a bundle carries attached to its images: each attachment lands in its image's
//! new repository with the same digests, after the image itself. cosign's tags are recomputed
//! from the subject's digest (`sha256-<hex>.sig`, so they survive the rename of `--to`); a
//! referrer is pushed by digest with its `subject`, and where the registry has no referrers API
//! its subject's fallback tag index (`sha256-<hex>`) is updated: merged with what it lists
//! already, never replaced.
//!
//! Blobs first, then manifests, then the fallback indexes, each step at once on the push's pool;
//! what the registry holds already is not sent again, so a repeat push costs a few `HEAD`s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::attachments::{Attachment, Kind, fallback_tag, referrers_index};
use crate::bundle::format::BlobEntry;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, OCI_INDEX};
use crate::json;
use crate::progress::Observer;
use crate::reference::Reference;
use crate::registry::Client;
use crate::sink::Blobs;
use crate::sink::push::{Target, push_blob};
use crate::transfer::Pool;

/// Where attachments go, and what tells the user about uploads.
pub struct Destination<'a> {
    pub client: &'a Client,
    pub pool: &'a Pool,
    pub target: &'a Target,
    pub keep_host: bool,
    pub observer: &'a Arc<dyn Observer>,
}

/// One attachment to push into one repository.
struct Item<'a> {
    repo: String,
    attachment: &'a Attachment,
}

/// Pushes every image's attachments; returns how many manifests each image's attachments wrote
/// (in the signed index's image order).
pub fn push(bundle: &dyn Blobs, to: &Destination<'_>) -> Result<Vec<usize>> {
    let index = bundle.index();
    let mut items = Vec::new();
    let mut owner = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, entry) in index.images.iter().enumerate() {
        let name = Reference::parse(&entry.name).map_err(|e| Error::integrity("signed index", e.to_string()))?;
        let repo = to.target.map(&name, to.keep_host)?.repository().to_owned();
        for a in &entry.attachments {
            if seen.insert((repo.clone(), a.digest.clone())) {
                items.push(Item { repo: repo.clone(), attachment: a });
                owner.push(i);
            }
        }
    }
    if items.is_empty() {
        return Ok(vec![0; index.images.len()]);
    }
    upload_blobs(bundle, to, &items)?;
    let written = to.pool.try_map(&items, |item| put_manifest(bundle, to.client, item))?;
    update_fallback_indexes(bundle, to, &items)?;
    let mut counts = vec![0; index.images.len()];
    for (i, w) in owner.into_iter().zip(written) {
        counts[i] += usize::from(w);
    }
    Ok(counts)
}

/// Uploads the configs and layers of every attachment the repository lacks, each once.
fn upload_blobs(bundle: &dyn Blobs, to: &Destination<'_>, items: &[Item<'_>]) -> Result<()> {
    let sizes: HashMap<&Digest, u64> = bundle.index().blobs.iter().map(|b| (&b.digest, b.size)).collect();
    let pairs: Vec<(String, Digest, u64)> = items
        .iter()
        .flat_map(|i| {
            let a = i.attachment;
            a.blobs.iter().filter(|d| **d != a.digest).map(|d| (i.repo.clone(), d.clone()))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|(repo, d)| {
            let size = sizes.get(&d).copied().unwrap_or(0);
            (repo, d, size)
        })
        .collect();
    let entries: HashMap<&Digest, &BlobEntry> = bundle.index().blobs.iter().map(|b| (&b.digest, b)).collect();
    to.pool.try_for_each(&pairs, |(repo, d, size)| {
        if to.client.has_blob(repo, d, *size)? {
            return Ok(());
        }
        let b = entries.get(d).ok_or_else(|| Error::integrity(bundle.place(), format!("blob {d} is not listed")))?;
        push_blob(bundle, to.client, repo, b, None, to.observer).map(drop)
    })
}

/// Writes one attachment's manifest: under cosign's tag, or (a referrer) by digest. `false` when
/// the registry had it already.
fn put_manifest(bundle: &dyn Blobs, client: &Client, item: &Item<'_>) -> Result<bool> {
    let a = item.attachment;
    let reference = a.tag().unwrap_or_else(|| a.digest.to_string());
    if client.manifest_digest(&item.repo, &reference)?.is_some_and(|(d, _)| d == a.digest) {
        return Ok(false);
    }
    let bytes = read_small(bundle, &a.digest)?;
    let got = client.put_manifest(&item.repo, &reference, &a.media_type, &bytes, &mut || Ok(()))?;
    if got != a.digest {
        let place = format!("{}/{}:{reference}", client.registry(), item.repo);
        return Err(Error::integrity(place, format!("registry stored it as {got}, the bundle has {}", a.digest)));
    }
    Ok(true)
}

/// Reads (and so verifies) a small blob of the bundle whole: a manifest, a signature's payload
/// (the signed index bounds both).
pub fn read_small(bundle: &dyn Blobs, digest: &Digest) -> Result<Vec<u8>> {
    let listed = bundle.index().blobs.iter().find(|b| b.digest == *digest);
    let b = listed.ok_or_else(|| Error::integrity(bundle.place(), format!("blob {digest} is not listed")))?;
    bundle.read_small(&b.digest)
}

/// For each (repository, subject) with referrers: if the registry has no referrers API, lists
/// them in the subject's fallback tag index, one worker per index so no two race on it.
fn update_fallback_indexes(bundle: &dyn Blobs, to: &Destination<'_>, items: &[Item<'_>]) -> Result<()> {
    let mut by_subject: BTreeMap<(&str, &Digest), Vec<&Attachment>> = BTreeMap::new();
    for i in items.iter().filter(|i| i.attachment.kind == Kind::Referrer) {
        by_subject.entry((i.repo.as_str(), &i.attachment.subject)).or_default().push(i.attachment);
    }
    let groups: Vec<_> = by_subject.into_iter().collect();
    to.pool.try_for_each(&groups, |((repo, subject), referrers)| {
        if to.client.referrers(repo, subject)?.is_some() {
            return Ok(());
        }
        merge_fallback(bundle, to.client, repo, subject, referrers)
    })
}

/// Adds `referrers` to the fallback tag index of `subject`, keeping every entry it has.
fn merge_fallback(
    bundle: &dyn Blobs,
    client: &Client,
    repo: &str,
    subject: &Digest,
    referrers: &[&Attachment],
) -> Result<()> {
    let tag = fallback_tag(subject);
    let place = format!("{}/{repo}:{tag}", client.registry());
    let mut doc = match client.find_manifest(repo, &tag)? {
        None => referrers_index::<Value>(&[]),
        Some((bytes, media_type)) if image::is_index_type(&media_type) => {
            json::parse(&bytes).map_err(|e| Error::bad(&place, e))?
        }
        Some((_, media_type)) => {
            let msg = format!("holds a `{}`, not a referrers index; left as it is", crate::error::shown(&media_type));
            return Err(Error::bad(place, msg));
        }
    };
    let Some(listed) = doc.get_mut("manifests").and_then(Value::as_array_mut) else {
        return Err(Error::bad(place, "is an index without a `manifests` list; left as it is"));
    };
    let before = listed.len();
    for a in referrers {
        if !listed.iter().any(|e| e.get("digest").and_then(Value::as_str) == Some(a.digest.as_str())) {
            listed.push(a.referrer_descriptor(&read_small(bundle, &a.digest)?));
        }
    }
    if listed.len() == before {
        return Ok(());
    }
    let bytes = serde_json::to_vec(&doc).map_err(|e| Error::bad(&place, e.to_string()))?;
    client.put_manifest(repo, &tag, OCI_INDEX, &bytes, &mut || Ok(())).map(drop)
}
