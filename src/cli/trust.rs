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
        let text = fs_err::read_to_string(p).map_err(|e| Error::io(&place, e))?;
        Ok(Some(PublicKey::from_box(&place, &text)?))
    }
}

/// The trust level for a loaded key (`None`: `--insecure-no-signature`).
pub fn trust(key: &Option<PublicKey>) -> Trust<'_> {
    key.as_ref().map_or(Trust::Insecure, Trust::Key)
}
