//! The signed bundle index, `airlock.json`: every image and blob in the bundle, every other file
//! with its digest, the creation time and a bundle id, and (schema version 2) the series, sequence
//! number and expiry that let an importer refuse replays and stale bundles. See
//! docs/bundle-format.md.

use serde::{Deserialize, Serialize};

use crate::attachments::Attachment;
use crate::digest::Digest;
use crate::error::{Error, Result, shown};
use crate::image::{self, Platform};
use crate::json;
use crate::reference::Reference;

pub const INDEX_NAME: &str = "airlock.json";
pub const SIGNATURE_NAME: &str = "airlock.json.minisig";
/// The index's media type. It names the kind of document; `schemaVersion` says which fields it has.
pub const MEDIA_TYPE: &str = "application/vnd.airlock.bundle.index.v1+json";
/// The schema version airlock writes: 2 adds `series`, `sequence` and `expires`.
pub const SCHEMA_VERSION: u32 = 2;
/// The series a bundle belongs to unless `--series` says otherwise.
pub const DEFAULT_SERIES: &str = "default";
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
    /// Schema version 2: the series this bundle belongs to (absent in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
    /// Schema version 2: its place in the series; a later bundle has a larger number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Schema version 2, optional: RFC 3339 time after which an importer refuses the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// A delta's bases: the bundles whose blobs it relies on instead of carrying them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<BaseEntry>,
}

/// A bundle a delta relies on: what identifies it beyond doubt (the sha256 of its signed index)
/// and where it stands in the series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseEntry {
    pub bundle_id: String,
    /// The sha256 of the base's `airlock.json`, the bytes its signature covers.
    pub index_digest: Digest,
    pub series: Series,
    pub sequence: u64,
}

/// A series name: 1 to 128 of `A-Z a-z 0-9 . _ -`, so it reads the same in a message, a state
/// file and a shell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Series(String);

impl Series {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Series {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || s.len() > 128 || !s.chars().all(ok) {
            return Err(format!("series `{}` is not 1 to 128 of A-Z a-z 0-9 . _ -", shown(&s)));
        }
        Ok(Series(s))
    }
}

impl From<Series> for String {
    fn from(s: Series) -> String {
        s.0
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a bundle stands in its series: what an importer compares with what it applied before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub series: Series,
    pub sequence: u64,
    /// Seconds since the epoch.
    pub expires: Option<u64>,
}

/// Seconds since the epoch of an RFC 3339 time the index records.
pub fn epoch_seconds(rfc3339: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(rfc3339).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
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
    /// Optional: signatures, attestations, SBOMs and referrers attached to the image's digests
    /// (absent when there are none, so bundles without them read as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Set in a delta for a blob its archive does not carry: the bundle id of the base that does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_by: Option<String>,
}

impl BlobEntry {
    /// Whether the bundle's archive holds this blob (a delta leaves out what its bases carry).
    pub fn is_carried(&self) -> bool {
        self.carried_by.is_none()
    }

    /// Manifests and indexes: a delta always carries them (see docs/bundle-format.md).
    pub fn is_manifest(&self) -> bool {
        image::is_manifest_type(&self.media_type) || image::is_index_type(&self.media_type)
    }
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
        if !(1..=SCHEMA_VERSION).contains(&index.schema_version) || index.media_type != MEDIA_TYPE {
            return Err(Error::bad(
                place,
                format!(
                    "unsupported bundle index (schemaVersion {}, mediaType `{}`)",
                    index.schema_version,
                    crate::error::shown(&index.media_type)
                ),
            ));
        }
        index.check_names().map_err(|why| Error::bad(place, why))?;
        index.check_position().map_err(|why| Error::bad(place, why))?;
        index.check_bases().map_err(|why| Error::bad(place, why))?;
        Ok(index)
    }

    /// Version 1 has no series fields; version 2 has a series and a sequence, and an expiry
    /// only as a valid time.
    fn check_position(&self) -> std::result::Result<(), String> {
        let fields = [self.series.is_some(), self.sequence.is_some()];
        if self.schema_version >= 2 && fields != [true, true] {
            return Err("schemaVersion 2 index lacks `series` or `sequence`".into());
        }
        if self.schema_version == 1 && (fields.contains(&true) || self.expires.is_some()) {
            return Err("schemaVersion 1 index carries `series`, `sequence` or `expires`".into());
        }
        match &self.expires {
            Some(e) if epoch_seconds(e).is_none_or(|s| s > MAX_CREATED) => {
                Err(format!("`expires` is not an RFC 3339 time: `{}`", shown(e)))
            }
            _ => Ok(()),
        }
    }

    /// A delta's bases are earlier bundles of its own series, each named once, and every blob it
    /// leaves out is a config or layer that one of them carries.
    fn check_bases(&self) -> std::result::Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        for b in &self.bases {
            if Some(&b.series) != self.series.as_ref() || self.sequence.is_none_or(|s| b.sequence >= s) {
                return Err(format!("base {} is not an earlier bundle of this series", shown(&b.bundle_id)));
            }
            if !ids.insert(b.bundle_id.as_str()) {
                return Err(format!("base {} is listed twice", shown(&b.bundle_id)));
            }
        }
        for blob in &self.blobs {
            match &blob.carried_by {
                Some(id) if !ids.contains(id.as_str()) => {
                    return Err(format!("blob {} is carried by {}, which is not a base", blob.digest, shown(id)));
                }
                Some(_) if blob.is_manifest() => {
                    return Err(format!("manifest {} is left out; a delta carries every manifest", blob.digest));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The bundle's series, sequence and expiry; `None` for a schema version 1 bundle.
    pub fn position(&self) -> Option<Position> {
        Some(Position {
            series: self.series.clone()?,
            sequence: self.sequence?,
            expires: self.expires.as_deref().and_then(epoch_seconds),
        })
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
            .chain(&self.expires)
            .chain(self.bases.iter().map(|b| &b.bundle_id))
            .chain(self.images.iter().map(|i| &i.media_type))
            .chain(
                self.images
                    .iter()
                    .flat_map(|i| &i.attachments)
                    .flat_map(|a| [&a.media_type].into_iter().chain(&a.artifact_type)),
            )
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

    /// How many attachments (signatures, SBOMs, referrers) the images carry in all.
    pub fn attachment_count(&self) -> usize {
        self.images.iter().map(|i| i.attachments.len()).sum()
    }

    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// The bytes of the blobs the archive itself holds: all of them, unless it is a delta.
    pub fn carried_blob_bytes(&self) -> u64 {
        self.blobs.iter().filter(|b| b.is_carried()).map(|b| b.size).sum()
    }

    /// The blobs a delta leaves to its bases.
    pub fn absent_blobs(&self) -> impl Iterator<Item = &BlobEntry> {
        self.blobs.iter().filter(|b| !b.is_carried())
    }
}

/// Refuses two images of a bundle that would go under one name where clients find them (their
/// registry hosts dropped: `registry.example/team/web:1.4` and `example.com/team/web:1.4` both as
/// `team/web:1.4`): the tag would point at whichever came last. `names` pairs each image with that
/// name, `how` says where it goes ("land as", "be served as"), `apart` what keeps them apart.
pub fn one_image_per_name<'a>(
    names: impl IntoIterator<Item = (String, &'a ImageEntry)>,
    how: &str,
    apart: Option<&str>,
) -> Result<()> {
    let mut seen: std::collections::HashMap<String, &ImageEntry> = std::collections::HashMap::new();
    for (name, img) in names {
        if let Some(other) = seen.get(&name).filter(|o| o.digest != img.digest) {
            let apart = apart.map(|a| format!(" ({a})")).unwrap_or_default();
            let msg = format!("would {how} {name}, as image {} (another digest) would{apart}", other.name);
            return Err(Error::bad(format!("image {}", img.name), msg));
        }
        seen.insert(name, img);
    }
    Ok(())
}
