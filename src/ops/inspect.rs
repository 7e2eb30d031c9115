//! The `inspect` operation: a bundle's images from its index alone (nothing is verified), with
//! the size of each and how many of its blobs other images share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use crate::bundle::format::BundleIndex;
use crate::bundle::reader;
use crate::digest::Digest;
use crate::error::Result;

/// One image of the bundle, as `inspect` lists it.
pub struct Row {
    pub name: String,
    pub digest: Digest,
    pub platforms: Vec<String>,
    /// The bytes of every blob it uses.
    pub size: u64,
    /// How many of its blobs other images (with other digests) use too.
    pub shared: usize,
}

/// What `inspect` found: where, the (unverified) index, and one row per image.
pub struct Inspected {
    pub place: String,
    pub index: BundleIndex,
    pub rows: Vec<Row>,
}

/// Reads the bundle (a file, a split bundle's parts, a pipe, or stdin for `-`) as far as its
/// index; the part list's signature is not checked either.
pub fn inspect(paths: &[PathBuf]) -> Result<Inspected> {
    let (src, place) = super::open_bundle(paths)?;
    let index = reader::read_index(src, &place)?;
    let rows = rows(&index);
    Ok(Inspected { place, index, rows })
}

fn rows(index: &BundleIndex) -> Vec<Row> {
    let sizes: HashMap<&Digest, u64> = index.blobs.iter().map(|b| (&b.digest, b.size)).collect();
    let mut users: BTreeMap<&Digest, HashSet<&Digest>> = BTreeMap::new();
    for img in &index.images {
        for b in &img.blobs {
            users.entry(b).or_default().insert(&img.digest);
        }
    }
    index
        .images
        .iter()
        .map(|img| Row {
            name: img.name.clone(),
            digest: img.digest.clone(),
            platforms: img.platforms.clone(),
            size: img.blobs.iter().map(|b| sizes.get(b).copied().unwrap_or(0)).sum(),
            shared: img.blobs.iter().filter(|b| users[b].len() > 1).count(),
        })
        .collect()
}
