//! What attachment discovery learns once and every image of a run shares, so that it costs about
//! one round trip per repository instead of several per image: the tags each repository holds
//! (one paged `tags/list`, then only the cosign and fallback tags that exist are fetched) and
//! whether each registry has the referrers API (asked once; a registry without it is not asked
//! again for every digest, one with it is asked for each).
//!
//! Listing tags is an economy, never a source of truth lost: a registry that refuses the listing
//! (401, 403, 404, any failure) or holds more tags than [`MAX_TAGS`] is probed tag by tag, as if
//! nothing were known.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::digest::Digest;
use crate::error::Result;
use crate::registry::Client;

/// Tags asked for per `tags/list` page.
pub const PAGE: usize = 1000;
/// A repository listing more tags than this is probed tag by tag instead.
pub const MAX_TAGS: usize = 10_000;
/// Pages read at most (a registry that ignores `n` and pages slowly is probed instead).
const MAX_PAGES: usize = MAX_TAGS / PAGE + 1;

/// The tags of one repository, as far as they are known.
#[derive(Clone)]
pub enum Tags {
    /// Every tag the repository holds.
    Listed(Arc<HashSet<String>>),
    /// The registry would not list them: any tag may exist.
    Unknown,
}

impl Tags {
    /// Whether the repository may hold `tag`, and so whether fetching it is worth a round trip.
    pub fn may_hold(&self, tag: &str) -> bool {
        match self {
            Tags::Listed(tags) => tags.contains(tag),
            Tags::Unknown => true,
        }
    }
}

/// A value learnt once per key; whoever asks first learns it while the others wait for it.
type Learnt<T> = Mutex<HashMap<String, Arc<Mutex<Option<T>>>>>;

/// What discovery has learnt of the registries of a run.
#[derive(Default)]
pub struct Lookups {
    /// By `registry/repository`.
    tags: Learnt<Tags>,
    /// By registry: whether it answers the referrers API.
    referrers_api: Learnt<bool>,
}

impl Lookups {
    /// The tags of `repo`, listed on the first call for it.
    pub fn tags(&self, client: &Client, repo: &str) -> Tags {
        let slot = slot(&self.tags, format!("{}/{repo}", client.registry()));
        let mut known = slot.lock().unwrap_or_else(PoisonError::into_inner);
        known.get_or_insert_with(|| list(client, repo)).clone()
    }

    /// The referrers API's list for `subject`, or `None` when the registry has no such API, which
    /// is asked of each registry once.
    pub fn referrers(&self, client: &Client, repo: &str, subject: &Digest) -> Result<Option<Vec<u8>>> {
        let slot = slot(&self.referrers_api, client.registry().to_owned());
        let mut known = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let answered = *known;
        match answered {
            Some(false) => Ok(None),
            Some(true) => {
                drop(known);
                client.referrers(repo, subject)
            }
            None => {
                let list = client.referrers(repo, subject)?;
                *known = Some(list.is_some());
                Ok(list)
            }
        }
    }
}

fn slot<T>(learnt: &Learnt<T>, key: String) -> Arc<Mutex<Option<T>>> {
    learnt.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default().clone()
}

/// Lists `repo`'s tags page by page; [`Tags::Unknown`] when the registry refuses, fails, lists
/// too many or pages without moving on.
fn list(client: &Client, repo: &str) -> Tags {
    let mut all = HashSet::new();
    let mut last: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let Ok(page) = client.tags(repo, PAGE, last.as_deref()) else { return Tags::Unknown };
        let next = page.tags.last().cloned();
        all.extend(page.tags);
        if all.len() > MAX_TAGS {
            return Tags::Unknown;
        }
        if !page.more {
            return Tags::Listed(Arc::new(all));
        }
        if next.is_none() || next <= last {
            return Tags::Unknown;
        }
        last = next;
    }
    Tags::Unknown
}
