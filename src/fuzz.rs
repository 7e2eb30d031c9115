//! Entry points for fuzzing: each feeds arbitrary bytes to one parser of untrusted input and
//! returns, whatever the bytes; a panic, a hang or unbounded memory is the bug being looked for.
//!
//! The cargo-fuzz targets in `fuzz/` call these, and so does the integration test that replays
//! the committed corpus (`tests/it/fuzz_corpus.rs`), so a crash found once stays caught on stable
//! Rust in every CI run. Parsers that read files (tar stores, bundles opened for random access,
//! image lists) are given the bytes through a file in a per-process temporary directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::bundle::format::BundleIndex;
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::{self, Trust};
use crate::bundle::sign::{PublicKey, SecretKey};
use crate::error::Error;
use crate::image::{self, Platform};
use crate::json;
use crate::plan::Collection;
use crate::reference::Reference;
use crate::registry::ClientOptions;
use crate::source::list as image_list;
use crate::source::registry::Registries;
use crate::source::stage::{Compression, Stager};
use crate::source::{self, ReadOptions, SourceSpec, Transport};

/// One target: it takes any bytes and returns; it panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target by name: the name is the cargo-fuzz target and the corpus directory
/// `fuzz/corpus/NAME`.
pub const TARGETS: &[(&str, Target)] = &[
    ("bundle_reader", bundle_reader),
    ("tar_store", tar_store),
    ("json", json),
    ("image", image),
    ("reference", reference),
    ("minisign", minisign),
    ("image_list", image_list),
    ("part_list", part_list),
    ("index_file", index_file),
    ("serve_routes", serve_routes),
    ("daemon_http", daemon_http),
    ("registry_header", registry_header),
];

/// A bundle read from a stream (`verify`, `load`, `export`) and opened for random access
/// (`push`), both without a signature check so the fuzzer reaches the entries and manifests.
pub fn bundle_reader(data: &[u8]) {
    let _ = reader::read_index(data, "fuzz");
    let _ = reader::read(data, "fuzz", Trust::Insecure, &mut |_| Ok(()), &mut |_, r| {
        std::io::copy(r, &mut std::io::sink()).map(drop).map_err(|e| Error::io("fuzz", e))
    });
    let file = scratch_file("bundle.tar", data);
    let opened = crate::volume::input::Volumes::file(&file).map(std::sync::Arc::new);
    if let Ok(bundle) = opened.and_then(|v| IndexedBundle::open(v, Trust::Insecure)) {
        for blob in &bundle.index().blobs {
            if let Ok(mut r) = bundle.open_blob(&blob.digest) {
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
        }
    }
}

/// A source archive: the tar store's scan, every file it lists, then the archive read as an
/// `oci-archive:` and as a `docker-archive:` source (manifest.json, index.json, manifests, configs).
pub fn tar_store(data: &[u8]) {
    use crate::source::store::{Store, TarStore};
    let file = scratch_file("source.tar", data);
    let Ok(store) = TarStore::open(&file) else { return };
    for path in store.paths() {
        if let Ok((mut r, _)) = store.open(&path) {
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
    }
    let opts = ReadOptions {
        platforms: Vec::new(),
        skip_missing_platforms: false,
        registries: Arc::new(Registries::new(ClientOptions::default())),
        attachments: crate::attachments::Selection::All,
    };
    let Ok(stager) = Stager::new(scratch_dir(), Compression::None) else { return };
    for transport in ["oci-archive", "docker-archive"] {
        if let Ok(spec) = SourceSpec::parse(&format!("{transport}:{}", file.display())) {
            let _ = source::read(&spec, &opts, &stager, &mut Collection::default());
        }
    }
}

/// The strict JSON reader: no duplicate keys, bounded depth.
pub fn json(data: &[u8]) {
    if json::parse(data).is_ok() {
        // The strict reader only narrows what serde_json accepts.
        assert!(
            serde_json::from_slice::<serde_json::Value>(data).is_ok(),
            "strict JSON accepted what serde_json refuses"
        );
    }
    let _ = json::read_limited(data, 64);
}

/// Manifests, indexes and configs as a source or a registry hands them over, and the signed
/// bundle index.
pub fn image(data: &[u8]) {
    for media_type in
        [image::OCI_MANIFEST, image::OCI_INDEX, image::DOCKER_MANIFEST, image::DOCKER_LIST, "application/octet-stream"]
    {
        let _ = image::parse_manifest(data, media_type);
    }
    if let Ok(config) = image::parse_config(data) {
        let _ = config.platform().map(|p| p.to_string());
    }
    let _ = BundleIndex::parse("fuzz", data);
}

/// Image references, platforms and source specs: what users, lists and archives name images with.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(text) {
        let again = Reference::parse(&r.to_string()).expect("a parsed reference's own spelling parses");
        assert_eq!(again, r, "a reference survives printing and parsing again");
        let familiar = Reference::parse(&r.familiar()).expect("the familiar name parses");
        assert_eq!(familiar.name(), r.name(), "the familiar name names the same repository");
    }
    if let Ok(p) = Platform::parse(text) {
        assert_eq!(Platform::parse(&p.to_string()).ok(), Some(p), "a platform survives printing and parsing");
    }
    // Without a transport, a spec naming an existing file opens it to guess its format: keep the
    // fuzzer off the host's files (`/proc/kcore`) by giving it only specs that cannot name one.
    let transport = text.split_once(':').map(|(t, _)| t);
    let named = Transport::ALL.iter().any(|t| transport == Some(t.prefix()));
    if named || !text.contains(['/', '.']) {
        let _ = SourceSpec::parse(text);
    }
}

/// minisign public keys, secret keys (unencrypted; an encrypted one stops at the password) and
/// signatures over a bundle index.
pub fn minisign(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = PublicKey::from_box("fuzz", &text);
    let _ = SecretKey::from_box("fuzz", &text, || Err(Error::trust("no password while fuzzing")));
    let _ = fixed_key().verify(b"{}", &text);
}

/// Image list files: plain lines, Hauler and mindthegap YAML.
pub fn image_list(data: &[u8]) {
    let _ = image_list::read(&scratch_file("images.txt", data), image_list::Allow::Local);
}

/// A key made once by `minisign -G -W`; fuzz/corpus/minisign holds its signature over `{}`.
fn fixed_key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| PublicKey::from_box("fuzz", FIXED_PUBLIC_KEY).expect("the fixed key parses"))
}

const FIXED_PUBLIC_KEY: &str = "untrusted comment: minisign public key E08BED5304D6E363\nRWRj49YEU+2L4Loa5fRti4zaR84jBfowc5qwVHBuAzM/7Md9rRzMXLyV\n";

/// A split bundle's part list (`OUT.parts`), unsigned so the fuzzer reaches the shape checks.
pub fn part_list(data: &[u8]) {
    if let Ok(list) = crate::volume::list::PartList::parse("fuzz", data) {
        let _ = list.all().count();
    }
}

/// An `airlock index` file (or a bundle's head) read as the base of a delta, then rewritten by
/// `airlock index`.
pub fn index_file(data: &[u8]) {
    let _ = crate::bundle::delta::Base::from_reader(data, "fuzz", Trust::Insecure);
    let out = scratch_dir().join("index.out");
    let _ = crate::bundle::delta::write_index_file(data, "fuzz", &out);
}

/// `airlock serve`'s request routing: a request target (path and query) as a client sends it, and
/// the same bytes as a `Range` header against a blob of 1000 bytes.
pub fn serve_routes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::serve::routes::parse(&text);
    let _ = crate::serve::api::parse_range(&text, 1000);
}

/// A Docker Engine's answer, as `airlock load` reads it (`POST /images/load`: status, headers,
/// a chunked or plain body of JSON lines) and as the `docker-daemon:` source does
/// (`GET /images/get`: the archive copied out, or the refusal's message).
pub fn daemon_http(data: &[u8]) {
    let _ = crate::daemon::read_response(data, "fuzz");
    let _ = crate::daemon::read_saved(data, "fuzz", &["fuzz".to_owned()], &mut std::io::sink());
}

/// One header value a registry sends, read as a `WWW-Authenticate` challenge, a `Link` to the
/// next page and a `Location` (resolved, then judged by the scheme and credential rules).
pub fn registry_header(data: &[u8]) {
    crate::registry::fuzz_header(&String::from_utf8_lossy(data));
}

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory for fuzzing")).path()
}

/// Writes `data` to a file named for the calling thread, so parallel replays do not collide.
fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(format!("{:?}-{name}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&path, data).expect("write a fuzz input to the scratch directory");
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The minisign target reaches a signature that verifies, not only ones that fail to parse.
    #[test]
    fn the_fixed_key_verifies_its_committed_signature() {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/keys");
        let sig = std::fs::read_to_string(keys.join("empty-object.minisig")).unwrap();
        assert_eq!(fixed_key().verify(b"{}", &sig).unwrap(), "fuzz trusted comment");
        assert_eq!(std::fs::read_to_string(keys.join("fuzz.pub")).unwrap(), FIXED_PUBLIC_KEY);
    }
}
