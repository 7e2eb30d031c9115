//! Image list files (`create -f FILE`), in the forms users of other air-gap tools already have:
//!
//! - plain lines: one source per line, blank lines and `#` comments skipped;
//! - Hauler's `Images` manifest: `spec.images[]` with `name` and an optional `platform`
//!   (or `platforms`);
//! - mindthegap's images file: `REGISTRY: {images: {NAME: [TAG, …]}}`.
//!
//! Every error names the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::image::Platform;
use crate::source::SourceSpec;

pub fn read(path: &Path) -> Result<Vec<SourceSpec>> {
    let text = fs_err::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    let place = |line: usize| format!("{}:{line}", path.display());
    if is_yaml(&text) { read_yaml(&text, &place) } else { read_lines(&text, &place) }
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

fn read_yaml(text: &str, place: &dyn Fn(usize) -> String) -> Result<Vec<SourceSpec>> {
    let yaml_err = |e: serde_yaml_ng::Error| {
        let line = e.location().map_or(1, |l| l.line());
        Error::bad(place(line), format!("not an image list: {e}"))
    };
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
    let entries: Vec<(String, Vec<String>)> = if doc.get("apiVersion").is_some() || doc.get("kind").is_some() {
        // Parsed again from the text, not the value, so errors keep their line.
        let h: Hauler = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
        if h.kind != "Images" {
            return Err(Error::bad(
                place(line_of(text, "kind")),
                format!("kind `{}`: only `Images` lists images", h.kind),
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
        let mut spec = SourceSpec::parse(&name).map_err(|e| Error::bad(at(), e.to_string()))?;
        for p in platforms {
            spec.platforms.push(Platform::parse(&p).map_err(|e| Error::bad(at(), e))?);
        }
        out.push(spec);
    }
    Ok(out)
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
        if is_yaml(text) {
            read_yaml(text, &|l| format!("list:{l}"))
        } else {
            read_lines(text, &|l| format!("list:{l}"))
        }
    }

    #[test]
    fn hauler_manifests_with_platforms() {
        let text = "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nmetadata:\n  name: x\nspec:\n  images:\n    - name: nginx:1.27\n      platform: linux/arm64\n    - name: registry.example/team/api:1.4\n";
        let specs = parse(text).unwrap();
        assert_eq!(specs[0].reference.as_ref().unwrap().to_string(), "docker.io/library/nginx:1.27");
        assert_eq!(specs[0].platforms[0].to_string(), "linux/arm64");
        assert!(specs[1].platforms.is_empty());
    }

    #[test]
    fn mindthegap_images_files() {
        let text = "docker.io:\n  images:\n    library/nginx:\n      - 1.21.5\n      - \"1.27\"\nregistry.example:5000:\n  images:\n    team/api: [\"1.4\"]\n";
        let names: Vec<String> =
            parse(text).unwrap().iter().map(|s| s.reference.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            names,
            ["docker.io/library/nginx:1.21.5", "docker.io/library/nginx:1.27", "registry.example:5000/team/api:1.4"]
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
}
