//! `push`: replays a verified bundle into an OCI distribution registry.
//!
//! Order is what keeps a registry consistent: blobs first, then manifests, children before the
//! indexes that name them, tags last, so no tag ever points at something missing or unverified.
//! At WAN latency the time goes into round trips, so every image runs its own pipeline on the
//! shared transfer pool (`HEAD` of its tag, its blobs, its child manifests), each step as soon as
//! the one before is done for that image; a blob several images need is uploaded once
//! (`claims`) and mounted into the others. Tags wait until every image is complete below its
//! tag, so a failure anywhere tags nothing. Every blob the registry lacks is read from the bundle
//! through a verifying reader while it is uploaded; a mismatch aborts that upload and the whole
//! push. What the registry already holds is not read at all, which makes a repeat push, or the
//! rerun of an interrupted one, cheap: it uploads only what is missing and ends in the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;

use crate::bundle::format::{BlobEntry, BundleIndex, ImageEntry};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image;
use crate::progress::{Observer, Phase, Ticking};
use crate::reference::Reference;
use crate::registry::{Client, Landed};
use crate::sink::Blobs;
use crate::sink::attachments::{self, Destination};
use crate::sink::claims::{Claim, Claims, Holder, Repairs, Stop};
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
        if prefix.contains([':', '@']) {
            return Err(bad("give HOST[:PORT][/PREFIX], without a tag or digest: each image keeps its own tag"));
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
    /// Attachment manifests (signatures, SBOMs, referrers) written; absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub attachments_pushed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

/// Blobs up to this size are offered as a mount from their own repository rather than asked
/// about with a `HEAD` (see [`Run::place`]): sending one again costs about what the `HEAD` does.
const ASK_BY_MOUNT_MAX: u64 = 1 << 20;

/// (repository, blob) pairs.
type Held = BTreeSet<(String, Digest)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The repository had it whole already.
    Held,
    Uploaded,
    /// Uploaded into this repository by this push, for another image: uploaded for this one
    /// too, but sent once.
    Shared,
    Mounted,
}

/// One image, complete below its tag.
struct Ready {
    /// The target already names the bundle's root: a registry takes a manifest only once all it
    /// names is there, so there is nothing to push for this image.
    current: bool,
    /// Per blob of the plan, in its order.
    outcomes: Vec<Outcome>,
    /// Child manifests written (by digest).
    children: usize,
}

/// What every image's pipeline shares.
struct Run<'a> {
    bundle: &'a dyn Blobs,
    client: &'a Client,
    pool: &'a Pool,
    observer: &'a Arc<dyn Observer>,
    claims: Claims,
    /// Who puts a blob some other repository holds into this one (`place_from`).
    placed: Claims<(String, Digest)>,
    repairs: Repairs,
}

/// Pushes every image at once on one pool as large as the client's connections. Each image runs
/// its own pipeline: one `HEAD` of its tag (nothing more when it is current), then its blobs
/// (each uploaded once across all images, the others mount it), then its child manifests. Tags
/// go last, once every image is complete below its tag, so a failure anywhere tags nothing.
pub fn push(bundle: &dyn Blobs, client: &Client, opts: &PushOptions, progress: Progress<'_>) -> Result<PushReport> {
    let pool = Pool::new(client.connections())?;
    let plans = plan(bundle.index(), opts)?;
    if opts.dry_run {
        return dry_run(client, &pool, &plans, opts);
    }
    let claims = Claims::holding(&opts.held);
    let (placed, repairs) = (Claims::default(), Repairs::default());
    let run = Run { bundle, client, pool: &pool, observer: &opts.observer, claims, placed, repairs };
    let ready = settle(pool.try_map(&plans, |p| Ok(run.guarded(|| run.stage(p))))?)?;
    let items: Vec<(&Plan<'_>, &Ready)> = plans.iter().zip(&ready).collect();
    let tagged = settle(pool.try_map(&items, |(p, r)| Ok(run.guarded(|| run.tag(p, r))))?)?;
    // What is attached to the images goes after them, so a signature never names a missing image.
    let to =
        Destination { client, pool: &pool, target: &opts.target, keep_host: opts.keep_host, observer: &opts.observer };
    let attached = attachments::push(bundle, &to)?;
    let mut images = Vec::new();
    for (((plan, ready), tagged), attached) in plans.iter().zip(&ready).zip(tagged).zip(attached) {
        let result = ImageResult { attachments_pushed: attached, ..image_result(plan, ready, tagged) };
        let what = if result.manifests_pushed == 0 { "up to date" } else { "pushed" };
        progress(&format!("{what}: {}@{}", plan.target, plan.entry.digest), 0);
        images.push(result);
    }
    // Each upload is one image's `Uploaded` (others sharing it say `Shared`): each counted once.
    let bytes_uploaded = plans
        .iter()
        .zip(&ready)
        .flat_map(|(p, r)| p.blobs.iter().zip(&r.outcomes))
        .filter(|(_, o)| **o == Outcome::Uploaded)
        .map(|(b, _)| b.size)
        .sum();
    Ok(PushReport { registry: opts.target.registry.clone(), dry_run: false, images, bytes_uploaded })
}

fn image_result(plan: &Plan<'_>, ready: &Ready, tagged: usize) -> ImageResult {
    let count = |o: &[Outcome]| ready.outcomes.iter().filter(|x| o.contains(x)).count();
    let sent = [Outcome::Uploaded, Outcome::Shared];
    let bytes_uploaded =
        plan.blobs.iter().zip(&ready.outcomes).filter(|(_, o)| sent.contains(o)).map(|(b, _)| b.size).sum();
    ImageResult {
        source: plan.entry.name.clone(),
        reference: plan.target.to_string(),
        digest: plan.entry.digest.clone(),
        blobs_uploaded: count(&sent),
        blobs_skipped: count(&[Outcome::Held]),
        blobs_mounted: count(&[Outcome::Mounted]),
        bytes_uploaded,
        manifests_pushed: ready.children + tagged,
        attachments_pushed: 0,
    }
}

/// The results in order, or the error of the task that failed first on its own (not one that
/// stopped because of it).
fn settle<T>(all: Vec<Result<T, Stop>>) -> Result<Vec<T>> {
    first_own(all).map_err(|stop| match stop {
        Stop::Own(e) => e,
        Stop::Elsewhere => Error::registry("push", "stopped after a failure that was not reported"),
    })
}

/// [`settle`] inside a pipeline: an own error wins over any `Elsewhere`.
fn first_own<T>(all: Vec<Result<T, Stop>>) -> Result<Vec<T>, Stop> {
    let mut out = Vec::with_capacity(all.len());
    let mut stop = None;
    for r in all {
        match r {
            Ok(v) => out.push(v),
            Err(Stop::Own(e)) => return Err(Stop::Own(e)),
            Err(Stop::Elsewhere) => stop = Some(Stop::Elsewhere),
        }
    }
    stop.map_or(Ok(out), Err)
}

impl Run<'_> {
    /// Runs one task unless the push has failed already; its own failure stops the others.
    fn guarded<T>(&self, task: impl FnOnce() -> Result<T, Stop>) -> Result<T, Stop> {
        self.claims.check()?;
        let r = task();
        if let Err(Stop::Own(_)) = r {
            self.claims.fail();
        }
        r
    }

    /// Everything of one image below its tag.
    fn stage(&self, plan: &Plan<'_>) -> Result<Ready, Stop> {
        if is_current(self.client, plan)? {
            return Ok(Ready { current: true, outcomes: vec![Outcome::Held; plan.blobs.len()], children: 0 });
        }
        let outcomes = first_own(self.pool.try_map(&plan.blobs, |b| Ok(self.guarded(|| self.place(plan, b))))?)?;
        let children = self.push_children(plan)?;
        Ok(Ready { current: false, outcomes, children })
    }

    /// Makes one blob whole in the image's repository: the first image to need it finds it or
    /// uploads it; the others wait for that and mount it from there.
    fn place(&self, plan: &Plan<'_>, b: &BlobEntry) -> Result<Outcome, Stop> {
        let repo = &plan.repo;
        let send = |from: Option<&str>| push_blob(self.bundle, self.client, repo, b, from, self.observer);
        match self.claims.enter(&b.digest)? {
            Claim::Mine(token) => {
                // A small blob is offered as a mount from its own repository: the registry
                // answers "here already" or opens the upload in one round trip. A large one is
                // asked about first, so a registry that declines such mounts never gets it twice.
                let outcome = if b.size <= ASK_BY_MOUNT_MAX {
                    match send(Some(repo))? {
                        Landed::Mounted => Outcome::Held,
                        Landed::Uploaded => Outcome::Uploaded,
                    }
                } else if self.client.has_blob(repo, &b.digest, b.size)? {
                    Outcome::Held
                } else {
                    send(None)?;
                    Outcome::Uploaded
                };
                token.settle(Holder { repo: repo.clone(), fresh: outcome == Outcome::Uploaded, mounted: false });
                Ok(outcome)
            }
            Claim::Held(h) if h.repo == *repo => Ok(if h.fresh { Outcome::Shared } else { Outcome::Held }),
            Claim::Held(h) => self.place_from(plan, b, &h),
        }
    }

    /// Makes a blob another repository holds whole in this image's too. The first image of this
    /// repository to need it mounts it (or finds it here); the others here wait for that: two
    /// writing one blob into one repository at once would repeat the work, and a registry that
    /// rewrites the blob's link in place (distribution 2.8) shows it missing meanwhile to a
    /// manifest `PUT` there.
    fn place_from(&self, plan: &Plan<'_>, b: &BlobEntry, holder: &Holder) -> Result<Outcome, Stop> {
        let repo = &plan.repo;
        let token = match self.placed.enter(&(repo.clone(), b.digest.clone()))? {
            Claim::Mine(token) => token,
            Claim::Held(here) if here.mounted => return Ok(Outcome::Mounted),
            Claim::Held(here) => return Ok(if here.fresh { Outcome::Shared } else { Outcome::Held }),
        };
        // Found in the registry before this push: a rerun, where this repository may well hold
        // it too. One this push uploaded is in no other repository yet.
        let outcome = if !holder.fresh && self.client.has_blob(repo, &b.digest, b.size)? {
            Outcome::Held
        } else {
            match push_blob(self.bundle, self.client, repo, b, Some(&holder.repo), self.observer)? {
                Landed::Mounted => Outcome::Mounted,
                Landed::Uploaded => Outcome::Uploaded,
            }
        };
        let (fresh, mounted) = (outcome == Outcome::Uploaded, outcome == Outcome::Mounted);
        token.settle(Holder { repo: repo.clone(), fresh, mounted });
        Ok(outcome)
    }

    /// Reads (and so verifies) all of an image's manifests, then pushes the children by digest,
    /// skipping those the registry has. Returns how many were written.
    fn push_children(&self, plan: &Plan<'_>) -> Result<usize> {
        let docs = plan.manifests.iter().map(|m| self.bundle.read_small(&m.digest)).collect::<Result<Vec<_>>>()?;
        let mut pushed = 0;
        for (m, bytes) in plan.manifests.iter().zip(&docs).take(docs.len() - 1) {
            let reference = m.digest.to_string();
            if let Some((digest, _)) = self.client.manifest_digest(&plan.repo, &reference)?
                && digest == m.digest
            {
                continue;
            }
            self.put_manifest(plan, m, &reference, bytes)?;
            pushed += 1;
        }
        Ok(pushed)
    }

    /// Pushes the image's root by its tag (by digest when it has none). Returns how many
    /// manifests were written.
    fn tag(&self, plan: &Plan<'_>, ready: &Ready) -> Result<usize, Stop> {
        if ready.current {
            return Ok(0);
        }
        let root = plan.manifests[plan.manifests.len() - 1];
        let bytes = self.bundle.read_small(&root.digest)?;
        // The root's reference was asked about already (`is_current`): it needs writing.
        self.put_manifest(plan, root, &root_reference(plan), &bytes)?;
        Ok(1)
    }

    fn put_manifest(&self, plan: &Plan<'_>, m: &BlobEntry, reference: &str, bytes: &[u8]) -> Result<()> {
        let mut repair = || self.repairs.in_turn(&plan.repo, || upload_missing(self.bundle, self.client, plan));
        let got = self.client.put_manifest(&plan.repo, reference, &m.media_type, bytes, &mut repair)?;
        if got != m.digest {
            return Err(Error::integrity(
                format!("{}:{reference}", plan.target.name()),
                format!("registry stored manifest as {got}, the bundle has {}", m.digest),
            ));
        }
        Ok(())
    }
}

/// What the registry holds already and what a push would upload, asking only `HEAD`s.
fn dry_run(client: &Client, pool: &Pool, plans: &[Plan<'_>], opts: &PushOptions) -> Result<PushReport> {
    let current = pool.try_map(plans, |p| is_current(client, p))?;
    let todo: Vec<&Plan<'_>> = plans.iter().zip(&current).filter(|(_, c)| !**c).map(|(p, _)| p).collect();
    let mut have = present(client, pool, &todo)?;
    have.extend(opts.held.iter().cloned());
    let images = plans.iter().zip(&current).map(|(p, c)| initial_result(p, *c, &have)).collect();
    // Each missing blob is uploaded once however many repositories need it.
    let missing: BTreeMap<&Digest, u64> = missing(&todo, &have).into_iter().map(|(_, b)| (&b.digest, b.size)).collect();
    let bytes_uploaded = missing.values().sum();
    Ok(PushReport { registry: opts.target.registry.clone(), dry_run: true, images, bytes_uploaded })
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
    distinct_targets(&plans, opts.keep_host)?;
    Ok(plans)
}

/// Two images that would land under one name are refused before anything is pushed.
fn distinct_targets(plans: &[Plan<'_>], keep_host: bool) -> Result<()> {
    let apart = (!keep_host).then_some("--keep-registry-host keeps the original hosts apart");
    crate::bundle::format::one_image_per_name(plans.iter().map(|p| (p.target.to_string(), p.entry)), "land as", apart)
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

/// What a dry run reports for one image: "uploaded" counts what is missing.
fn initial_result(p: &Plan<'_>, current: bool, have: &Held) -> ImageResult {
    let (held, missing): (Vec<&&BlobEntry>, Vec<&&BlobEntry>) =
        p.blobs.iter().partition(|b| current || have.contains(&(p.repo.clone(), b.digest.clone())));
    ImageResult {
        source: p.entry.name.clone(),
        reference: p.target.to_string(),
        digest: p.entry.digest.clone(),
        blobs_uploaded: missing.len(),
        blobs_skipped: held.len(),
        blobs_mounted: 0,
        bytes_uploaded: missing.iter().map(|b| b.size).sum(),
        manifests_pushed: 0,
        attachments_pushed: 0,
    }
}

/// Uploads one blob from the bundle, or with `mount_from` first offers the registry to mount it
/// from there. An integrity failure here is the bundle's: it names the bundle's entry, not the
/// target.
pub(crate) fn push_blob(
    bundle: &dyn Blobs,
    client: &Client,
    repo: &str,
    b: &BlobEntry,
    mount_from: Option<&str>,
    observer: &Arc<dyn Observer>,
) -> Result<Landed> {
    let digest = &b.digest;
    let task = observer.begin(Phase::Upload, &format!("{} to {repo}", digest.short()), b.size);
    let mut open = || -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(Ticking::new(bundle.open(digest)?, Arc::clone(observer), task)))
    };
    let pushed = match mount_from {
        Some(from) => client.mount_or_push_blob(repo, from, digest, b.size, &mut open),
        None => client.push_blob(repo, digest, b.size, &mut open).map(|()| Landed::Uploaded),
    };
    observer.end(task);
    pushed.map_err(|e| match e {
        Error::Integrity { msg, .. } => Error::integrity(bundle.entry(digest), msg),
        other => other,
    })
}

/// After a manifest `PUT` answered `MANIFEST_BLOB_UNKNOWN`: asks again for each of the image's
/// blobs and uploads those the registry does not hold whole (it may have lied, or collected them).
/// Called in its repository's turn ([`Repairs`]), so it never uploads what another repair there
/// is uploading.
fn upload_missing(bundle: &dyn Blobs, client: &Client, plan: &Plan<'_>) -> Result<()> {
    for b in &plan.blobs {
        if !client.has_blob(&plan.repo, &b.digest, b.size)? {
            // A rare repair: shown as part of the manifests' step, not as an upload of its own.
            push_blob(bundle, client, &plan.repo, b, None, &crate::progress::silent())?;
        }
    }
    Ok(())
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
