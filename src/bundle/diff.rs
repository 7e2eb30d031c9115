//! `airlock diff`: what changed between two bundles (or their index files), from their signed
//! indexes alone: images added, removed, retagged and changed, the blobs the newer one lists that
//! the older does not, and the bytes a delta of the newer against the older would carry.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::bundle::delta::must_carry;
use crate::bundle::format::{BlobEntry, BundleIndex};
use crate::digest::Digest;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// New names whose manifest the older bundle did not have.
    pub added: Vec<Named>,
    pub removed: Vec<Named>,
    /// New names for a manifest the older bundle had under other names.
    pub retagged: Vec<Retagged>,
    pub changed: Vec<Changed>,
    /// Blobs the newer bundle lists and the older does not.
    pub new_blobs: Vec<BlobEntry>,
    pub new_blob_bytes: u64,
    /// What `create --base OLD` would put in its archive: new blobs and every manifest.
    pub bytes_to_carry: u64,
}

#[derive(Debug, Serialize)]
pub struct Named {
    pub name: String,
    pub digest: Digest,
}

#[derive(Debug, Serialize)]
pub struct Retagged {
    pub name: String,
    pub digest: Digest,
    /// The names it had in the older bundle.
    pub was: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Changed {
    pub name: String,
    pub from: Digest,
    pub to: Digest,
}

pub fn diff(old: &BundleIndex, new: &BundleIndex) -> Diff {
    let old_names: BTreeMap<&str, &Digest> = old.images.iter().map(|i| (i.name.as_str(), &i.digest)).collect();
    let new_names: BTreeMap<&str, &Digest> = new.images.iter().map(|i| (i.name.as_str(), &i.digest)).collect();
    let mut d = Diff {
        added: Vec::new(),
        removed: Vec::new(),
        retagged: Vec::new(),
        changed: Vec::new(),
        new_blobs: Vec::new(),
        new_blob_bytes: 0,
        bytes_to_carry: 0,
    };
    for (&name, &digest) in &new_names {
        match old_names.get(name) {
            Some(&was) if was != digest => {
                d.changed.push(Changed { name: name.into(), from: was.clone(), to: digest.clone() });
            }
            Some(_) => {}
            None => {
                let was: Vec<String> =
                    old_names.iter().filter(|(_, dg)| **dg == digest).map(|(n, _)| (*n).to_owned()).collect();
                if was.is_empty() {
                    d.added.push(Named { name: name.into(), digest: digest.clone() });
                } else {
                    d.retagged.push(Retagged { name: name.into(), digest: digest.clone(), was });
                }
            }
        }
    }
    for (&name, &digest) in old_names.iter().filter(|(n, _)| !new_names.contains_key(*n)) {
        d.removed.push(Named { name: name.into(), digest: digest.clone() });
    }
    let listed: HashSet<(&Digest, u64)> = old.blobs.iter().map(|b| (&b.digest, b.size)).collect();
    for b in &new.blobs {
        let in_old = listed.contains(&(&b.digest, b.size));
        if !in_old {
            d.new_blob_bytes += b.size;
            d.new_blobs.push(BlobEntry { carried_by: None, ..b.clone() });
        }
        if must_carry(&b.media_type, in_old) {
            d.bytes_to_carry += b.size;
        }
    }
    d
}
