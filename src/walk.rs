//! The limits every manifest walk keeps, whoever walks (a source being read by `create`, a bundle
//! being verified, pushed, loaded or exported): each manifest is visited once per image however
//! many times an index names it (an index naming one child 20,000 times costs one read, not
//! 20,000), an image holds at most [`MAX_MANIFESTS`] distinct manifests and indexes, and indexes
//! nest at most [`MAX_DEPTH`] deep. A walk past a limit is refused, never truncated.

use std::collections::HashSet;

use crate::digest::Digest;

/// The most distinct manifests and indexes one image may hold (its root included).
pub const MAX_MANIFESTS: usize = 1024;
/// How deep indexes may nest below an image's root (1: a root index of manifests).
pub const MAX_DEPTH: usize = 4;

/// The manifests one image's walk has visited.
#[derive(Debug, Default)]
pub struct Visited {
    seen: HashSet<Digest>,
}

impl Visited {
    /// Whether `digest`, found `depth` levels below the root, is new to this walk (to be read);
    /// `false` if it was visited already. Refuses a walk past [`MAX_DEPTH`] or [`MAX_MANIFESTS`].
    pub fn enter(&mut self, digest: &Digest, depth: usize) -> Result<bool, String> {
        if depth > MAX_DEPTH {
            return Err(format!("indexes nest deeper than {MAX_DEPTH} levels (at {digest})"));
        }
        if self.seen.contains(digest) {
            return Ok(false);
        }
        if self.seen.len() >= MAX_MANIFESTS {
            return Err(format!("more than {MAX_MANIFESTS} distinct manifests in one image"));
        }
        self.seen.insert(digest.clone());
        Ok(true)
    }

    /// The manifests visited, in digest order.
    pub fn sorted(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = self.seen.iter().cloned().collect();
        v.sort();
        v
    }

    /// How many distinct manifests were visited.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_visited_once_and_the_limits_hold() {
        let d = Digest::of_bytes(b"m");
        let mut v = Visited::default();
        assert_eq!(v.enter(&d, 0), Ok(true));
        assert_eq!(v.enter(&d, 1), Ok(false));
        assert!(v.enter(&Digest::of_bytes(b"n"), MAX_DEPTH + 1).is_err());
        for i in 1..MAX_MANIFESTS {
            assert_eq!(v.enter(&Digest::of_bytes(&i.to_le_bytes()), 1), Ok(true));
        }
        assert!(v.enter(&Digest::of_bytes(b"one more"), 1).unwrap_err().contains("more than 1024"));
    }
}
