//! The flags every command that reads a bundle shares: which public key it must be signed with.

use std::path::{Path, PathBuf};

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
    /// The key file; `None` with `--insecure-no-signature`.
    pub fn public_key(&self) -> Option<&Path> {
        self.public_key.as_deref()
    }
}
