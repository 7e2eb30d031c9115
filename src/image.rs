//! The OCI / Docker image model airlock needs: descriptors, manifests, indexes, configs and
//! platforms, parsed strictly from untrusted bytes.
//!
//! Manifests and indexes are never re-serialised: airlock keeps the bytes it read so every digest
//! stays valid. These types are only the parsed view used to walk from an index to its manifests,
//! configs and layers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::shown;
use crate::json;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor { media_type: media_type.to_owned(), digest, size, platform: None, annotations: None, urls: None }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An `os/arch[/variant]` platform whose parts are plain words (letters, digits, `_`, `.`),
/// whether it came from `--platform`, an image config or an index: anything else is refused
/// where it is read, so a platform prints safely and reads back the same from a bundle's index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawPlatform")]
pub struct Platform {
    os: String,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    os_version: Option<String>,
}

/// A platform as a descriptor spells it, before it is checked.
#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default, rename = "os.version")]
    os_version: Option<String>,
}

impl TryFrom<RawPlatform> for Platform {
    type Error = String;

    fn try_from(raw: RawPlatform) -> Result<Self, String> {
        let mut p = Platform::checked(&raw.os, &raw.architecture, raw.variant.as_deref())?;
        p.os_version = raw.os_version;
        Ok(p)
    }
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a platform (want os/arch or os/arch/variant, e.g. linux/arm64/v8)");
        match text.split('/').collect::<Vec<_>>().as_slice() {
            [os, arch] => Platform::checked(os, arch, None).map_err(|_| bad()),
            [os, arch, v] => Platform::checked(os, arch, Some(v)).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// The platform of an image that declares none (an artifact).
    pub fn unknown() -> Self {
        Platform::new("unknown", "unknown", None)
    }

    /// Linux on `arch` (a Go architecture name: `amd64`, `arm64`, …).
    pub fn linux(arch: &'static str) -> Self {
        Platform::new("linux", arch, None)
    }

    fn checked(os: &str, arch: &str, variant: Option<&str>) -> Result<Self, String> {
        let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if word(os) && word(arch) && variant.is_none_or(word) {
            return Ok(Platform::new(os, arch, variant));
        }
        let v = variant.map(|v| format!("/{v}")).unwrap_or_default();
        Err(format!("platform `{}` is not os/arch[/variant] of plain words", shown(&format!("{os}/{arch}{v}"))))
    }

    fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        Platform { os: os.into(), architecture: arch.into(), variant: variant.map(Into::into), os_version: None }
    }

    /// Whether this (an image's platform) satisfies `wanted` (a user's `--platform`); a wanted
    /// platform without a variant matches any variant.
    pub fn matches(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// OCI 1.1: the manifest this one is attached to (a signature's or an SBOM's image).
    #[serde(default)]
    pub subject: Option<Descriptor>,
}

impl Manifest {
    /// A container image (an image config, no `artifactType`), as opposed to an artifact (a Helm
    /// chart, a signature, an SBOM) whose config and layers airlock carries opaque.
    pub fn is_image(&self) -> bool {
        self.artifact_type.is_none()
            && (self.config.media_type == OCI_CONFIG || self.config.media_type == DOCKER_CONFIG)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The parts of an image config airlock checks.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl Config {
    /// The platform the config declares, checked like any other.
    pub fn platform(&self) -> Result<Platform, String> {
        Platform::checked(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// A parsed manifest or index, by what its media type and its content agree it is.
#[derive(Debug, Clone)]
pub enum Parsed {
    Manifest(Box<Manifest>),
    Index(Index),
}

pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Parses manifest or index bytes that a descriptor of `media_type` pointed at. The document must
/// be exactly one of the two kinds and, if it names its own media type, the same one.
pub fn parse_manifest(bytes: &[u8], media_type: &str) -> Result<Parsed, String> {
    let parsed = parse_document(bytes, media_type)?;
    match &parsed {
        Parsed::Manifest(m) if m.is_image() => match m.layers.iter().find(|l| !is_layer_type(&l.media_type)) {
            Some(l) => Err(format!(
                "layer {} has media type `{}`, which is not a layer type (an image's layers must be)",
                l.digest,
                shown(&l.media_type)
            )),
            None => Ok(parsed),
        },
        _ => Ok(parsed),
    }
}

/// Parses an attachment's manifest (a cosign signature, an attestation, an SBOM): like
/// [`parse_manifest`], but its layers are opaque whatever its config says (cosign gives its
/// signatures an image config and `application/vnd.dev.cosign.simplesigning.v1+json` layers).
pub fn parse_artifact(bytes: &[u8], media_type: &str) -> Result<Parsed, String> {
    parse_document(bytes, media_type)
}

fn parse_document(bytes: &[u8], media_type: &str) -> Result<Parsed, String> {
    let value = json::parse(bytes)?;
    let obj = value.as_object().ok_or("a manifest must be a JSON object")?;
    let has_manifests = obj.contains_key("manifests");
    let has_image_parts = obj.contains_key("config") || obj.contains_key("layers");
    if has_manifests && has_image_parts {
        return Err("ambiguous document: it has both `manifests` (index) and `config`/`layers` (manifest)".into());
    }
    if let Some(own) = obj.get("mediaType").and_then(Value::as_str)
        && own != media_type
    {
        return Err(format!(
            "media type confusion: descriptor says `{}`, document says `{}`",
            shown(media_type),
            shown(own)
        ));
    }
    let typed = |v: Value| -> Result<Parsed, String> {
        if is_index_type(media_type) {
            if !has_manifests {
                return Err(format!("`{}` document has no `manifests`", shown(media_type)));
            }
            serde_json::from_value(v).map(Parsed::Index)
        } else if is_manifest_type(media_type) {
            if has_manifests {
                return Err(format!("`{}` document has `manifests`, like an index", shown(media_type)));
            }
            serde_json::from_value(v).map(|m| Parsed::Manifest(Box::new(m)))
        } else {
            return Err(format!("unsupported manifest media type `{}`", shown(media_type)));
        }
        .map_err(|e| format!("malformed {media_type}: {e}"))
    };
    let parsed = typed(value)?;
    match &parsed {
        Parsed::Manifest(m) if m.schema_version != 2 => Err(format!("schemaVersion {} (want 2)", m.schema_version)),
        Parsed::Index(i) if i.schema_version != 2 => Err(format!("schemaVersion {} (want 2)", i.schema_version)),
        _ => Ok(parsed),
    }
}

pub fn parse_config(bytes: &[u8]) -> Result<Config, String> {
    let cfg: Config = json::parse_as(bytes)?;
    if cfg.rootfs.kind != "layers" {
        return Err(format!("rootfs.type is `{}`, want `layers`", shown(&cfg.rootfs.kind)));
    }
    Ok(cfg)
}

/// The layer media types airlock knows how to carry, and whether they are compressed.
pub fn is_layer_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
        || media_type.starts_with("application/vnd.docker.container.image.rootfs.")
}

/// Whether a layer media type is a plain, uncompressed tar (what `docker save` writes).
pub fn is_uncompressed_layer(media_type: &str) -> bool {
    media_type == OCI_LAYER || media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_that_is_both_manifest_and_index_is_refused() {
        let doc = br#"{"schemaVersion":2,"manifests":[],"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(parse_manifest(doc, OCI_MANIFEST).unwrap_err().contains("ambiguous"));
        assert!(parse_manifest(doc, OCI_INDEX).unwrap_err().contains("ambiguous"));
    }

    #[test]
    fn own_media_type_must_agree_with_descriptor() {
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(parse_manifest(doc, OCI_INDEX).is_ok());
        assert!(parse_manifest(doc, OCI_MANIFEST).unwrap_err().contains("confusion"));
    }

    #[test]
    fn an_image_layer_must_have_a_layer_media_type_but_artifacts_stay_opaque() {
        let doc = |config: &str, layer: &str, artifact: &str| {
            format!(
                r#"{{"schemaVersion":2,{artifact}"config":{{"mediaType":"{config}","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}},"layers":[{{"mediaType":"{layer}","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}}]}}"#
            )
        };
        let e = parse_manifest(doc(OCI_CONFIG, OCI_INDEX, "").as_bytes(), OCI_MANIFEST).unwrap_err();
        assert!(e.contains("not a layer type"), "{e}");
        assert!(parse_manifest(doc(DOCKER_CONFIG, "text/plain", "").as_bytes(), OCI_MANIFEST).is_err());
        assert!(parse_manifest(doc(OCI_CONFIG, OCI_LAYER_GZIP, "").as_bytes(), OCI_MANIFEST).is_ok());
        let helm =
            doc("application/vnd.cncf.helm.config.v1+json", "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "");
        assert!(parse_manifest(helm.as_bytes(), OCI_MANIFEST).is_ok());
        let sbom = doc(OCI_CONFIG, "application/spdx+json", r#""artifactType":"application/spdx+json","#);
        assert!(parse_manifest(sbom.as_bytes(), OCI_MANIFEST).is_ok());
    }

    #[test]
    fn platform_parsing_and_matching() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches(&Platform::parse("linux/arm64").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/amd64").unwrap()));
        assert!(Platform::parse("linux").is_err());
    }
}
