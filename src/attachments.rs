//! What is attached to an image's digest and travels with it: cosign's signatures, attestations
//! and SBOMs (found under cosign's tags, `sha256-<hex>.sig`, `.att`, `.sbom`) and OCI 1.1
//! referrers (manifests whose `subject` names the image, found with the referrers API or its
//! fallback tag `sha256-<hex>`). An [`Attachment`] is what the signed index records of each; the
//! naming rules (tags, layout annotations), the limits every walk of attachments keeps and the
//! user's selection (`--no-attachments`, `--attachments TYPE,...`) live here, once.
//!
//! Attachments are bound to digests, never to names, which is why they survive the renaming of
//! `push --to`: the tags are recomputed from the subject's digest in the new repository.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::json;

/// The most attachments one image may carry, attachments of attachments included.
pub const MAX_ATTACHMENTS: usize = 256;
/// How deep attachments of attachments are followed (1: only what is attached to the image).
pub const MAX_DEPTH: usize = 3;

/// The layout annotation that marks an attachment's entry in a bundle's `index.json` (its kind).
pub const ANNOTATION_KIND: &str = "vnd.airlock.attachment.kind";
/// The layout annotation naming the digest an attachment is attached to.
pub const ANNOTATION_SUBJECT: &str = "vnd.airlock.attachment.subject";
/// cosign's layout annotation (`cosign save`): `dev.cosignproject.cosign/sigs`, `/atts`, `/sboms`.
pub const COSIGN_LAYOUT_KIND: &str = "kind";

/// How an attachment is found, and so how it is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `cosign sign`: tag `sha256-<hex>.sig`.
    CosignSignature,
    /// `cosign attest`: tag `sha256-<hex>.att`.
    CosignAttestation,
    /// `cosign attach sbom`: tag `sha256-<hex>.sbom`.
    CosignSbom,
    /// An OCI 1.1 manifest with a `subject`.
    Referrer,
}

impl Kind {
    /// The kinds found under cosign's tags.
    pub const COSIGN: [Kind; 3] = [Kind::CosignSignature, Kind::CosignAttestation, Kind::CosignSbom];

    /// The suffix of cosign's tag; `None` for a referrer.
    pub fn tag_suffix(self) -> Option<&'static str> {
        match self {
            Kind::CosignSignature => Some("sig"),
            Kind::CosignAttestation => Some("att"),
            Kind::CosignSbom => Some("sbom"),
            Kind::Referrer => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CosignSignature => "cosign-signature",
            Kind::CosignAttestation => "cosign-attestation",
            Kind::CosignSbom => "cosign-sbom",
            Kind::Referrer => "referrer",
        }
    }

    /// The kind of a `cosign save` layout entry's `kind` annotation.
    pub fn from_cosign_layout(kind: &str) -> Option<Kind> {
        match kind {
            "dev.cosignproject.cosign/sigs" => Some(Kind::CosignSignature),
            "dev.cosignproject.cosign/atts" => Some(Kind::CosignAttestation),
            "dev.cosignproject.cosign/sboms" => Some(Kind::CosignSbom),
            _ => None,
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        [Kind::CosignSignature, Kind::CosignAttestation, Kind::CosignSbom, Kind::Referrer]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attachment as the signed index records it, under the image it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attachment {
    pub kind: Kind,
    /// The manifest it is attached to: the image's, one of its child manifests', or another
    /// attachment's of the same image.
    pub subject: Digest,
    /// Its manifest.
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The artifact type its manifest or referrers entry declares (a referrer's `artifactType`,
    /// else its config's media type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Every blob it uses: its manifest, config and layers.
    pub blobs: Vec<Digest>,
}

impl Attachment {
    /// The tag it is kept under in a repository: cosign's tag for cosign's kinds; a referrer is
    /// kept by digest (and listed in its subject's fallback tag index where there is no API).
    pub fn tag(&self) -> Option<String> {
        let suffix = self.kind.tag_suffix()?;
        Some(format!("{}.{suffix}", fallback_tag(&self.subject)))
    }
}

impl Attachment {
    /// Its entry in a referrers index (the referrers API's answer, or a fallback tag index): its
    /// descriptor, artifact type and the annotations of its manifest, `manifest`.
    pub fn referrer_descriptor(&self, manifest: &[u8]) -> serde_json::Value {
        let mut d = serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size});
        if let Some(t) = &self.artifact_type {
            d["artifactType"] = serde_json::json!(t);
        }
        if let Some(annotations) = json::parse(manifest).ok().and_then(|m| m.get("annotations").cloned()) {
            d["annotations"] = annotations;
        }
        d
    }
}

/// A referrers index listing `manifests` (entries made by [`Attachment::referrer_descriptor`]): the
/// referrers API's answer, and the document a subject's fallback tag names.
pub fn referrers_index<T: Serialize>(manifests: &[T]) -> serde_json::Value {
    serde_json::json!({"schemaVersion": 2, "mediaType": crate::image::OCI_INDEX, "manifests": manifests})
}

/// The referrers fallback tag of `subject` (`sha256-<hex>`), and the stem of cosign's tags.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// Which attachments `create` carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Selection {
    /// Every attachment found (the default).
    #[default]
    All,
    /// `--no-attachments`.
    None,
    /// `--attachments TYPE,...`: kinds (`cosign-signature`, …, `referrer`) or artifact types.
    Only(Vec<String>),
}

impl Selection {
    pub fn is_none(&self) -> bool {
        *self == Selection::None
    }

    /// Whether an attachment of this kind and artifact type is carried.
    pub fn takes(&self, kind: Kind, artifact_type: Option<&str>) -> bool {
        match self {
            Selection::All => true,
            Selection::None => false,
            Selection::Only(types) => types.iter().any(|t| t == kind.as_str() || Some(t.as_str()) == artifact_type),
        }
    }
}

/// One entry of a referrers list (the API's answer or the fallback tag's index).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct ReferrerList {
    #[serde(default)]
    manifests: Vec<Referrer>,
}

/// Parses a referrers list: an OCI image index (bounded JSON, as every manifest).
pub fn parse_referrers(bytes: &[u8]) -> Result<Vec<Referrer>, String> {
    let list: ReferrerList = json::parse_as(bytes)?;
    Ok(list.manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_and_the_fallback_tag_come_from_the_subject_digest() {
        let d = Digest::of_bytes(b"image");
        let a = Attachment {
            kind: Kind::CosignAttestation,
            subject: d.clone(),
            media_type: crate::image::OCI_MANIFEST.into(),
            digest: Digest::of_bytes(b"att"),
            size: 3,
            artifact_type: None,
            blobs: Vec::new(),
        };
        assert_eq!(a.tag().unwrap(), format!("sha256-{}.att", d.hex()));
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
        assert_eq!(Attachment { kind: Kind::Referrer, ..a }.tag(), None);
    }

    #[test]
    fn a_selection_matches_kinds_and_artifact_types() {
        let only = Selection::Only(vec!["cosign-signature".into(), "application/spdx+json".into()]);
        assert!(only.takes(Kind::CosignSignature, None));
        assert!(only.takes(Kind::Referrer, Some("application/spdx+json")));
        assert!(!only.takes(Kind::Referrer, Some("application/vnd.example.note")));
        assert!(!Selection::None.takes(Kind::CosignSignature, None));
        assert_eq!(serde_json::to_string(&Kind::CosignSbom).unwrap(), "\"cosign-sbom\"");
    }
}
