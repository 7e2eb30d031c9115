//! `--check-layers`: layers whose content does not match their config's diff_id are found before
//! the trip (create) or before the push (verify); without the flag neither decompresses anything.
//! Image manifests whose "layers" are not layers are refused; artifacts pass untouched.

use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::common::{EXIT_BAD_INPUT, EXIT_INTEGRITY, Env};

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// An OCI layout of `example.com/check/app:1`: one layer `blob` of `media_type` whose config
/// claims `diff_id`.
fn layout(dir: &Path, blob: &[u8], media_type: &str, diff_id: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        std::fs::write(blobs.join(&sha(bytes)[7..]), bytes).unwrap();
        json!({"digest": sha(bytes), "size": bytes.len()})
    };
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    let mut c = put(config.to_string().as_bytes());
    c["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let mut l = put(blob);
    l["mediaType"] = json!(media_type);
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": c, "layers": [l]});
    let mut m = put(manifest.to_string().as_bytes());
    m["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    m["annotations"] = json!({"org.opencontainers.image.ref.name": "example.com/check/app:1"});
    std::fs::write(dir.join("index.json"), json!({"schemaVersion": 2, "manifests": [m]}).to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[test]
fn check_layers_finds_a_layer_that_does_not_match_its_diff_id() {
    let env = Env::new();
    env.keygen("ops");
    let content = vec![7u8; 10_240];
    layout(&env.path("bad"), &gzip(&content), GZIP_LAYER, &sha(b"something else"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--check-layers", "oci:bad"])
        .fails(EXIT_INTEGRITY, &["b.tar: layer sha256:", "not to its diff_id"]);
    assert!(!env.listing().iter().any(|f| f.starts_with("b.tar") || f.starts_with(".airlock")), "{:?}", env.listing());

    // Without the flag the layer is carried as signed; verify finds it only when asked.
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "oci:bad"]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    env.run(&["verify", "-p", "ops.pub", "--check-layers", "b.tar"])
        .fails(EXIT_INTEGRITY, &["b.tar: layer sha256:", "decompresses to", "not to its diff_id"]);
    env.run_with_stdin(&["verify", "-p", "ops.pub", "--check-layers", "-"], b"")
        .fails(EXIT_BAD_INPUT, &["--check-layers", "not stdin"]);
}

#[test]
fn check_layers_refuses_trailing_bytes_after_a_gzip_layer() {
    let env = Env::new();
    env.keygen("ops");
    let content = vec![1u8; 10_240];
    let blob = [gzip(&content), b"trailing".to_vec()].concat();
    layout(&env.path("tail"), &blob, GZIP_LAYER, &sha(&content));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "oci:tail"]).ok();
    env.run(&["verify", "-p", "ops.pub", "--check-layers", "b.tar"]).fails(EXIT_INTEGRITY, &["not valid gzip"]);
}

#[test]
fn check_layers_passes_good_bundles_and_says_so() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let run = env.run(&["verify", "-p", "ops.pub", "--check-layers", "b.tar"]).ok();
    assert!(
        run.stdout.contains("layers decompressed") && run.stdout.contains("each matches its diff_id"),
        "{}",
        run.stdout
    );
    let run = env.run(&["verify", "-p", "ops.pub", "--check-layers", "--json", "b.tar"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(doc["layerContent"]["layers"].as_u64().unwrap() > 0, "{}", run.stdout);
    let legacy = format!("docker-archive:{}", crate::common::fixture_str("legacy-save.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "c.tar", "--check-layers", "--compression", "zstd", &legacy]).ok();
}

#[test]
fn an_image_manifest_whose_layer_is_not_a_layer_is_refused() {
    let env = Env::new();
    env.keygen("ops");
    let content = b"{}".to_vec();
    layout(&env.path("odd"), &content, "application/vnd.oci.image.index.v1+json", &sha(&content));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "oci:odd"]).fails(EXIT_BAD_INPUT, &["not a layer type"]);
}
