//! TLS for `airlock serve`: a certificate chain and key from PEM files, or a private CA and a
//! server certificate generated for quick starts (`--self-signed DIR`). rustls with the ring
//! provider (the one ureq already brings), HTTP/1.1 only.
//!
//! A generated CA is kept in DIR and reused on later starts, so clients that were given `ca.crt`
//! once keep trusting the server; the server certificate is issued again each start for the names
//! asked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
pub use tokio_rustls::rustls::ServerConfig;

use crate::atomic::AtomicFile;
use crate::error::{Error, IoContext, Result};
use crate::local_file;

/// The largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A server configuration from a PEM certificate chain (server first) and its private key.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let certs = read_pem(cert, "a PEM certificate chain")?;
    let chain = CertificateDer::pem_slice_iter(certs.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::bad(cert.display().to_string(), format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(Error::bad(cert.display().to_string(), "holds no CERTIFICATE block"));
    }
    let key_pem = read_pem(key, "a PEM private key")?;
    let private = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::bad(key.display().to_string(), format!("not a PEM private key: {e}")))?;
    config(chain, private).map_err(|e| Error::bad(cert.display().to_string(), format!("unusable with its key: {e}")))
}

fn read_pem(path: &Path, what: &str) -> Result<String> {
    local_file::read_text(path, MAX_PEM_BYTES, what)
}

fn config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> std::result::Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The files `--self-signed DIR` holds.
pub struct SelfSigned {
    /// The CA certificate clients are to trust.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether the CA was made now (rather than reused).
    pub new_ca: bool,
}

/// Makes (or reuses) a CA in `dir` and issues a server certificate for `names` (host names or IP
/// addresses) from it.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<SelfSigned> {
    let place = |f: &str| dir.join(f).display().to_string();
    fs_err::create_dir_all(dir).at(|| dir.display().to_string())?;
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let bad = |f: &str, e: rcgen::Error| Error::bad(place(f), e.to_string());
    let new_ca = !ca_cert.exists();
    let (ca_pem, ca_key_pem) = if new_ca {
        let key = rcgen::KeyPair::generate().map_err(|e| bad("ca.key", e))?;
        let cert = ca_params().self_signed(&key).map_err(|e| bad("ca.crt", e))?;
        write(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write(&ca_cert, cert.pem().as_bytes(), 0o644)?;
        (cert.pem(), key.serialize_pem())
    } else {
        (read_pem(&ca_cert, "a PEM CA certificate")?, read_pem(&ca_key, "a PEM CA key")?)
    };
    let ca_key_pair = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(|e| bad("ca.key", e))?;
    // The CA is described by the same parameters every time, so its name and key identifier match.
    let issuer = rcgen::Issuer::new(ca_params(), ca_key_pair);
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| Error::bad("--self-signed", e.to_string()))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, names.first().map_or("airlock serve", |n| n.as_str()));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, 1);
    let key = rcgen::KeyPair::generate().map_err(|e| bad("server.key", e))?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| bad("server.crt", e))?;
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write(&cert_path, format!("{}{ca_pem}", cert.pem()).as_bytes(), 0o644)?;
    Ok(SelfSigned { ca: ca_cert, cert: cert_path, key: key_path, new_ca })
}

fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "airlock serve CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    set_validity(&mut params, 10);
    params
}

/// Valid from yesterday (a client's clock a little behind) for `years`.
fn set_validity(params: &mut rcgen::CertificateParams, years: i32) {
    let yesterday = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    let day = humantime::format_rfc3339_seconds(yesterday).to_string();
    let num = |r: std::ops::Range<usize>| day.get(r).and_then(|s| s.parse::<u16>().ok()).unwrap_or(1);
    let (y, m, d) = (i32::from(num(0..4)), num(5..7) as u8, num(8..10) as u8);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + years, m, d.min(28));
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let out = AtomicFile::create(path)?;
    out.file().write_all(bytes).at(|| out.place())?;
    out.commit(mode)?;
    Ok(())
}
