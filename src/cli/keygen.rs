//! `airlock keygen`: a minisign key pair, the secret key password-protected unless told otherwise.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use airlock::bundle::sign::{self, PASSWORD_ENV};
use airlock::error::Error;
use anyhow::Result;

/// `--help` ends with these (the README's examples).
const EXAMPLES: &str = "\
Examples:
  airlock keygen -o ops                  # ops.key (secret, password-protected) + ops.pub
  airlock keygen --no-password -o ci     # an unencrypted key for automation";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct KeygenArgs {
    /// Output prefix: writes PREFIX.key (secret) and PREFIX.pub (public)
    #[arg(short, long, value_name = "PREFIX")]
    output: PathBuf,
    /// Leave the secret key unencrypted (for automation)
    #[arg(long)]
    no_password: bool,
    /// Overwrite existing key files
    #[arg(long)]
    force: bool,
}

pub fn run(args: KeygenArgs) -> Result<()> {
    let sk_path = with_ext(&args.output, "key");
    let pk_path = with_ext(&args.output, "pub");
    for p in [&sk_path, &pk_path] {
        if p.exists() && !args.force {
            return Err(Error::bad(p.display().to_string(), "already exists (use --force to overwrite)").into());
        }
    }
    let password = if args.no_password { None } else { Some(new_password()?) };
    let keys = sign::generate(password)?;
    write_private(&sk_path, keys.secret_box.as_bytes())?;
    write_file(&pk_path, keys.public_box.as_bytes(), 0o644)?;
    println!("key id {}: secret key {}, public key {}", keys.key_id, sk_path.display(), pk_path.display());
    Ok(())
}

fn with_ext(prefix: &std::path::Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn new_password() -> Result<String> {
    if let Ok(pw) = std::env::var(PASSWORD_ENV) {
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            Error::trust(format!("no password: set {PASSWORD_ENV}, run on a terminal, or pass --no-password")).into()
        );
    }
    let a = rpassword::prompt_password("Password for the new secret key: ")?;
    let b = rpassword::prompt_password("Password (again): ")?;
    if a != b {
        return Err(Error::trust("passwords do not match").into());
    }
    Ok(a)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, 0o600)
}

/// Writes through a temporary file in the same directory, then renames.
fn write_file(path: &std::path::Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let place = || path.display().to_string();
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io(place(), e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(place(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(place(), e))?;
    tmp.persist(path).map_err(|e| Error::io(place(), e.error))?;
    Ok(())
}
