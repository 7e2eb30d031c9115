//! Values no one should send, sent anyway: times past year 9999, deeply nested lists, lists that
//! smuggle local paths. Each is a clear error (exit 3), never a panic or a long stall.

use std::time::{Duration, Instant};

use crate::common::{EXIT_BAD_INPUT, Env, fixture_str};

fn create_with_created(env: &Env, created: Option<&str>, epoch: Option<&str>) -> crate::common::Run {
    let src = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
    let mut cmd = env.cmd();
    cmd.args(["create", "-k", "ops.key", "-o", "b.tar", &src]);
    if let Some(c) = created {
        cmd.args(["--created", c]);
    }
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    crate::common::Run::from_output(cmd.output().unwrap())
}

#[test]
fn a_creation_time_after_year_9999_is_refused_not_a_panic() {
    let env = Env::new();
    env.keygen("ops");
    for t in ["18446744073709551615", "253402300800", "99999999999999"] {
        create_with_created(&env, Some(t), None).fails(EXIT_BAD_INPUT, &["--created", "after 9999-12-31T23:59:59Z"]);
        create_with_created(&env, None, Some(t))
            .fails(EXIT_BAD_INPUT, &["SOURCE_DATE_EPOCH", "after 9999-12-31T23:59:59Z"]);
    }
    create_with_created(&env, Some("10000-01-01T00:00:00Z"), None).fails(EXIT_BAD_INPUT, &["--created"]);
    assert!(!env.path("b.tar").exists());
    create_with_created(&env, Some("253402300799"), None).ok();
}

#[test]
fn a_deeply_nested_yaml_list_is_refused_at_once() {
    let env = Env::new();
    env.keygen("ops");
    let text = format!("kind: Images\nspec: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    std::fs::write(env.path("deep.yaml"), text).unwrap();
    let start = Instant::now();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "deep.yaml"])
        .fails(EXIT_BAD_INPUT, &["deep.yaml:2", "nested deeper than"]);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
}

#[test]
fn a_hauler_list_names_registry_images_only_unless_local_sources_are_allowed() {
    let env = Env::new();
    env.keygen("ops");
    let list = format!(
        "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nspec:\n  images:\n    - name: \"oci-archive:{}\"\n",
        fixture_str("tools.oci.tar")
    );
    std::fs::write(env.path("hauler.yaml"), list).unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "hauler.yaml"])
        .fails(EXIT_BAD_INPUT, &["hauler.yaml:5", "registry images only", "--file-allow-local"]);
    assert!(!env.path("b.tar").exists());
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--file-allow-local", "hauler.yaml"]).ok();
}

/// An OCI layout of `example.com/odd/app:1` whose one image's config declares `os`/`arch`, and
/// whose index entry declares `index_platform` (if any).
fn layout_with_platform(dir: &std::path::Path, os: &str, arch: &str, index_platform: Option<serde_json::Value>) {
    use serde_json::json;
    use sha2::{Digest as _, Sha256};
    let hex = |b: &[u8]| Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |media_type: &str, bytes: &[u8]| {
        std::fs::write(blobs.join(hex(bytes)), bytes).unwrap();
        json!({"mediaType": media_type, "digest": format!("sha256:{}", hex(bytes)), "size": bytes.len()})
    };
    let layer = put("application/vnd.oci.image.layer.v1.tar", &[0u8; 1024]);
    let config = json!({"architecture": arch, "os": os, "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}});
    let config = put("application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer]});
    let mut m = put("application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
    m["annotations"] = json!({"org.opencontainers.image.ref.name": "example.com/odd/app:1"});
    if let Some(p) = index_platform {
        m["platform"] = p;
    }
    std::fs::write(dir.join("index.json"), json!({"schemaVersion": 2, "manifests": [m]}).to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
fn an_image_whose_platform_is_not_plain_words_is_refused_by_create_not_by_verify() {
    let env = Env::new();
    env.keygen("ops");
    layout_with_platform(&env.path("odd"), "linux", "arm64\u{1b}[2J", None);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "oci:odd"])
        .fails(EXIT_BAD_INPUT, &["image example.com/odd/app:1", "is not os/arch[/variant] of plain words", "\\u{1b}"]);
    assert!(!env.path("b.tar").exists(), "{:?}", env.listing());

    let odd = serde_json::json!({"os": "linux", "architecture": "amd 64"});
    layout_with_platform(&env.path("odd-index"), "linux", "amd64", Some(odd));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "oci:odd-index"])
        .fails(EXIT_BAD_INPUT, &["index.json", "linux/amd 64"]);
    assert!(!env.path("b.tar").exists(), "{:?}", env.listing());

    layout_with_platform(&env.path("plain"), "linux", "arm64", None);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "oci:plain"]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
}
