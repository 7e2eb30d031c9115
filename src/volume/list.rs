//! The part list, `OUT.parts`: the bundle id, the volume size, and every data and parity part's
//! size and sha256, in order; signed like the bundle index (`OUT.parts.minisig`, minisign) and
//! written last, so a complete, signed list means every part it names was written. Parsing checks
//! that the sizes add up to a bundle split at the volume size, so nothing later trusts a count
//! or a size it has not checked.

use serde::{Deserialize, Serialize};

use crate::bundle::reader::Trust;
use crate::bundle::sign::SecretKey;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::volume::{MAX_PARITY, MAX_PARTS, Names};

pub const MEDIA_TYPE: &str = "application/vnd.airlock.parts.v1+json";
/// The parity code: Reed–Solomon over GF(2^8) with the systematic Vandermonde matrix of
/// Backblaze's JavaReedSolomon (also klauspost/reedsolomon's default), one shard per part.
pub const PARITY_SCHEME: &str = "reed-solomon-gf256-vandermonde";
/// A part list or its signature larger than this is refused unread.
const MAX_LIST_BYTES: u64 = 1 << 20;
const MAX_SIGNATURE_BYTES: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartList {
    pub media_type: String,
    /// The `bundleId` of the signed index inside the parts.
    pub bundle_id: String,
    /// The bundle's length: the sum of the data parts' sizes.
    pub bundle_bytes: u64,
    /// Every data part but the last holds exactly this many bytes.
    pub volume_size: u64,
    /// `OUT.001`, `OUT.002`, … in order.
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<Parity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Part {
    pub size: u64,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parity {
    /// [`PARITY_SCHEME`].
    pub scheme: String,
    /// `OUT.p01`, `OUT.p02`, … in order; each as long as the first data part.
    pub parts: Vec<Part>,
}

/// One part of a list: which file it is and what it must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Data(usize),
    Parity(usize),
}

impl PartList {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a part list serialises");
        v.push(b'\n');
        v
    }

    /// Parses and checks a list's shape: sizes that add up, a known parity scheme, bounded counts.
    pub fn parse(place: &str, bytes: &[u8]) -> Result<Self> {
        let list: PartList = crate::json::parse_as(bytes).map_err(|e| Error::integrity(place, e))?;
        list.check().map_err(|e| Error::integrity(place, e))?;
        Ok(list)
    }

    fn check(&self) -> Result<(), String> {
        if self.media_type != MEDIA_TYPE {
            return Err(format!("media type `{}` is not {MEDIA_TYPE}", self.media_type.escape_debug()));
        }
        let n = self.parts.len();
        if n == 0 || n > MAX_PARTS {
            return Err(format!("{n} data parts (1 to {MAX_PARTS} are possible)"));
        }
        let (last, full) = self.parts.split_last().expect("not empty");
        if let Some(p) = full.iter().position(|p| p.size != self.volume_size) {
            return Err(format!("part {} is not {} bytes, the volume size", p + 1, self.volume_size));
        }
        if last.size == 0 || last.size > self.volume_size {
            return Err(format!("the last part's size {} is not 1 to {} bytes", last.size, self.volume_size));
        }
        let total = self.parts.iter().try_fold(0u64, |t, p| t.checked_add(p.size));
        if total != Some(self.bundle_bytes) {
            return Err(format!("the parts' sizes do not add up to bundleBytes {}", self.bundle_bytes));
        }
        if let Some(parity) = &self.parity {
            if parity.scheme != PARITY_SCHEME {
                return Err(format!("parity scheme `{}` is not {PARITY_SCHEME}", parity.scheme.escape_debug()));
            }
            let m = parity.parts.len();
            if m == 0 || m > MAX_PARITY || n + m > crate::volume::parity::MAX_SHARDS {
                let most = crate::volume::parity::MAX_SHARDS;
                return Err(format!("{m} parity parts for {n} data parts (1 to {MAX_PARITY}, {most} parts in all)"));
            }
            if parity.parts.iter().any(|p| p.size != self.parts[0].size) {
                return Err("a parity part is not as long as the first data part".into());
            }
        }
        Ok(())
    }

    pub fn parity_parts(&self) -> &[Part] {
        self.parity.as_ref().map_or(&[], |p| &p.parts)
    }

    /// Every part, data first then parity, with its place in the list.
    pub fn all(&self) -> impl Iterator<Item = (Which, &Part)> {
        let data = self.parts.iter().enumerate().map(|(i, p)| (Which::Data(i), p));
        data.chain(self.parity_parts().iter().enumerate().map(|(j, p)| (Which::Parity(j), p)))
    }

    /// Which part `path` is, by its name.
    pub fn which(&self, names: &Names, path: &std::path::Path) -> Option<(Which, &Part)> {
        let name = path.file_name()?;
        self.all().find(|(w, _)| names.path(*w).file_name() == Some(name))
    }

    /// A signature over the list, saying which bundle it splits.
    pub fn sign(&self, key: &SecretKey, created: u64) -> (Vec<u8>, String) {
        let bytes = self.to_bytes();
        let comment = format!("timestamp:{created}\tfile:parts\tbundle:{}", self.bundle_id);
        let sig = key.sign(&bytes, &comment);
        (bytes, sig)
    }
}

impl Names {
    pub fn path(&self, which: Which) -> std::path::PathBuf {
        match which {
            Which::Data(i) => self.part(i),
            Which::Parity(j) => self.parity(j),
        }
    }
}

/// The part list and the signed index inside the parts speak of the same bundle.
pub fn check_bundle_id(list: &PartList, index: &crate::bundle::format::BundleIndex, place: &str) -> Result<()> {
    if list.bundle_id != index.bundle_id {
        let msg = format!("the part list is for bundle {}, the parts hold bundle {}", list.bundle_id, index.bundle_id);
        return Err(Error::integrity(place, msg));
    }
    Ok(())
}

/// Reads `OUT.parts`, checks its signature (unless trust is off) and its shape.
pub fn load(names: &Names, trust: &Trust<'_>) -> Result<PartList> {
    let path = names.list();
    let place = path.display().to_string();
    let bytes = read_small(&path, MAX_LIST_BYTES)?;
    if let Trust::Key(pk) = trust {
        let sig_path = names.signature();
        let sig = read_small(&sig_path, MAX_SIGNATURE_BYTES)?;
        let sig = String::from_utf8(sig).map_err(|_| Error::trust(format!("{}: is not text", sig_path.display())))?;
        pk.verify(&bytes, &sig).map_err(|e| match e {
            Error::Trust { msg } => Error::trust(format!("{place}: {msg}")),
            other => other,
        })?;
    }
    PartList::parse(&place, &bytes)
}

fn read_small(path: &std::path::Path, max: u64) -> Result<Vec<u8>> {
    let place = path.display().to_string();
    let (f, _) = crate::local_file::open_regular(path, &place)?;
    crate::json::read_limited(f, max).at(|| place.clone())?.map_err(|e| Error::integrity(&place, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(sizes: &[u64], volume: u64) -> PartList {
        let part = |size| Part { size, digest: Digest::of_bytes(b"x") };
        PartList {
            media_type: MEDIA_TYPE.into(),
            bundle_id: "id".into(),
            bundle_bytes: sizes.iter().sum(),
            volume_size: volume,
            parts: sizes.iter().map(|&s| part(s)).collect(),
            parity: None,
        }
    }

    #[test]
    fn a_list_round_trips_and_sizes_must_add_up() {
        let good = list(&[10, 10, 3], 10);
        assert_eq!(PartList::parse("l", &good.to_bytes()).unwrap(), good);
        for bad in [list(&[10, 9, 3], 10), list(&[10, 10, 11], 10), list(&[10, 0], 10), list(&[], 10)] {
            assert!(PartList::parse("l", &bad.to_bytes()).is_err(), "{bad:?}");
        }
        let mut lying = good.clone();
        lying.bundle_bytes += 1;
        let e = PartList::parse("l", &lying.to_bytes()).unwrap_err();
        assert!(e.to_string().contains("do not add up"), "{e}");
    }
}
