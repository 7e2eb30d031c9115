//! cosign's key-based signatures, checked offline: a public key as `cosign generate-key-pair`
//! writes it (PEM `PUBLIC KEY`, ECDSA P-256; Ed25519 keys imported into cosign too), and a
//! "simple signing" signature: a layer of media type
//! `application/vnd.dev.cosign.simplesigning.v1+json` whose bytes are the payload and whose
//! `dev.cosignproject.cosign/signature` annotation holds the base64 signature over them. The
//! payload binds the image's digest (`critical.image.docker-manifest-digest`), not its name, which
//! is why a signature still holds after `push --to` renames the image.
//!
//! Understood: key-based simple signing, ECDSA P-256 with SHA-256 (DER) and Ed25519 (pure, or
//! Ed25519ph as cosign signs with an imported Ed25519 key). Carried but
//! not verified here: keyless signatures (Fulcio certificates), Rekor bundles and timestamps, RSA
//! keys, and attestations (DSSE envelopes); `cosign verify` inside checks those.
//!
//! Crates: RustCrypto's `p256` (ECDSA, SPKI PEM via its `pem` feature) and `ed25519-dalek`
//! (`pkcs8` + `pem`), the same family as the `sha2` airlock hashes with.

use base64::Engine as _;
use serde::Deserialize;

use crate::digest::Digest;
use crate::image::Manifest;
use crate::json;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type of a signature pushed as an OCI 1.1 referrer.
pub const REFERRER_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// A public key file larger than this is refused before it is parsed.
pub const MAX_KEY_BYTES: usize = 16 << 10;

/// A public key cosign signatures are checked against.
pub struct PublicKey {
    /// Where it came from, for messages.
    pub name: String,
    key: Key,
}

enum Key {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Parses a PEM public key (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo).
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        if pem.len() > MAX_KEY_BYTES {
            return Err(format!("larger than {MAX_KEY_BYTES} bytes, not a public key"));
        }
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(PublicKey { name: name.to_owned(), key: Key::P256(k) });
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            return Ok(PublicKey { name: name.to_owned(), key: Key::Ed25519(k) });
        }
        let why = "not a PEM public key airlock understands (ECDSA P-256 or Ed25519, as cosign writes them)";
        Err(match pem.lines().next().unwrap_or("") {
            l if l.contains("PRIVATE KEY") => format!("{why}: it is a private key; give its public half (cosign.pub)"),
            l if l.starts_with("untrusted comment:") => {
                format!("{why}: it is a minisign key (airlock's own, for -p), not a cosign key")
            }
            _ => why.to_owned(),
        })
    }

    /// Whether `signature` (raw bytes: DER for ECDSA) is this key's over `payload`.
    fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        match &self.key {
            Key::P256(k) => p256::ecdsa::Signature::from_der(signature).is_ok_and(|s| k.verify(payload, &s).is_ok()),
            Key::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature).is_ok_and(|s| {
                // cosign signs with an imported Ed25519 key as Ed25519ph (SHA-512 prehash, no
                // context); a signature made elsewhere may be pure Ed25519.
                let prehashed = <sha2::Sha512 as sha2::Digest>::new_with_prefix(payload);
                k.verify(payload, &s).is_ok() || k.verify_prehashed(prehashed, None, &s).is_ok()
            }),
        }
    }
}

/// The simple-signing layers of a signature manifest: (payload layer digest, base64 signature).
pub fn signed_layers(m: &Manifest) -> Vec<(&Digest, &str)> {
    m.layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .filter_map(|l| Some((&l.digest, l.annotation(SIGNATURE_ANNOTATION)?)))
        .collect()
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: SignedImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Why one signature does not vouch for an image.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The signature is no key's over the payload.
    NoKey,
    /// The payload is not a cosign container image signature.
    Malformed(String),
    /// The payload names another digest.
    OtherDigest(String),
}

/// The key (its name) whose signature `signature_b64` over `payload` vouches for `digest`.
pub fn check<'k>(
    keys: &'k [PublicKey],
    payload: &[u8],
    signature_b64: &str,
    digest: &Digest,
) -> Result<&'k str, Refusal> {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| Refusal::Malformed(format!("signature is not base64: {e}")))?;
    let key = keys.iter().find(|k| k.verifies(payload, &signature)).ok_or(Refusal::NoKey)?;
    let p: Payload = json::parse_as(payload).map_err(Refusal::Malformed)?;
    if p.critical.kind != "cosign container image signature" {
        return Err(Refusal::Malformed(format!("payload type is `{}`", p.critical.kind.escape_debug())));
    }
    if p.critical.image.digest != digest.as_str() {
        return Err(Refusal::OtherDigest(p.critical.image.digest.chars().take(80).collect()));
    }
    Ok(&key.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    fn payload(digest: &Digest) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r.example/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
        .into_bytes()
    }

    fn key(seed: u8) -> (p256::ecdsa::SigningKey, PublicKey) {
        let signing = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        (signing, PublicKey::from_pem(&format!("k{seed}.pub"), &pem).unwrap())
    }

    fn sign(k: &p256::ecdsa::SigningKey, payload: &[u8]) -> String {
        let sig: p256::ecdsa::Signature = k.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    #[test]
    fn a_signature_vouches_for_the_digest_its_payload_names_and_no_other() {
        let (signing, public) = key(7);
        let (_, other) = key(9);
        let d = Digest::of_bytes(b"image");
        let p = payload(&d);
        let sig = sign(&signing, &p);
        let keys = [other, public];
        assert_eq!(check(&keys, &p, &sig, &d), Ok("k7.pub"));
        assert_eq!(check(&keys[..1], &p, &sig, &d), Err(Refusal::NoKey));
        let e = Digest::of_bytes(b"another image");
        assert!(matches!(check(&keys, &p, &sig, &e), Err(Refusal::OtherDigest(_))));
        let mut flipped = p.clone();
        flipped[10] ^= 1;
        assert_eq!(check(&keys, &flipped, &sig, &d), Err(Refusal::NoKey));
        assert!(matches!(check(&keys, &p, "not base64!", &d), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused_with_what_is_understood() {
        let e =
            PublicKey::from_pem("k.pub", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").err().unwrap();
        assert!(e.contains("ECDSA P-256 or Ed25519"), "{e}");
        assert!(PublicKey::from_pem("k.pub", &"x".repeat(MAX_KEY_BYTES + 1)).is_err());
    }
}
