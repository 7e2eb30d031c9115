//! The signature gate of `verify --cosign-key` and `push --require-cosign-key`: every image of a
//! verified bundle must carry, among its attachments, a cosign signature by one of the given keys
//! over its own digest ([`crate::cosign`] checks each one). Only what the bundle holds is read
//! (the signature manifests and their payloads, small documents), so it runs offline.

use crate::attachments::{Attachment, Kind};
use crate::bundle::format::{BundleIndex, ImageEntry};
use crate::cosign::{self, PublicKey, REFERRER_ARTIFACT_TYPE, Refusal};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Parsed};
use crate::json;

/// Reads a small blob of the bundle whole, verified.
pub type ReadBlob<'a> = &'a dyn Fn(&Digest) -> Result<Vec<u8>>;

/// For each image (in the index's order), the key that signed it; the first image without a
/// valid signature by one of `keys` fails the check with a trust error naming it and why.
pub fn check(index: &BundleIndex, keys: &[PublicKey], read: ReadBlob<'_>, place: &str) -> Result<Vec<String>> {
    index.images.iter().map(|img| signed_by(index, img, keys, read, place)).collect()
}

fn signed_by(
    index: &BundleIndex,
    img: &ImageEntry,
    keys: &[PublicKey],
    read: ReadBlob<'_>,
    place: &str,
) -> Result<String> {
    let mut why = None;
    for a in img.attachments.iter().filter(|a| a.subject == img.digest && is_signature(a)) {
        match check_one(index, a, img, keys, read, place)? {
            Ok(key) => return Ok(key),
            Err(refusal) => why = Some(refusal),
        }
    }
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let reason = match why {
        None => "carries no cosign signature".to_owned(),
        Some(Refusal::NoKey) => format!("carries cosign signatures, none by {}", names.join(" or ")),
        Some(Refusal::Malformed(m)) => format!("carries no valid cosign signature ({m})"),
        Some(Refusal::OtherDigest(d)) => format!("its cosign signature is over another digest ({d})"),
    };
    Err(Error::trust(format!("{place}: image {} ({}): {reason}", img.name, img.digest)))
}

/// A cosign signature, under cosign's tag or as an OCI 1.1 referrer.
fn is_signature(a: &Attachment) -> bool {
    a.kind == Kind::CosignSignature
        || (a.kind == Kind::Referrer && a.artifact_type.as_deref() == Some(REFERRER_ARTIFACT_TYPE))
}

/// Checks each simple-signing layer of one signature manifest; the first that vouches wins.
fn check_one(
    index: &BundleIndex,
    a: &Attachment,
    img: &ImageEntry,
    keys: &[PublicKey],
    read: ReadBlob<'_>,
    place: &str,
) -> Result<std::result::Result<String, Refusal>> {
    let at = format!("{place}: image {}: signature {}", img.name, a.digest);
    let bytes = read(&a.digest)?;
    let m = match image::parse_artifact(&bytes, &a.media_type) {
        Ok(Parsed::Manifest(m)) => m,
        Ok(Parsed::Index(_)) => return Ok(Err(Refusal::Malformed("an index, not a signature manifest".into()))),
        Err(e) => return Err(Error::integrity(at, e)),
    };
    let mut last = Refusal::Malformed("no simple-signing layer with a signature".into());
    for (layer, signature) in cosign::signed_layers(&m) {
        let small = index.blobs.iter().any(|b| b.digest == *layer && b.size <= json::MAX_JSON_BYTES);
        if !small {
            last = Refusal::Malformed(format!("payload {layer} is missing or too large"));
            continue;
        }
        match cosign::check(keys, &read(layer)?, signature, &img.digest) {
            Ok(key) => return Ok(Ok(key.to_owned())),
            Err(refusal) => last = refusal,
        }
    }
    Ok(Err(last))
}
