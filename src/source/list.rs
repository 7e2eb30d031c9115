//! Image list files (`create -f FILE`), in the forms users of other air-gap tools already have:
//!
//! - plain lines: one source per line, blank lines and `#` comments skipped;
//! - Hauler's `Images` manifest: `spec.images[]` with `name` and an optional `platform`
//!   (or `platforms`);
//! - mindthegap's images file: `REGISTRY: {images: {NAME: [TAG, …]}}`.
//!
//! Every error names the file and the line. A YAML list comes from someone else more often than
//! a plain one, so it names registry images only unless the caller allows local sources
//! (`create --file-allow-local`), and its nesting is bounded before a parser sees it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::image::Platform;
use crate::source::SourceSpec;

/// Which sources a YAML list may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Registry images only (the default for lists).
    RegistryOnly,
    /// Also local archives, layouts and `docker-daemon:` (`--file-allow-local`).
    Local,
}

/// Deeper YAML nesting is refused before parsing; image lists need five levels.
pub const MAX_YAML_DEPTH: usize = 32;

pub fn read(path: &Path, allow: Allow) -> Result<Vec<SourceSpec>> {
    let text = crate::local_file::read_text(path, crate::local_file::MAX_LIST_BYTES, "an image list")?;
    let place = |line: usize| format!("{}:{line}", path.display());
    if is_yaml(&text) { read_yaml(&text, &place, allow) } else { read_lines(&text, &place) }
}

/// Plain source specs never contain `: ` or end with `:`; YAML keys do.
fn is_yaml(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|l| l.contains(": ") || l.ends_with(':'))
}

fn read_lines(text: &str, place: &dyn Fn(usize) -> String) -> Result<Vec<SourceSpec>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split_once(" #").map_or(line, |(l, _)| l).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(SourceSpec::parse(line).map_err(|e| Error::bad(place(i + 1), e.to_string()))?);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Hauler {
    kind: String,
    spec: HaulerSpec,
}

#[derive(Deserialize)]
struct HaulerSpec {
    images: Vec<HaulerImage>,
}

#[derive(Deserialize)]
struct HaulerImage {
    name: String,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    platforms: Vec<String>,
}

#[derive(Deserialize)]
struct MtgRegistry {
    images: BTreeMap<String, Vec<Tag>>,
}

/// A tag; YAML reads `1.27` as a number, which would lose `1.20`'s zero, so only strings and
/// integers are taken.
struct Tag(String);

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match serde_yaml_ng::Value::deserialize(d)? {
            serde_yaml_ng::Value::String(s) => Ok(Tag(s)),
            serde_yaml_ng::Value::Number(n) if n.is_u64() => Ok(Tag(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "tag {other:?} is not a string; quote it (YAML reads 1.20 as the number 1.2)"
            ))),
        }
    }
}

fn read_yaml(text: &str, place: &dyn Fn(usize) -> String, allow: Allow) -> Result<Vec<SourceSpec>> {
    if let Some(line) = too_deep(text, MAX_YAML_DEPTH) {
        return Err(Error::bad(place(line), format!("nested deeper than {MAX_YAML_DEPTH} levels; not an image list")));
    }
    let yaml_err = |e: serde_yaml_ng::Error| {
        let line = e.location().map_or(1, |l| l.line());
        // serde quotes the value it could not take whole: shown like any outside text.
        Error::bad(place(line), format!("not an image list: {}", crate::error::quoted(&e.to_string())))
    };
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
    let entries: Vec<(String, Vec<String>)> = if doc.get("apiVersion").is_some() || doc.get("kind").is_some() {
        // Parsed again from the text, not the value, so errors keep their line.
        let h: Hauler = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
        if h.kind != "Images" {
            return Err(Error::bad(
                place(line_of(text, "kind")),
                format!("kind `{}`: only `Images` lists images", crate::error::shown(&h.kind)),
            ));
        }
        h.spec.images.into_iter().map(|i| (i.name, i.platform.into_iter().chain(i.platforms).collect())).collect()
    } else {
        let m: BTreeMap<String, MtgRegistry> = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
        let mut v = Vec::new();
        for (registry, r) in m {
            for (name, tags) in r.images {
                v.extend(tags.into_iter().map(|t| (format!("{registry}/{name}:{}", t.0), Vec::new())));
            }
        }
        v
    };
    let mut out = Vec::new();
    for (name, platforms) in entries {
        let at = || place(line_of(text, name.rsplit('/').next().unwrap_or(&name)));
        let mut spec = parse_entry(&name, allow).map_err(|e| Error::bad(at(), e))?;
        for p in platforms {
            spec.platforms.push(Platform::parse(&p).map_err(|e| Error::bad(at(), e))?);
        }
        out.push(spec);
    }
    Ok(out)
}

/// One YAML list entry as a source: a registry image, or with [`Allow::Local`] any source.
fn parse_entry(name: &str, allow: Allow) -> std::result::Result<SourceSpec, String> {
    if allow == Allow::Local {
        return SourceSpec::parse(name).map_err(|e| e.to_string());
    }
    // Before it is read as a reference: `oci-archive:tools.tar` is also a valid one (the image
    // `oci-archive` tagged `tools.tar`), and would be asked of Docker Hub.
    let local = name.starts_with(['.', '/', '~'])
        || ["docker-archive:", "oci:", "oci-archive:", "docker-daemon:"].iter().any(|t| name.starts_with(t));
    if local {
        return Err(format!(
            "`{}` is not a registry image: a YAML list names registry images only \
             (pass it with --file-allow-local to take local paths and docker-daemon: sources)",
            name.escape_debug()
        ));
    }
    let bare = name.strip_prefix("docker://").unwrap_or(name);
    SourceSpec::parse(&format!("docker://{bare}")).map_err(|e| e.to_string())
}

/// The line (1-based) where `text`'s nesting first passes `max` levels, counting block levels
/// (indentation and `- ` markers) and flow brackets, so a hostile list costs a scan, not a parse.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if flow == 0 && !body.is_empty() && !body.starts_with('#') {
            let mut col = line.len() - body.len();
            let mut rest = body;
            loop {
                while indents.last().is_some_and(|&top| top >= col) {
                    indents.pop();
                }
                indents.push(col);
                match rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-\t")) {
                    Some(r) => {
                        let r2 = r.trim_start();
                        col += rest.len() - r2.len();
                        rest = r2;
                    }
                    None => break,
                }
                if indents.len() > max {
                    return Some(i + 1);
                }
            }
        }
        match flow_depth(line, flow, indents.len(), max) {
            Some(d) => flow = d,
            None => return Some(i + 1),
        }
    }
    None
}

/// Follows `[`/`{` nesting through one line, outside quotes and comments.
fn flow_depth(line: &str, mut depth: usize, block: usize, max: usize) -> Option<usize> {
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') => break,
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth + block > max {
            return None;
        }
    }
    Some(depth)
}

/// The first line that mentions `needle` (1-based), for messages about parsed entries.
fn line_of(text: &str, needle: &str) -> usize {
    let needle = needle.split(':').next().unwrap_or(needle);
    text.lines().position(|l| l.contains(needle)).map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SourceSpec>> {
        parse_allowing(text, Allow::RegistryOnly)
    }

    fn parse_allowing(text: &str, allow: Allow) -> Result<Vec<SourceSpec>> {
        if is_yaml(text) {
            read_yaml(text, &|l| format!("list:{l}"), allow)
        } else {
            read_lines(text, &|l| format!("list:{l}"))
        }
    }

    #[test]
    fn hauler_manifests_with_platforms() {
        let text = "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nmetadata:\n  name: x\nspec:\n  images:\n    - name: nginx:1.27\n      platform: linux/arm64\n    - name: registry.example/team/api:1.4\n";
        let specs = parse(text).unwrap();
        assert_eq!(specs[0].to_string(), "docker://docker.io/library/nginx:1.27");
        assert_eq!(specs[0].platforms[0].to_string(), "linux/arm64");
        assert!(specs[1].platforms.is_empty());
    }

    #[test]
    fn mindthegap_images_files() {
        let text = "docker.io:\n  images:\n    library/nginx:\n      - 1.21.5\n      - \"1.27\"\nregistry.example:5000:\n  images:\n    team/api: [\"1.4\"]\n";
        let names: Vec<String> = parse(text).unwrap().iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "docker://docker.io/library/nginx:1.21.5",
                "docker://docker.io/library/nginx:1.27",
                "docker://registry.example:5000/team/api:1.4"
            ]
        );
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = parse("docker.io:\n  images:\n    library/nginx:\n      - 1.20\n").unwrap_err();
        assert!(e.to_string().starts_with("list:4:") && e.to_string().contains("quote"), "{e}");
        let e = parse("apiVersion: v1\nkind: Images\nspec:\n  images:\n    - name: Not A Name\n").unwrap_err();
        assert!(e.to_string().starts_with("list:5:"), "{e}");
        let e = parse("kind: Images\nspec:\n  images: 7\n").unwrap_err();
        assert!(e.to_string().starts_with("list:3:"), "{e}");
        let e = parse("# c\n\noci:/nonexistent=Bad Name\n").unwrap_err();
        assert!(e.to_string().starts_with("list:3:"), "{e}");
    }

    #[test]
    fn deep_yaml_is_refused_before_parsing() {
        let start = std::time::Instant::now();
        let flow = format!("kind: Images\nspec: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&flow).unwrap_err().to_string().contains("nested deeper than"));
        let block: String = (0..2_000).map(|i| format!("{}a{i}:\n", " ".repeat(i))).collect();
        assert!(parse(&block).unwrap_err().to_string().contains("nested deeper than"));
        let dashes = format!("kind: Images\nspec:\n  images:\n    {}x\n", "- ".repeat(100_000));
        assert!(parse(&dashes).unwrap_err().to_string().starts_with("list:4: nested deeper than"));
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
    }

    #[test]
    fn yaml_lists_name_registry_images_unless_local_is_allowed() {
        let names = ["docker-archive:/etc/x.tar", "oci:./layout", "docker-daemon:nginx:1", "/srv/a.tar"];
        // Each of these is also a valid reference (`oci-archive` tagged `tools.tar`).
        let references_too = ["docker-archive:all.tar", "oci:layout", "oci-archive:tools.tar", "docker-daemon:nginx"];
        for name in names.into_iter().chain(references_too) {
            let text = format!("kind: Images\nspec:\n  images:\n    - name: \"{name}\"\n");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with("list:4:") && e.contains("--file-allow-local"), "{e}");
        }
        let text = "kind: Images\nspec:\n  images:\n    - name: docker-daemon:nginx:1\n";
        let specs = parse_allowing(text, Allow::Local).unwrap();
        assert_eq!(specs[0].transport(), crate::source::Transport::Daemon);
        let text = "kind: Images\nspec:\n  images:\n    - name: docker://nginx:1\n";
        assert_eq!(parse(text).unwrap()[0].transport(), crate::source::Transport::Registry);
    }
}
