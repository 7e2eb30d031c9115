//! Bundles split into volumes for removable media: `OUT.001`, `OUT.002`, … are byte ranges of the
//! one tar stream a bundle is (so `cat OUT.0*` gives the bundle back), `OUT.p01`, … are
//! Reed–Solomon parity over them, and `OUT.parts` (signed in `OUT.parts.minisig`) lists every
//! part's size and sha256. This module names the parts ([`Names`]), parses sizes ([`size`]),
//! owns the part list ([`list`]), writes parts ([`output`]), reads them back as one positional
//! input ([`input`]), computes parity as the parts are written ([`sealer`], [`parity`]) and uses it ([`repair`]) and checks the output
//! filesystem before a byte is written ([`preflight`]). See docs/bundle-format.md, "Volumes".

pub mod input;
pub mod list;
pub mod output;
pub mod parity;
pub mod preflight;
pub mod repair;
pub mod sealer;
pub mod size;

use std::path::{Path, PathBuf};

/// The most data parts a bundle may have (three-digit suffixes).
pub const MAX_PARTS: usize = 999;
/// The most parity parts (two-digit suffixes after `p`).
pub const MAX_PARITY: usize = 99;

/// The file names of a split bundle, all derived from the output path `OUT`.
#[derive(Debug, Clone)]
pub struct Names {
    stem: PathBuf,
}

impl Names {
    /// The names for a bundle written as `out`.
    pub fn new(out: &Path) -> Self {
        Names { stem: out.to_owned() }
    }

    /// The names of the split bundle a path belongs to: `OUT.parts`, `OUT.parts.minisig`,
    /// `OUT.NNN` or `OUT.pNN`; `None` for any other name.
    pub fn of_member(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let (stem, suffix) = name.rsplit_once('.')?;
        let (stem, suffix) = match suffix {
            "minisig" => stem.rsplit_once('.').filter(|(_, s)| *s == "parts")?,
            _ => (stem, suffix),
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let ok = suffix == "parts" || digits(suffix, 3) || suffix.strip_prefix('p').is_some_and(|s| digits(s, 2));
        (ok && !stem.is_empty()).then(|| Names { stem: path.with_file_name(stem) })
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut s = self.stem.clone().into_os_string();
        s.push(".");
        s.push(suffix);
        PathBuf::from(s)
    }

    /// The bundle's own path (`OUT`), as `cat` of the parts would be named.
    pub fn bundle(&self) -> &Path {
        &self.stem
    }

    /// Data part `i`, counted from 0: `OUT.001` for 0.
    pub fn part(&self, i: usize) -> PathBuf {
        self.with_suffix(&format!("{:03}", i + 1))
    }

    /// Parity part `j`, counted from 0: `OUT.p01` for 0.
    pub fn parity(&self, j: usize) -> PathBuf {
        self.with_suffix(&format!("p{:02}", j + 1))
    }

    pub fn list(&self) -> PathBuf {
        self.with_suffix("parts")
    }

    pub fn signature(&self) -> PathBuf {
        self.with_suffix("parts.minisig")
    }
}

/// Byte counts as people read them (1.5 GiB), for messages.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_leads_back_to_the_same_names() {
        let n = Names::new(Path::new("/m/b.tar"));
        assert_eq!(n.part(0), Path::new("/m/b.tar.001"));
        assert_eq!(n.parity(1), Path::new("/m/b.tar.p02"));
        for member in [n.part(41), n.parity(0), n.list(), n.signature()] {
            assert_eq!(Names::of_member(&member).unwrap().bundle(), Path::new("/m/b.tar"), "{member:?}");
        }
        for other in ["/m/b.tar", "/m/b.tar.01", "/m/b.tar.p1", "/m/.001", "/m/b.tar.minisig"] {
            assert!(Names::of_member(Path::new(other)).is_none(), "{other}");
        }
    }
}
