//! The signed bundle index, `airlock.json`: every image and blob in the bundle, every other file
//! with its digest, the creation time and a bundle id. See docs/bundle-format.md.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result, shown};
use crate::image::Platform;
use crate::json;
use crate::reference::Reference;

pub const INDEX_NAME: &str = "airlock.json";
pub const SIGNATURE_NAME: &str = "airlock.json.minisig";
pub const MEDIA_TYPE: &str = "application/vnd.airlock.bundle.index.v1+json";
/// An index or signature larger than this is refused before it is parsed.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
pub const MAX_SIGNATURE_BYTES: u64 = 4096;
/// The latest creation time a bundle can record, 9999-12-31T23:59:59Z: RFC 3339 has four-digit
/// years, and later times overflow the calendar arithmetic.
pub const MAX_CREATED: u64 = 253_402_300_799;

/// A creation time (seconds since the epoch) as the index records it.
pub fn created_rfc3339(secs: u64) -> Result<String> {
    if secs > MAX_CREATED {
        return Err(Error::bad("creation time", format!("{secs} is after 9999-12-31T23:59:59Z ({MAX_CREATED})")));
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Ok(humantime::format_rfc3339_seconds(t).to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleIndex {
    pub schema_version: u32,
    pub media_type: String,
    pub bundle_id: String,
    pub created: String,
    pub tool: String,
    pub images: Vec<ImageEntry>,
    pub blobs: Vec<BlobEntry>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageEntry {
    /// Full normalised reference, e.g. `docker.io/library/busybox:1.36`.
    pub name: String,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platforms: Vec<String>,
    /// Set when `--platform` filtered an index: the digest of the original, unfiltered index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered_from: Option<Digest>,
    /// Whether `manifest.json` lists this image for `docker load`.
    pub docker_load: bool,
    /// Every blob the image uses: its manifest or index, child manifests, configs and layers.
    pub blobs: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A file of the bundle other than a blob and the index itself (`oci-layout`, `index.json`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
}

impl BundleIndex {
    pub fn parse(place: &str, bytes: &[u8]) -> Result<Self> {
        let index: BundleIndex = json::parse_as(bytes).map_err(|e| Error::bad(place, e))?;
        if index.schema_version != 1 || index.media_type != MEDIA_TYPE {
            return Err(Error::bad(
                place,
                format!(
                    "unsupported bundle index (schemaVersion {}, mediaType `{}`)",
                    index.schema_version, index.media_type
                ),
            ));
        }
        index.check_names().map_err(|why| Error::bad(place, why))?;
        Ok(index)
    }

    /// Every name the index gives is what airlock itself would write: an image name is a valid
    /// reference in its normalised form, a platform is `os/arch[/variant]`, and no text the
    /// commands print holds a control character (it could rewrite the terminal).
    fn check_names(&self) -> std::result::Result<(), String> {
        for img in &self.images {
            let r = Reference::parse(&img.name).map_err(|e| format!("image name: {e}"))?;
            if r.to_string() != img.name {
                return Err(format!("image name `{}` is not in its normalised form `{r}`", shown(&img.name)));
            }
            for p in &img.platforms {
                let parsed = Platform::parse(p).map_err(|e| format!("image {}: {}", img.name, shown(&e)))?;
                if parsed.to_string() != *p {
                    return Err(format!("image {}: platform `{}` is not in its normal form", img.name, shown(p)));
                }
            }
        }
        let texts = [&self.bundle_id, &self.created, &self.tool]
            .into_iter()
            .chain(self.images.iter().map(|i| &i.media_type))
            .chain(self.blobs.iter().map(|b| &b.media_type))
            .chain(self.files.iter().map(|f| &f.path));
        for t in texts {
            if t.chars().any(char::is_control) || t.chars().count() > 1024 {
                return Err(format!("`{}` holds control characters or is too long", shown(t)));
            }
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("index serialises");
        v.push(b'\n');
        v
    }

    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}
