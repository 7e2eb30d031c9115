//! The registry flags `push` and `create` share: TLS, credentials, retries, time bounds.

use std::io::Read;
use std::path::PathBuf;

use airlock::error::Error;
use airlock::registry::ClientOptions;
use clap::builder::TypedValueParser as _;

#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP to a registry that is not on a loopback address
    #[arg(long)]
    pub insecure: bool,
    /// Also trust this CA certificate (PEM)
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// User name for the registry (password from --password-stdin); default: docker's config.json
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password from stdin
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Retries after connection errors, 5xx and 429
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Give up on a registry that has not answered for this long; each connection, answer
    /// and stalled transfer waits at most a quarter of it
    #[arg(long, value_name = "SECS", default_value_t = airlock::registry::DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,
    /// Registry requests in flight at once, for all images together (a 429 lowers it for a while)
    #[arg(long, default_value_t = airlock::transfer::DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    pub jobs: usize,
}

impl RegistryArgs {
    pub fn options(&self) -> airlock::error::Result<ClientOptions> {
        let mut opts = ClientOptions {
            insecure: self.insecure,
            ca_cert: self.ca_cert.clone(),
            username: self.username.clone(),
            max_retries: self.retries,
            timeout: std::time::Duration::from_secs(self.timeout),
            connections: self.jobs,
            ..ClientOptions::default()
        };
        if self.password_stdin {
            let max = airlock::local_file::MAX_PASSWORD_BYTES;
            let mut pw = String::new();
            std::io::stdin().take(max + 1).read_to_string(&mut pw).map_err(|e| Error::io("stdin", e))?;
            if pw.len() as u64 > max {
                return Err(Error::bad("--password-stdin", format!("more than {max} bytes on stdin: not a password")));
            }
            opts.password = Some(pw.trim_end_matches(['\n', '\r']).to_owned());
        }
        Ok(opts)
    }
}
