//! `airlock keygen`: flags → [`airlock::ops::keygen`]; the new key's password asked on the
//! terminal (or taken from AIRLOCK_KEY_PASSWORD) unless `--no-password`.

use std::io::IsTerminal;
use std::path::PathBuf;

use airlock::bundle::sign::PASSWORD_ENV;
use airlock::error::Error;
use airlock::ops::keygen::{self, KeygenOptions};
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
    let opts = KeygenOptions { prefix: args.output, force: args.force };
    let keys = keygen::keygen(&opts, || if args.no_password { Ok(None) } else { new_password().map(Some) })?;
    say!("key id {}: secret key {}, public key {}", keys.key_id, keys.secret.display(), keys.public.display());
    Ok(())
}

/// The new key's password: from AIRLOCK_KEY_PASSWORD, else asked twice on the terminal.
fn new_password() -> airlock::error::Result<String> {
    if let Ok(pw) = std::env::var(PASSWORD_ENV) {
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::trust(format!("no password: set {PASSWORD_ENV}, run on a terminal, or pass --no-password")));
    }
    let prompt = |text: &str| rpassword::prompt_password(text).map_err(|e| Error::io("terminal", e));
    let a = prompt("Password for the new secret key: ")?;
    let b = prompt("Password (again): ")?;
    if a != b {
        return Err(Error::trust("passwords do not match"));
    }
    Ok(a)
}
