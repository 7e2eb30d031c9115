//! `push`: replays a verified bundle into an OCI distribution registry.
//!
//! Order is what keeps a registry consistent: blobs first, then manifests, children before the
//! indexes that name them, tags last, so no tag ever points at something missing or unverified.
//! Every blob the registry lacks is read from the bundle through a verifying reader while it is
//! uploaded; a mismatch aborts that upload and the whole push before any manifest is sent. What
//! the registry already holds is not read at all, which makes a repeat push, or the rerun of an
//! interrupted one, cheap: it uploads only what is missing and ends in the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;

use crate::bundle::format::{BlobEntry, BundleIndex, ImageEntry};
use crate::bundle::indexed::IndexedBundle;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image;
use crate::progress::{Observer, Phase, Ticking};
use crate::reference::Reference;
use crate::registry::Client;
use crate::sink::Staged;
use crate::transfer::Pool;

/// Where images land: `HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone)]
pub struct Target {
    pub registry: String,
    pub prefix: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::bad(format!("--to {text}"), why);
        let text = text.trim_end_matches('/');
        let (registry, prefix) = text.split_once('/').unwrap_or((text, ""));
        if registry.contains("://") || text.contains("://") {
            return Err(bad("give HOST[:PORT][/PREFIX], without a scheme"));
        }
        // Parsing a reference made of it validates the host and every prefix component.
        let probe = if prefix.is_empty() { format!("{registry}/x") } else { format!("{registry}/{prefix}/x") };
        let r = Reference::parse(&probe).map_err(|e| bad(&e.why))?;
        if r.registry() != registry {
            return Err(bad("the first component must be a registry host (with a '.' or ':', or localhost)"));
        }
        Ok(Target { registry: registry.to_owned(), prefix: prefix.to_owned() })
    }

    /// `registry.example/team/app:1.4` → `HOST/PREFIX/team/app:1.4`; with `keep_host`,
    /// `HOST/PREFIX/registry.example/team/app:1.4` (a port's ':' becomes '_').
    pub fn map(&self, name: &Reference, keep_host: bool) -> Result<Reference> {
        let mut path = Vec::new();
        if !self.prefix.is_empty() {
            path.push(self.prefix.clone());
        }
        if keep_host {
            path.push(name.registry().replace(':', "_"));
        }
        path.push(name.repository().to_owned());
        let mut text = format!("{}/{}", self.registry, path.join("/"));
        if let Some(t) = name.tag() {
            text = format!("{text}:{t}");
        }
        if let Some(d) = name.digest() {
            text = format!("{text}@{d}");
        }
        Reference::parse(&text)
            .map_err(|e| Error::bad(format!("image {name}"), format!("cannot be pushed as {text}: {}", e.why)))
    }
}

/// Where push reads blobs from: the bundle file itself, or a verified staging directory when the
/// bundle came on stdin.
pub trait Blobs: Sync {
    fn index(&self) -> &BundleIndex;
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;
    fn place(&self) -> String;
}

impl Blobs for IndexedBundle {
    fn index(&self) -> &BundleIndex {
        IndexedBundle::index(self)
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.open_blob(digest)?))
    }
    fn place(&self) -> String {
        IndexedBundle::place(self).to_owned()
    }
}

impl Blobs for Staged {
    fn index(&self) -> &BundleIndex {
        Staged::index(self)
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.blob_path(digest);
        let f = fs_err::File::open(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }
    fn place(&self) -> String {
        self.report.index.bundle_id.clone()
    }
}

pub struct PushOptions {
    /// Told the bytes of every blob as it is uploaded.
    pub observer: Arc<dyn Observer>,
    pub target: Target,
    pub keep_host: bool,
    pub dry_run: bool,
    /// (repository, blob) pairs the registry is known to hold already (a delta's absent blobs,
    /// found by [`crate::sink::absent::check`]): mounted from there, never read from the bundle.
    pub held: crate::sink::absent::Held,
}

/// One image's outcome, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageResult {
    pub source: String,
    pub reference: String,
    pub digest: Digest,
    pub blobs_uploaded: usize,
    pub blobs_skipped: usize,
    pub blobs_mounted: usize,
    pub bytes_uploaded: u64,
    /// Manifests (and indexes) written; 0 when the registry had them all.
    pub manifests_pushed: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushReport {
    pub registry: String,
    pub dry_run: bool,
    pub images: Vec<ImageResult>,
    pub bytes_uploaded: u64,
}

/// Called with (event, bytes) as images complete: for log lines.
pub type Progress<'a> = &'a (dyn Fn(&str, u64) + Sync);

struct Plan<'a> {
    entry: &'a ImageEntry,
    target: Reference,
    repo: String,
    /// Configs and layers.
    blobs: Vec<&'a BlobEntry>,
    /// Manifests and indexes, children first, the root last.
    manifests: Vec<&'a BlobEntry>,
    /// The target already names the bundle's root: a registry takes a manifest only once all it
    /// names is there, so there is nothing to push for this image.
    current: bool,
}

/// (repository, blob) pairs.
type Held = BTreeSet<(String, Digest)>;

/// Every step runs on one pool as large as the client's connections, images side by side.
pub fn push(bundle: &dyn Blobs, client: &Client, opts: &PushOptions, progress: Progress<'_>) -> Result<PushReport> {
    let pool = Pool::new(client.connections())?;
    let mut plans = plan(bundle.index(), opts)?;
    let current = pool.try_map(&plans, |p| is_current(client, p))?;
    for (plan, current) in plans.iter_mut().zip(current) {
        plan.current = current;
    }
    let todo: Vec<&Plan<'_>> = plans.iter().filter(|p| !p.current).collect();
    let mut have = present(client, &pool, &todo)?;
    have.extend(opts.held.iter().cloned());
    let mut results: Vec<ImageResult> = plans.iter().map(|p| initial_result(p, &have)).collect();
    if opts.dry_run {
        // Each missing blob is uploaded once however many repositories need it.
        let missing: BTreeMap<&Digest, u64> =
            missing(&todo, &have).into_iter().map(|(_, b)| (&b.digest, b.size)).collect();
        let bytes = missing.values().sum();
        return Ok(PushReport {
            registry: opts.target.registry.clone(),
            dry_run: true,
            images: results,
            bytes_uploaded: bytes,
        });
    }
    let outcomes = upload(bundle, client, &pool, &todo, &have, &opts.observer)?;
    for (plan, result) in plans.iter().zip(&mut results) {
        (result.blobs_uploaded, result.bytes_uploaded) = (0, 0);
        for b in &plan.blobs {
            match outcomes.get(&(plan.repo.clone(), b.digest.clone())) {
                Some(Outcome::Uploaded) => {
                    result.blobs_uploaded += 1;
                    result.bytes_uploaded += b.size;
                }
                Some(Outcome::Mounted) => result.blobs_mounted += 1,
                None => {}
            }
        }
    }
    // Every blob is in place and every uploaded one verified: now manifests, then tags.
    let pushed =
        pool.try_map(&plans, |plan| if plan.current { Ok(0) } else { push_manifests(bundle, client, plan) })?;
    for ((plan, result), pushed) in plans.iter().zip(&mut results).zip(pushed) {
        result.manifests_pushed = pushed;
        let what = if pushed == 0 { "up to date" } else { "pushed" };
        progress(&format!("{what}: {}@{}", plan.target, plan.entry.digest), 0);
    }
    // Per image, a blob counts for every image that uses it; in all, once per upload.
    let sizes: HashMap<&Digest, u64> = bundle.index().blobs.iter().map(|b| (&b.digest, b.size)).collect();
    let bytes_uploaded = outcomes
        .iter()
        .filter(|(_, o)| **o == Outcome::Uploaded)
        .map(|((_, d), _)| sizes.get(d).copied().unwrap_or(0))
        .sum();
    Ok(PushReport { registry: opts.target.registry.clone(), dry_run: false, images: results, bytes_uploaded })
}

fn plan<'a>(index: &'a BundleIndex, opts: &PushOptions) -> Result<Vec<Plan<'a>>> {
    let by_digest: HashMap<&Digest, &BlobEntry> = index.blobs.iter().map(|b| (&b.digest, b)).collect();
    let mut plans = Vec::new();
    for entry in &index.images {
        let name = Reference::parse(&entry.name).map_err(|e| Error::integrity("signed index", e.to_string()))?;
        let target = opts.target.map(&name, opts.keep_host)?;
        let repo = target.repository().to_owned();
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        let mut root = None;
        for d in &entry.blobs {
            let b = by_digest
                .get(d)
                .ok_or_else(|| Error::integrity(format!("image {}", entry.name), format!("blob {d} is not listed")))?;
            let is_manifest = image::is_manifest_type(&b.media_type) || image::is_index_type(&b.media_type);
            match (is_manifest, *d == entry.digest) {
                (_, true) => root = Some(*b),
                (true, false) => children.push(*b),
                (false, false) => blobs.push(*b),
            }
        }
        let root =
            root.ok_or_else(|| Error::integrity(format!("image {}", entry.name), "its manifest is not listed"))?;
        children.push(root);
        plans.push(Plan { entry, target, repo, blobs, manifests: children, current: false });
    }
    Ok(plans)
}

/// The reference the root manifest is pushed as: the tag, or its digest when there is none.
fn root_reference(plan: &Plan<'_>) -> String {
    plan.target.tag().map_or_else(|| plan.entry.digest.to_string(), str::to_owned)
}

/// One `HEAD` of the image's tag: does it name the bundle's root already?
fn is_current(client: &Client, plan: &Plan<'_>) -> Result<bool> {
    let found = client.manifest_digest(&plan.repo, &root_reference(plan))?;
    Ok(found.is_some_and(|(digest, _)| digest == plan.entry.digest))
}

/// Which (repository, blob) pairs the registry already holds whole; asked in parallel.
fn present(client: &Client, pool: &Pool, plans: &[&Plan<'_>]) -> Result<Held> {
    let pairs: Vec<(String, Digest, u64)> = plans
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| (p.repo.clone(), b.digest.clone(), b.size)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let found = pool.try_map(&pairs, |(repo, d, size)| client.has_blob(repo, d, *size))?;
    Ok(pairs.into_iter().zip(found).filter(|(_, held)| *held).map(|((repo, d, _), _)| (repo, d)).collect())
}

/// The (repository, blob) pairs the registry lacks, each once.
fn missing<'a>(plans: &[&Plan<'a>], have: &Held) -> Vec<(String, &'a BlobEntry)> {
    let mut seen = BTreeSet::new();
    plans
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| (p.repo.clone(), *b)))
        .filter(|(repo, b)| !have.contains(&(repo.clone(), b.digest.clone())))
        .filter(|(repo, b)| seen.insert((repo.clone(), b.digest.clone())))
        .collect()
}

fn initial_result(p: &Plan<'_>, have: &Held) -> ImageResult {
    // Before uploading, "uploaded" counts what is missing: what a dry run reports.
    let (held, missing): (Vec<&&BlobEntry>, Vec<&&BlobEntry>) =
        p.blobs.iter().partition(|b| p.current || have.contains(&(p.repo.clone(), b.digest.clone())));
    ImageResult {
        source: p.entry.name.clone(),
        reference: p.target.to_string(),
        digest: p.entry.digest.clone(),
        blobs_uploaded: missing.len(),
        blobs_skipped: held.len(),
        blobs_mounted: 0,
        bytes_uploaded: missing.iter().map(|b| b.size).sum(),
        manifests_pushed: 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Uploaded,
    Mounted,
}

/// Uploads each missing blob once, all at once (into the first repository that needs it, unless
/// a repository of the registry has it), then mounts it into every other repository that needs
/// it, all at once: two round trips of waiting however many repositories share a blob.
fn upload(
    bundle: &dyn Blobs,
    client: &Client,
    pool: &Pool,
    plans: &[&Plan<'_>],
    have: &Held,
    observer: &Arc<dyn Observer>,
) -> Result<HashMap<(String, Digest), Outcome>> {
    let missing = missing(plans, have);
    let mut holders: HashMap<&Digest, String> = have.iter().map(|(repo, d)| (d, repo.clone())).collect();
    let mut first: BTreeMap<&Digest, (&str, u64)> = BTreeMap::new();
    for (repo, b) in &missing {
        if !holders.contains_key(&b.digest) {
            first.entry(&b.digest).or_insert((repo, b.size));
        }
    }
    let first: Vec<(&Digest, (&str, u64))> = first.into_iter().collect();
    let send = |repo: &str, digest: &Digest, size: u64| -> Result<Outcome> {
        push_blob(bundle, client, repo, digest, size, observer)?;
        Ok(Outcome::Uploaded)
    };
    pool.try_for_each(&first, |(digest, (repo, size))| send(repo, digest, *size).map(drop))?;
    let mut outcomes: HashMap<(String, Digest), Outcome> = HashMap::new();
    for (digest, (repo, _)) in &first {
        holders.insert(digest, repo.to_string());
        outcomes.insert((repo.to_string(), (*digest).clone()), Outcome::Uploaded);
    }
    let rest: Vec<&(String, &BlobEntry)> =
        missing.iter().filter(|(repo, b)| !outcomes.contains_key(&(repo.clone(), b.digest.clone()))).collect();
    let mounted = pool.try_map(&rest, |(repo, b)| match holders.get(&b.digest) {
        Some(from) if client.mount_blob(repo, from, &b.digest)? => Ok(Outcome::Mounted),
        _ => send(repo, &b.digest, b.size),
    })?;
    outcomes.extend(rest.into_iter().zip(mounted).map(|((repo, b), o)| ((repo.clone(), b.digest.clone()), o)));
    Ok(outcomes)
}

/// Uploads one blob from the bundle. An integrity failure here is the bundle's: it names the
/// bundle's entry, not the target.
fn push_blob(
    bundle: &dyn Blobs,
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    observer: &Arc<dyn Observer>,
) -> Result<()> {
    let task = observer.begin(Phase::Upload, &format!("{} to {repo}", digest.short()), size);
    let mut open = || -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(Ticking::new(bundle.open(digest)?, Arc::clone(observer), task)))
    };
    let pushed = client.push_blob(repo, digest, size, &mut open);
    observer.end(task);
    pushed.map_err(|e| match e {
        Error::Integrity { msg, .. } => {
            Error::integrity(format!("{}: entry {}", bundle.place(), digest.blob_path()), msg)
        }
        other => other,
    })
}

/// After a manifest `PUT` answered `MANIFEST_BLOB_UNKNOWN`: asks again for each of the image's
/// blobs and uploads those the registry does not hold whole (it may have lied, or collected them).
fn upload_missing(bundle: &dyn Blobs, client: &Client, plan: &Plan<'_>) -> Result<()> {
    for b in &plan.blobs {
        if !client.has_blob(&plan.repo, &b.digest, b.size)? {
            // A rare repair: shown as part of the manifests' step, not as an upload of its own.
            push_blob(bundle, client, &plan.repo, &b.digest, b.size, &crate::progress::silent())?;
        }
    }
    Ok(())
}

/// Reads (and so verifies) all of an image's manifests, then pushes the children by digest and
/// the root by tag, skipping children the registry already has. Returns how many were written.
fn push_manifests(bundle: &dyn Blobs, client: &Client, plan: &Plan<'_>) -> Result<usize> {
    let mut docs = Vec::new();
    for m in &plan.manifests {
        let mut bytes = Vec::new();
        let place = format!("{}: entry {}", bundle.place(), m.digest.blob_path());
        bundle.open(&m.digest)?.read_to_end(&mut bytes).map_err(|e| Error::io(place, e).into_integrity())?;
        docs.push((*m, bytes));
    }
    let mut pushed = 0;
    let last = docs.len() - 1;
    for (i, (m, bytes)) in docs.iter().enumerate() {
        let reference = if i == last { root_reference(plan) } else { m.digest.to_string() };
        // The root's reference was asked about already (`is_current`): it needs writing.
        if i != last
            && let Some((digest, _)) = client.manifest_digest(&plan.repo, &reference)?
            && digest == m.digest
        {
            continue;
        }
        let mut repair = || upload_missing(bundle, client, plan);
        let got = client.put_manifest(&plan.repo, &reference, &m.media_type, bytes, &mut repair)?;
        if got != m.digest {
            return Err(Error::integrity(
                format!("{}:{reference}", plan.target.name()),
                format!("registry stored manifest as {got}, the bundle has {}", m.digest),
            ));
        }
        pushed += 1;
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_path_under_the_prefix_and_drop_the_host() {
        let t = Target::parse("registry.internal:5000/mirror").unwrap();
        let r = |s: &str| Reference::parse(s).unwrap();
        assert_eq!(
            t.map(&r("registry.example/team/app:1.4"), false).unwrap().to_string(),
            "registry.internal:5000/mirror/team/app:1.4"
        );
        assert_eq!(
            t.map(&r("busybox:1.36"), false).unwrap().to_string(),
            "registry.internal:5000/mirror/library/busybox:1.36"
        );
        assert_eq!(
            t.map(&r("registry.example:443/team/app:1.4"), true).unwrap().to_string(),
            "registry.internal:5000/mirror/registry.example_443/team/app:1.4"
        );
        assert_eq!(Target::parse("localhost:5000").unwrap().prefix, "");
        assert!(Target::parse("https://x.io").is_err());
        assert!(Target::parse("mirror/team").is_err(), "a target must start with a registry host");
    }
}
