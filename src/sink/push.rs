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
use std::sync::{Arc, Mutex};

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
    pub jobs: usize,
    pub dry_run: bool,
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
}

pub fn push(bundle: &dyn Blobs, client: &Client, opts: &PushOptions, progress: Progress<'_>) -> Result<PushReport> {
    let plans = plan(bundle.index(), opts)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| Error::bad("--jobs", e.to_string()))?;
    let have = pool.install(|| present(client, &plans))?;
    let mut results: Vec<ImageResult> = plans.iter().map(|p| initial_result(p, &have)).collect();
    if opts.dry_run {
        // Each missing blob is uploaded once however many repositories need it.
        let missing: BTreeMap<&Digest, u64> = plans
            .iter()
            .flat_map(|p| p.blobs.iter().filter(|b| !have.contains(&(p.repo.clone(), b.digest.clone()))))
            .map(|b| (&b.digest, b.size))
            .collect();
        let bytes = missing.values().sum();
        return Ok(PushReport {
            registry: opts.target.registry.clone(),
            dry_run: true,
            images: results,
            bytes_uploaded: bytes,
        });
    }
    let outcomes = pool.install(|| upload(bundle, client, &plans, &have, &opts.observer))?;
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
    for (plan, result) in plans.iter().zip(&mut results) {
        result.manifests_pushed = push_manifests(bundle, client, plan)?;
        let what = if result.manifests_pushed == 0 { "up to date" } else { "pushed" };
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
        plans.push(Plan { entry, target, repo, blobs, manifests: children });
    }
    Ok(plans)
}

/// Which (repository, blob) pairs the registry already holds whole; asked in parallel.
fn present(client: &Client, plans: &[Plan<'_>]) -> Result<BTreeSet<(String, Digest)>> {
    use rayon::prelude::*;
    let pairs: BTreeMap<(String, Digest), u64> =
        plans.iter().flat_map(|p| p.blobs.iter().map(|b| ((p.repo.clone(), b.digest.clone()), b.size))).collect();
    let found: Result<Vec<Option<(String, Digest)>>> = pairs
        .into_par_iter()
        .map(|((repo, d), size)| Ok(client.has_blob(&repo, &d, size)?.then_some((repo, d))))
        .collect();
    Ok(found?.into_iter().flatten().collect())
}

fn initial_result(p: &Plan<'_>, have: &BTreeSet<(String, Digest)>) -> ImageResult {
    // Before uploading, "uploaded" counts what is missing: what a dry run reports.
    let (held, missing): (Vec<&&BlobEntry>, Vec<&&BlobEntry>) =
        p.blobs.iter().partition(|b| have.contains(&(p.repo.clone(), b.digest.clone())));
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

/// Uploads each missing blob once (to the first repository that needs it, or mounted from a
/// repository of the registry that has it) and mounts it into every other repository that needs it.
fn upload(
    bundle: &dyn Blobs,
    client: &Client,
    plans: &[Plan<'_>],
    have: &BTreeSet<(String, Digest)>,
    observer: &Arc<dyn Observer>,
) -> Result<HashMap<(String, Digest), Outcome>> {
    use rayon::prelude::*;
    let mut wanted: BTreeMap<&Digest, (u64, Vec<&str>)> = BTreeMap::new();
    for p in plans {
        for b in &p.blobs {
            let e = wanted.entry(&b.digest).or_insert((b.size, Vec::new()));
            if !e.1.contains(&p.repo.as_str()) {
                e.1.push(&p.repo);
            }
        }
    }
    let outcomes = Mutex::new(HashMap::new());
    wanted.into_par_iter().try_for_each(|(digest, (size, repos))| -> Result<()> {
        let holder = repos.iter().find(|r| have.contains(&(r.to_string(), digest.clone()))).map(|r| r.to_string());
        let mut source: Option<String> = holder;
        for repo in repos.iter().filter(|r| !have.contains(&(r.to_string(), digest.clone()))) {
            let outcome = match &source {
                Some(from) if client.mount_blob(repo, from, digest)? => Outcome::Mounted,
                _ => {
                    push_blob(bundle, client, repo, digest, size, observer)?;
                    Outcome::Uploaded
                }
            };
            source = Some(repo.to_string());
            outcomes.lock().expect("lock").insert((repo.to_string(), digest.clone()), outcome);
        }
        Ok(())
    })?;
    Ok(outcomes.into_inner().expect("lock"))
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
/// the root by tag, skipping what the registry already has. Returns how many were written.
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
        let reference = if i == last {
            plan.target.tag().map_or_else(|| m.digest.to_string(), str::to_owned)
        } else {
            m.digest.to_string()
        };
        if let Some((digest, _)) = client.manifest_digest(&plan.repo, &reference)?
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
