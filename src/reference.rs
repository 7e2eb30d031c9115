//! Image references (`registry.example:5000/team/app:1.4`, `nginx`, `app@sha256:…`), validated and
//! normalised the way docker does: a missing registry is `docker.io`, a one-component Docker Hub
//! path gains `library/`, and a missing tag is `latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a valid image reference: {why}")]
pub struct ReferenceError {
    pub text: String,
    pub why: String,
}

pub const DOCKER_HUB: &str = "docker.io";

impl Reference {
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |why: &str| ReferenceError { text: crate::error::shown(text), why: why.to_owned() };
        if text.is_empty() || text.len() > 4096 {
            return Err(fail("empty or longer than 4096 characters"));
        }
        let (name, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| fail(&e.to_string()))?)),
            None => (text, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(fail("a tag is 1-128 of [A-Za-z0-9_.-] and cannot start with '.' or '-'"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if names_registry(first) => (first, rest.to_owned()),
            _ => (DOCKER_HUB, name.to_owned()),
        };
        if !valid_registry(registry) {
            return Err(fail("the registry must be a host name or address with an optional port"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        if !repository.split('/').all(valid_component) {
            return Err(fail(
                "repository path components are lowercase letters and digits separated by '.', '_', '__' or '-'",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(Reference { registry: registry.to_owned(), repository, tag, digest })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form docker shows in `docker images` and writes in RepoTags
    /// (`busybox:1.36` for Docker Hub official images). It always reads back as the same
    /// repository: `docker.io/library/a/b` keeps `library/`, and `docker.io/example.com/app`
    /// keeps its host, which `example.com/app` would lose to a registry of that name.
    pub fn familiar(&self) -> String {
        let official = self.repository.strip_prefix("library/").filter(|rest| !rest.contains('/'));
        let first = self.repository.split('/').next().unwrap_or_default();
        let name = match official {
            _ if self.registry != DOCKER_HUB || names_registry(first) => self.name(),
            Some(rest) => rest.to_owned(),
            None => self.repository.clone(),
        };
        match &self.tag {
            Some(t) => format!("{name}:{t}"),
            None => name,
        }
    }
}

/// Whether the first component of a name is a registry host rather than a Docker Hub namespace.
fn names_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_registry(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || n.starts_with('[') => (n, Some(p)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()));
    let name_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    port_ok && name_ok
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')) {
        return false;
    }
    // Separators: one '.', one or two '_', or any run of '-'.
    c.split(|ch: char| ch.is_ascii_alphanumeric())
        .all(|sep| sep.is_empty() || sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-'))
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(norm("team/app"), "docker.io/team/app:latest");
        assert_eq!(norm("registry.example:5000/team/app:1.4"), "registry.example:5000/team/app:1.4");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(Reference::parse("nginx:1.27").unwrap().familiar(), "nginx:1.27");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(norm(&format!("app@{d}")), format!("docker.io/library/app@{d}"));
    }

    /// Found by `cargo fuzz run reference` (fuzz/regressions/reference).
    #[test]
    fn a_familiar_name_reads_back_as_the_same_repository() {
        let familiar = |s: &str| Reference::parse(s).unwrap().familiar();
        assert_eq!(familiar("team/app:1"), "team/app:1");
        assert_eq!(familiar("docker.io/example.com/app:1"), "docker.io/example.com/app:1");
        assert_eq!(familiar("docker.io/localhost/app:1"), "docker.io/localhost/app:1");
        assert_eq!(familiar("docker.io/library/a/b:1"), "library/a/b:1");
        assert_eq!(familiar("example.com/app:1"), "example.com/app:1");
    }

    #[test]
    fn rejects_hostile_references() {
        for bad in ["", "UPPER/case", "a/../b", "app:", "app:-x", "app@sha256:zz", "a//b", "reg.io/a b", "/abs"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
