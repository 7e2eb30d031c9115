//! The `keygen` operation: a new minisign key pair written as `PREFIX.key` (secret, mode 0600)
//! and `PREFIX.pub`, each file appearing whole or not at all ([`AtomicFile`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicFile;
use crate::bundle::sign;
use crate::error::{Error, IoContext, Result};

pub struct KeygenOptions {
    /// Writes `PREFIX.key` and `PREFIX.pub`.
    pub prefix: PathBuf,
    /// Overwrite existing key files.
    pub force: bool,
}

/// The key pair written.
pub struct Generated {
    pub key_id: String,
    pub secret: PathBuf,
    pub public: PathBuf,
}

/// Refuses existing key files (unless forced) before asking for a password: `password` is called
/// only then, and `None` from it leaves the secret key unencrypted.
pub fn keygen(opts: &KeygenOptions, password: impl FnOnce() -> Result<Option<String>>) -> Result<Generated> {
    let secret = with_ext(&opts.prefix, "key");
    let public = with_ext(&opts.prefix, "pub");
    for p in [&secret, &public] {
        if p.exists() && !opts.force {
            return Err(Error::bad(p.display().to_string(), "already exists (use --force to overwrite)"));
        }
    }
    let keys = sign::generate(password()?)?;
    write_file(&secret, keys.secret_box.as_bytes(), 0o600)?;
    write_file(&public, keys.public_box.as_bytes(), 0o644)?;
    Ok(Generated { key_id: keys.key_id, secret, public })
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let out = AtomicFile::create(path)?;
    let mut file = out.file();
    file.write_all(bytes).at(|| out.place())?;
    out.commit(mode)?;
    Ok(())
}
