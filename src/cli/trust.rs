//! The flags every command that reads a bundle shares: which public key it must be signed with.

use std::path::PathBuf;

use airlock::bundle::reader::Trust;
use airlock::bundle::sign::PublicKey;
use airlock::error::Error;

#[derive(clap::Args)]
pub struct TrustArgs {
    /// Public key the bundle must be signed with (minisign format)
    #[arg(short = 'p', long = "public-key", value_name = "FILE", required_unless_present = "insecure_no_signature")]
    public_key: Option<PathBuf>,
    /// Do not check the signature (contents are still checked against the unsigned index)
    #[arg(long, conflicts_with = "public_key")]
    insecure_no_signature: bool,
}

impl TrustArgs {
    pub fn load(&self) -> airlock::error::Result<Option<PublicKey>> {
        let Some(p) = &self.public_key else { return Ok(None) };
        let place = p.display().to_string();
        let text = read_key(p, "a minisign public key")?;
        Ok(Some(PublicKey::from_box(&place, &text)?))
    }
}

/// Reads a key file, size-capped before it is read; a key that cannot be read is a trust failure.
pub fn read_key(path: &std::path::Path, what: &str) -> airlock::error::Result<String> {
    airlock::local_file::read_text(path, airlock::local_file::MAX_KEY_BYTES, what).map_err(|e| match e {
        Error::BadInput { place, msg } => Error::trust(format!("{place}: {msg}")),
        other => other,
    })
}

/// The trust level for a loaded key (`None`: `--insecure-no-signature`).
pub fn trust(key: &Option<PublicKey>) -> Trust<'_> {
    key.as_ref().map_or(Trust::Insecure, Trust::Key)
}
