//! A delta's absent blobs at push time: before any push work, every blob the delta leaves to its
//! bases must be in a `--base` bundle given, or already in the target registry, in a repository of
//! an image that uses it (asked with `HEAD`, all at once on the transfer pool). Otherwise nothing
//! is pushed, and the error names each missing blob and the base bundle that carries it.

use std::collections::{BTreeSet, HashMap};

use crate::bundle::bases::{self, Given};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::registry::Client;
use crate::sink::push::{self, Progress, PushOptions, PushReport, Target};
use crate::sink::{Blobs, WithBases};
use crate::transfer::Pool;

/// (repository, blob) pairs the registry was found to hold.
pub type Held = BTreeSet<(String, Digest)>;

/// Checks that every absent blob of `bundle` is in `given` or in the registry under `target`;
/// returns where the registry holds those it was asked about, for the push to mount from.
pub fn check(
    bundle: &dyn Blobs,
    given: &Given,
    client: &Client,
    pool: &Pool,
    target: &Target,
    keep_host: bool,
) -> Result<Held> {
    let index = bundle.index();
    // The absent blobs no given base holds: the registry must have them.
    let wanted: HashMap<&Digest, u64> =
        index.absent_blobs().filter(|b| given.holder(&b.digest).is_none()).map(|b| (&b.digest, b.size)).collect();
    let mut pairs = BTreeSet::new();
    for img in index.images.iter().filter(|i| i.blobs.iter().any(|d| wanted.contains_key(d))) {
        let name = Reference::parse(&img.name).map_err(|e| Error::integrity("signed index", e.to_string()))?;
        let repo = target.map(&name, keep_host)?.repository().to_owned();
        for d in &img.blobs {
            if let Some(&size) = wanted.get(d) {
                pairs.insert((repo.clone(), d.clone(), size));
            }
        }
    }
    let pairs: Vec<(String, Digest, u64)> = pairs.into_iter().collect();
    let found = pool.try_map(&pairs, |(repo, d, size)| client.has_blob(repo, d, *size))?;
    let held: Held = pairs.into_iter().zip(found).filter(|(_, f)| *f).map(|((repo, d, _), _)| (repo, d)).collect();
    let in_registry: BTreeSet<&Digest> = held.iter().map(|(_, d)| d).collect();
    let missing = bases::missing(index, &|b| given.holder(&b.digest).is_some() || in_registry.contains(&b.digest));
    if !missing.is_empty() {
        let looked = format!("in {} nor in a --base bundle given", target.registry);
        return Err(bases::missing_error(&bundle.place(), index, &missing, &looked));
    }
    Ok(held)
}

/// Pushes a bundle, a delta's absent blobs taken from `given` or the registry: [`check`] first,
/// then the push itself.
pub fn push(
    bundle: &dyn Blobs,
    given: &Given,
    client: &Client,
    opts: PushOptions,
    progress: Progress<'_>,
) -> Result<PushReport> {
    let pool = Pool::new(client.connections())?;
    let held = check(bundle, given, client, &pool, &opts.target, opts.keep_host)?;
    let with_bases = WithBases::new(bundle, given);
    push::push(&with_bases, client, &PushOptions { held, ..opts }, progress)
}
