//! Finding damaged parts of a split bundle and rebuilding them from parity. A part is damaged
//! when it is missing, has another size than the signed part list says, or another sha256;
//! [`damage_error`] names them all and says whether `airlock repair` can rebuild them (no more
//! than there are parity parts). [`repair`] rebuilds them next to the others, checks each
//! against the signed list, and only then renames it into place.

use std::path::PathBuf;

use rayon::prelude::*;

use crate::atomic::AtomicFile;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::volume::Names;
use crate::volume::list::{PartList, Which};
use crate::volume::parity::{self, Shard};

/// A part that is not what the signed list says.
#[derive(Debug, Clone)]
pub struct Damage {
    pub which: Which,
    pub path: PathBuf,
    pub why: String,
}

/// Parts missing or of the wrong size (no content read).
pub fn check_sizes(names: &Names, list: &PartList) -> Vec<Damage> {
    let mut damage = Vec::new();
    for (which, part) in list.all() {
        let path = names.path(which);
        let why = match path.metadata() {
            Err(_) => "is missing".to_owned(),
            Ok(m) if !m.is_file() => "is not a regular file".to_owned(),
            Ok(m) if m.len() != part.size => format!("is {} bytes, the signed part list says {}", m.len(), part.size),
            Ok(_) => continue,
        };
        damage.push(Damage { which, path, why });
    }
    damage
}

/// Every damaged part: sizes first, then the sha256 of every part of the right size, all parts
/// at once.
pub fn check_all(names: &Names, list: &PartList) -> Vec<Damage> {
    let sized = check_sizes(names, list);
    let rest: Vec<_> = list.all().filter(|(w, _)| !sized.iter().any(|d| d.which == *w)).collect();
    let mut hashed: Vec<Damage> = rest
        .par_iter()
        .filter_map(|(which, part)| {
            let path = names.path(*which);
            let why = match hash_file(&path) {
                Ok(d) if d == part.digest => return None,
                Ok(d) => format!("has sha256 {}, the signed part list says {}", d.hex(), part.digest.hex()),
                Err(e) => format!("cannot be read: {e}"),
            };
            Some(Damage { which: *which, path, why })
        })
        .collect();
    let mut all = sized;
    all.append(&mut hashed);
    all.sort_by_key(|d| order(d.which));
    all
}

fn order(w: Which) -> (u8, usize) {
    match w {
        Which::Data(i) => (0, i),
        Which::Parity(j) => (1, j),
    }
}

fn hash_file(path: &std::path::Path) -> std::io::Result<Digest> {
    let f = fs_err::File::open(path)?;
    let mut r = crate::digest::HashingReader::new(std::io::BufReader::with_capacity(1 << 20, f));
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(r.finish().0)
}

/// One error naming every damaged part and what can be done.
pub fn damage_error(names: &Names, list: &PartList, damage: &[Damage]) -> Error {
    let parity = list.parity_parts().len();
    let parts: Vec<String> = damage.iter().map(|d| format!("{} {}", d.path.display(), d.why)).collect();
    let advice = if damage.len() <= parity {
        let from = if parity == 1 { "its parity part".to_owned() } else { format!("its {parity} parity parts") };
        format!(
            "`airlock repair -p KEY.pub {}` can rebuild {} from {from}",
            names.part(0).display(),
            them(damage.len())
        )
    } else if parity == 0 {
        "the bundle has no parity parts to rebuild them from: copy them again from the original".to_owned()
    } else {
        format!(
            "too many are lost: {} damaged, only {parity} can be rebuilt from parity; copy some again from the original",
            damage.len()
        )
    };
    Error::integrity(names.list().display().to_string(), format!("{}; {advice}", parts.join("; ")))
}

fn them(n: usize) -> &'static str {
    if n == 1 { "it" } else { "them" }
}

/// What [`repair`] did.
#[derive(Debug)]
pub struct Repaired {
    pub rebuilt: Vec<PathBuf>,
    /// Damaged parts found, before rebuilding.
    pub damage: Vec<Damage>,
}

/// Finds the damaged parts of a split bundle and rebuilds them from the others; each rebuilt
/// part must match the signed part list before it is renamed into place.
pub fn repair(names: &Names, list: &PartList) -> Result<Repaired> {
    let damage = check_all(names, list);
    if damage.is_empty() {
        return Ok(Repaired { rebuilt: Vec::new(), damage });
    }
    if damage.len() > list.parity_parts().len() {
        return Err(damage_error(names, list, &damage));
    }
    let data = list.parts.len();
    let index = |w: Which| match w {
        Which::Data(i) => i,
        Which::Parity(j) => data + j,
    };
    let opened: Vec<Option<(fs_err::File, u64, String)>> = list
        .all()
        .map(|(w, part)| {
            if damage.iter().any(|d| d.which == w) {
                return Ok(None);
            }
            let path = names.path(w);
            let f = fs_err::File::open(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
            Ok(Some((f, part.size, path.display().to_string())))
        })
        .collect::<Result<_>>()?;
    let shards: Vec<Option<Shard<'_>>> = opened
        .iter()
        .map(|o| o.as_ref().map(|(f, len, name)| Shard { file: f.file(), len: *len, name: name.clone() }))
        .collect();
    let outs: Vec<AtomicFile> = damage.iter().map(|d| AtomicFile::create(&d.path)).collect::<Result<_>>()?;
    let sizes: Vec<u64> =
        damage.iter().map(|d| list.all().find(|(w, _)| *w == d.which).map_or(0, |(_, p)| p.size)).collect();
    let lost: Vec<(usize, Shard<'_>)> = damage
        .iter()
        .zip(&outs)
        .zip(&sizes)
        .map(|((d, f), &len)| (index(d.which), Shard { file: f.file(), len, name: d.path.display().to_string() }))
        .collect();
    let digests = parity::rebuild(data, &shards, &lost)?;
    drop(lost);
    for ((d, digest), f) in damage.iter().zip(&digests).zip(&outs) {
        let want = &list.all().find(|(w, _)| *w == d.which).expect("listed").1.digest;
        if digest != want {
            let msg = format!(
                "rebuilt, it has sha256 {}, not {} as the signed part list says (another part is damaged in a way its size and sha256 do not show?)",
                digest.hex(),
                want.hex()
            );
            return Err(Error::integrity(f.place(), msg));
        }
    }
    for f in outs {
        f.commit(0o644)?;
    }
    Ok(Repaired { rebuilt: damage.iter().map(|d| d.path.clone()).collect(), damage })
}

/// The sha256 check of one part against the signed list (`verify --part`).
pub fn check_part(names: &Names, list: &PartList, path: &std::path::Path) -> Result<(Which, u64)> {
    let place = path.display().to_string();
    let (which, part) = list
        .which(names, path)
        .ok_or_else(|| Error::bad(&place, format!("is not a part {} lists", names.list().display())))?;
    let len = path.metadata().at(|| place.clone())?.len();
    if len != part.size {
        return Err(Error::integrity(&place, format!("is {len} bytes, the signed part list says {}", part.size)));
    }
    let digest = hash_file(path).at(|| place.clone())?;
    if digest != part.digest {
        let msg = format!(
            "has sha256 {}, the signed part list says {}; `airlock repair -p KEY.pub {}` can rebuild it if the other parts are intact",
            digest.hex(),
            part.digest.hex(),
            names.part(0).display()
        );
        return Err(Error::integrity(&place, msg));
    }
    Ok((which, len))
}
