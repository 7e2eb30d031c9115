//! minisign keys and signatures over the bundle index.
//!
//! Keys are minisign's own files (made by `airlock keygen` or `minisign -G`). Signing is done here
//! rather than by the `minisign` crate because that crate adds random noise to every signature, and
//! a bundle must be byte-for-byte reproducible from the same inputs and key; plain Ed25519 is
//! deterministic and the stock `minisign -V` accepts it. Verification uses the `minisign` crate, an
//! independent implementation of the same format.

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest as _};
use ed25519_dalek::{Signer, SigningKey};
use minisign::{PublicKeyBox, SecretKeyBox, SignatureBox};

use crate::error::{Error, Result, shown_bytes};

/// Environment variable holding the secret key's password, for automation.
pub const PASSWORD_ENV: &str = "AIRLOCK_KEY_PASSWORD";

/// A decrypted minisign secret key.
pub struct SecretKey {
    keynum: [u8; 8],
    signing: SigningKey,
}

/// A minisign public key.
pub struct PublicKey {
    inner: minisign::PublicKey,
}

/// Key id as minisign prints it (16 upper-case hex digits of the little-endian key number).
fn key_id(keynum: &[u8]) -> String {
    keynum.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// A newly generated key pair, as the two files minisign writes.
pub struct GeneratedKeys {
    pub secret_box: String,
    pub public_box: String,
    pub key_id: String,
}

pub fn generate(password: Option<String>) -> Result<GeneratedKeys> {
    let fail = |e: minisign::PError| Error::trust(format!("key generation failed: {e}"));
    let pair = match password {
        Some(pw) => minisign::KeyPair::generate_encrypted_keypair(Some(pw)).map_err(fail)?,
        None => minisign::KeyPair::generate_unencrypted_keypair().map_err(fail)?,
    };
    let comment = "airlock secret key";
    Ok(GeneratedKeys {
        secret_box: pair.sk.to_box(Some(comment)).map_err(fail)?.into_string(),
        public_box: pair.pk.to_box().map_err(fail)?.into_string(),
        key_id: key_id(pair.pk.keynum()),
    })
}

impl SecretKey {
    /// Reads a minisign secret key file's text. `password` is asked for only when the key is
    /// encrypted; it is called at most once.
    pub fn from_box(place: &str, text: &str, password: impl FnOnce() -> Result<String>) -> Result<Self> {
        let bad = |e: minisign::PError| Error::trust(format!("{place}: not a usable minisign secret key: {e}"));
        // Layout: sig_alg(2) kdf_alg(2) chk_alg(2) salt(32) ops(8) mem(8) keynum(8) sk(64) chk(32)
        let encoded = text.lines().nth(1).map(str::trim).unwrap_or("");
        let raw = B64.decode(encoded).map_err(|_| Error::trust(format!("{place}: not a minisign secret key")))?;
        if raw.len() == 42 {
            let msg = "is a minisign public key, not a secret key: sign with the PREFIX.key `airlock keygen` wrote";
            return Err(Error::trust(format!("{place}: {msg}")));
        }
        if raw.len() != 158 || &raw[0..2] != b"Ed" {
            return Err(Error::trust(format!("{place}: not an Ed25519 minisign secret key")));
        }
        // An unencrypted key (`minisign -G -W`, `keygen --no-password`) is used as it is: minisign
        // writes no checksum into such keys, which the minisign crate refuses; the public-half
        // check below catches a corrupt key instead.
        let raw = if raw[2..4] == [0, 0] {
            raw
        } else {
            let pw = password()?;
            SecretKeyBox::from_string(text).map_err(bad)?.into_secret_key(Some(pw)).map_err(bad)?.to_bytes()
        };
        let keynum: [u8; 8] = raw[54..62].try_into().expect("8 bytes");
        let seed: [u8; 32] = raw[62..94].try_into().expect("32 bytes");
        let signing = SigningKey::from_bytes(&seed);
        if signing.verifying_key().as_bytes() != &raw[94..126] {
            return Err(Error::trust(format!("{place}: secret key is corrupt (public half does not match)")));
        }
        Ok(SecretKey { keynum, signing })
    }

    pub fn key_id(&self) -> String {
        key_id(&self.keynum)
    }

    /// The public half, to check what this key signed before (a delta's bases).
    pub fn public_key(&self) -> PublicKey {
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&self.keynum);
        raw.extend_from_slice(self.signing.verifying_key().as_bytes());
        let text = format!("untrusted comment: airlock public key {}\n{}\n", self.key_id(), B64.encode(raw));
        PublicKey::from_box("the secret key's public half", &text).expect("a valid Ed25519 public key")
    }

    /// A minisign signature file (prehashed Ed25519, "ED") over `data`.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        let prehash = Blake2b512::digest(data);
        let sig = self.signing.sign(&prehash).to_bytes();
        let mut sig_line = Vec::with_capacity(74);
        sig_line.extend_from_slice(b"ED");
        sig_line.extend_from_slice(&self.keynum);
        sig_line.extend_from_slice(&sig);
        let mut global = sig.to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_sig = self.signing.sign(&global).to_bytes();
        format!(
            "untrusted comment: signature from airlock secret key {}\n{}\ntrusted comment: {}\n{}\n",
            self.key_id(),
            B64.encode(sig_line),
            trusted_comment,
            B64.encode(global_sig)
        )
    }
}

impl PublicKey {
    pub fn from_box(place: &str, text: &str) -> Result<Self> {
        // minisign's parser takes any two-byte algorithm; only Ed25519 ("Ed") is a key airlock signs with.
        let encoded = text.lines().nth(1).map(str::trim).unwrap_or("");
        match B64.decode(encoded) {
            Ok(raw) if raw.len() == 42 && &raw[0..2] == b"Ed" => {}
            Ok(raw) if raw.len() == 42 => {
                let alg = shown_bytes(&raw[0..2]);
                return Err(Error::trust(format!("{place}: key algorithm `{alg}` is not Ed25519 (`Ed`)")));
            }
            Ok(raw) if raw.len() == 158 => {
                let msg = "is a minisign secret key, not a public key: give its public half, the PREFIX.pub `airlock keygen` wrote beside it";
                return Err(Error::trust(format!("{place}: {msg}")));
            }
            _ if text.starts_with("-----BEGIN") => {
                let msg = "is a PEM key (cosign's?), not a minisign public key: -p takes the PREFIX.pub \
                           `airlock keygen` wrote; a cosign key goes after --cosign-key";
                return Err(Error::trust(format!("{place}: {msg}")));
            }
            _ => return Err(Error::trust(format!("{place}: not a minisign public key"))),
        }
        let inner = PublicKeyBox::from_string(text)
            .and_then(PublicKeyBox::into_public_key)
            .map_err(|e| Error::trust(format!("{place}: not a minisign public key: {e}")))?;
        Ok(PublicKey { inner })
    }

    pub fn key_id(&self) -> String {
        key_id(self.inner.keynum())
    }

    /// Checks a minisign signature over `data`; returns the trusted comment.
    pub fn verify(&self, data: &[u8], signature: &str) -> Result<String> {
        let sig = SignatureBox::from_string(signature)
            .map_err(|e| Error::trust(format!("signature is not a minisign signature: {e}")))?;
        // The minisign crate slices the global signature (4th line) as 64 bytes without checking
        // its length: a shorter one panics inside `minisign::verify` (found by cargo fuzz).
        let global = signature.lines().nth(3).map(str::trim).unwrap_or_default();
        if B64.decode(global).map_or(true, |g| g.len() != 64) {
            return Err(Error::trust("signature is not a minisign signature: its global signature is not 64 bytes"));
        }
        let sig_id = key_id(sig.keynum());
        if sig_id != self.key_id() {
            return Err(Error::trust(format!(
                "bundle is signed by key {sig_id}, but the public key given is {}",
                self.key_id()
            )));
        }
        minisign::verify(&self.inner, &sig, Cursor::new(data), true, false, false)
            .map_err(|e| Error::trust(format!("signature does not verify with key {}: {e}", self.key_id())))?;
        sig.trusted_comment().map_err(|e| Error::trust(format!("signature has no trusted comment: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (SecretKey, PublicKey) {
        let k = generate(None).unwrap();
        let sk = SecretKey::from_box("k", &k.secret_box, || unreachable!()).unwrap();
        (sk, PublicKey::from_box("k.pub", &k.public_box).unwrap())
    }

    #[test]
    fn signatures_verify_and_are_deterministic() {
        let (sk, pk) = pair();
        let a = sk.sign(b"index", "timestamp:0");
        assert_eq!(a, sk.sign(b"index", "timestamp:0"));
        assert_eq!(pk.verify(b"index", &a).unwrap(), "timestamp:0");
        assert!(pk.verify(b"indey", &a).is_err());
    }

    #[test]
    fn a_different_key_is_named_in_the_error() {
        let (sk, _) = pair();
        let (_, other) = pair();
        let e = other.verify(b"x", &sk.sign(b"x", "c")).unwrap_err().to_string();
        assert!(e.contains(&sk.key_id()), "{e}");
    }

    #[test]
    fn encrypted_keys_need_the_password() {
        let k = generate(Some("pw".into())).unwrap();
        assert!(SecretKey::from_box("k", &k.secret_box, || Ok("pw".into())).is_ok());
        assert!(SecretKey::from_box("k", &k.secret_box, || Ok("nope".into())).is_err());
    }
}
