//! A single layer over 8 GiB, as machine-learning images carry: the bundle stores its size in
//! tar's base-256 form, GNU tar and Python's tarfile list the right size, `verify` passes and the
//! layer pushes intact into the real registry, as skopeo reports it. The layer is a sparse file of
//! zeros in an OCI layout made here, so the test costs reading 8.5 GiB a few times, not the disk
//! (the bundle writer leaves zeros as holes; the registry's copy is removed with it).

use sha2::{Digest as _, Sha256};

use crate::common::{Env, Peer, Registry, skip_without, tool};

const SIZE: u64 = (8 << 30) + (512 << 20);
const NAME: &str = "example.com/big/layer:1";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `n` zero bytes, without reading a file.
fn zeros_digest(n: u64) -> String {
    let zeros = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    for _ in 0..n / zeros.len() as u64 {
        h.update(&zeros);
    }
    h.update(&zeros[..(n % zeros.len() as u64) as usize]);
    hex(&h.finalize())
}

/// Writes blob `bytes` into `dir`'s OCI layout; returns its descriptor.
fn blob(dir: &std::path::Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let d = hex(&Sha256::digest(bytes));
    std::fs::write(dir.join("blobs/sha256").join(&d), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{d}"), "size": bytes.len()})
}

/// An OCI layout whose one image has one uncompressed layer of `SIZE` zero bytes (sparse).
fn layout(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let layer = zeros_digest(SIZE);
    std::fs::File::create(dir.join("blobs/sha256").join(&layer)).unwrap().set_len(SIZE).unwrap();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer}")]}});
    let config = blob(dir, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": format!("sha256:{layer}"), "size": SIZE}]});
    let mut manifest = blob(dir, "application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
    manifest["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layer
}

#[test]
fn a_layer_over_8_gib_bundles_lists_with_its_size_verifies_and_pushes_intact() {
    if skip_without(&[Peer::Registry, Peer::Skopeo, Peer::Python]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let start = std::time::Instant::now();
    let stage = |what: &str| eprintln!("big_layer: {what} at {:.1} s", start.elapsed().as_secs_f64());
    let layer = layout(&env.path("layout"));
    stage("layout made");
    let source = format!("oci:{}:1={NAME}", env.path("layout").display());
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--compression", "none", &source]).ok();
    std::fs::remove_dir_all(env.path("layout")).unwrap();
    stage("created");
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    stage("verified");

    let entry = format!("blobs/sha256/{layer}");
    let gnu = tool("tar", &["tvf", env.path("b.tar").to_str().unwrap()], &[]);
    let line = gnu.stdout.lines().find(|l| l.ends_with(&entry)).unwrap_or_else(|| panic!("GNU tar: {}", gnu.stdout));
    assert!(line.split_whitespace().any(|w| w == SIZE.to_string()), "GNU tar lists {line}");
    let script = "import sys, tarfile\nfor m in tarfile.open(sys.argv[1]): print(m.name, m.size)";
    let py = tool("python3", &["-c", script, env.path("b.tar").to_str().unwrap()], &[]);
    assert!(py.stdout.lines().any(|l| l == format!("{entry} {SIZE}")), "tarfile lists:\n{}{}", py.stdout, py.stderr);

    let reg = Registry::start(&[]);
    let to = format!("{}/mirror", reg.host);
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to]).ok();
    std::fs::remove_file(env.path("b.tar")).unwrap();
    stage("pushed");
    let image = format!("docker://{}/mirror/big/layer:1", reg.host);
    let raw = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &image], &[]);
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    let manifest: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(manifest["layers"][0]["digest"], format!("sha256:{layer}"), "{manifest}");
    assert_eq!(manifest["layers"][0]["size"], SIZE, "{manifest}");
    let url = format!("http://{}/v2/mirror/big/layer/blobs/sha256:{layer}", reg.host);
    let head = tool("curl", &["-sfI", &url], &[]);
    let length = head
        .stdout
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()));
    assert_eq!(length, Some(SIZE.to_string()), "the registry serves the layer with its size:\n{}", head.stdout);
}
