//! `airlock create` as an operator uses it: dedup, naming, platform selection, image lists,
//! compression, keys.

use serde_json::Value;

use crate::common::{EXIT_BAD_INPUT, EXIT_TRUST, Env, fixture_str, image, signed_index};

/// Every entry name of a bundle, in order.
fn entries(env: &Env, bundle: &str) -> Vec<String> {
    let mut ar = tar::Archive::new(std::fs::File::open(env.path(bundle)).unwrap());
    ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn create_stores_a_layer_shared_by_several_images_once() {
    let env = Env::new();
    let run = env.standard_bundle("b.tar").ok();
    assert!(run.stdout.contains("saved"), "{}", run.stdout);
    let index = signed_index(&env, "b.tar");
    let base = image(&index, "example.com/team/base:1.0");
    let web = image(&index, "example.com/team/web:1.4");
    let shared: Vec<&Value> =
        base["blobs"].as_array().unwrap().iter().filter(|b| web["blobs"].as_array().unwrap().contains(b)).collect();
    assert!(!shared.is_empty(), "base and web share their base layer");
    let names = entries(&env, "b.tar");
    for digest in shared {
        let path = format!("blobs/sha256/{}", &digest.as_str().unwrap()[7..]);
        assert_eq!(names.iter().filter(|n| **n == path).count(), 1, "{path} stored once");
    }
    let blob_entries = names.iter().filter(|n| n.starts_with("blobs/")).count();
    assert_eq!(blob_entries, index["blobs"].as_array().unwrap().len());
    assert_eq!(&names[..2], ["airlock.json", "airlock.json.minisig"]);
}

#[test]
fn create_keeps_legacy_configs_byte_for_byte_so_image_ids_hold() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let legacy = tar::Archive::new(std::fs::File::open(crate::common::fixture("legacy-save.tar")).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.len() == 69 && n.ends_with(".json"))
        .map(|n| n[..64].to_owned())
        .collect::<Vec<_>>();
    assert!(!legacy.is_empty());
    let names = entries(&env, "b.tar");
    for id in legacy {
        assert!(names.contains(&format!("blobs/sha256/{id}")), "config {id} kept under its own digest");
    }
}

#[test]
fn a_nameless_oci_tag_is_refused_with_how_to_name_it_and_accepted_when_named() {
    let env = Env::new();
    env.keygen("ops");
    let src = format!("oci:{}:web-1.4", fixture_str("oci-layout"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src])
        .fails(EXIT_BAD_INPUT, &["web-1.4", "=REGISTRY/REPOSITORY:TAG"]);
    assert!(!env.path("b.tar").exists());
    let named = format!("{src}=registry.example/team/web:1.4");
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &named]).ok();
    let index = signed_index(&env, "b.tar");
    image(&index, "registry.example/team/web:1.4");
}

#[test]
fn platform_selection_filters_the_index_and_records_the_original_digest() {
    let env = Env::new();
    env.keygen("ops");
    let src = format!("oci-archive:{}", fixture_str("multiarch.oci.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "all.tar", &src]).ok();
    let all = signed_index(&env, "all.tar");
    let original = image(&all, "registry.example/team/multi:2.0").clone();
    assert_eq!(original["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
    assert!(original.get("filteredFrom").is_none());

    env.run(&["create", "-k", "ops.key", "-o", "arm.tar", "--platform", "linux/arm64", &src]).ok();
    let arm = signed_index(&env, "arm.tar");
    let filtered = image(&arm, "registry.example/team/multi:2.0");
    assert_eq!(filtered["platforms"], serde_json::json!(["linux/arm64"]));
    assert_eq!(filtered["filteredFrom"], original["digest"]);
    assert_ne!(filtered["digest"], original["digest"]);
    assert!(arm["blobs"].as_array().unwrap().len() < all["blobs"].as_array().unwrap().len());
    env.run(&["verify", "-p", "ops.pub", "arm.tar"]).ok();
}

#[test]
fn a_platform_an_image_lacks_is_an_error_naming_both() {
    let env = Env::new();
    env.keygen("ops");
    let src = format!("oci-archive:{}", fixture_str("multiarch.oci.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--platform", "linux/s390x", &src])
        .fails(EXIT_BAD_INPUT, &["registry.example/team/multi:2.0", "linux/s390x", "linux/arm64"]);
    assert!(!env.path("b.tar").exists());
}

#[test]
fn an_image_list_file_is_read_with_comments_and_bad_lines_are_pointed_at() {
    let env = Env::new();
    env.keygen("ops");
    let list = format!(
        "# the tools\n\noci-archive:{}\n  docker-archive:{}:example.com/team/web:1.4   # web only\n",
        fixture_str("tools.oci.tar"),
        fixture_str("legacy-save.tar")
    );
    std::fs::write(env.path("images.txt"), list).unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "images.txt"]).ok();
    let index = signed_index(&env, "b.tar");
    let names: Vec<&str> = index["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["example.com/team/web:1.4", "registry.example/tools/busybox:1.36"]);

    std::fs::write(env.path("bad.txt"), "# ok\noci:/nonexistent/dir=Not A Name\n").unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "c.tar", "-f", "bad.txt"]).fails(EXIT_BAD_INPUT, &["bad.txt:2"]);
}

#[test]
fn zstd_compression_applies_to_legacy_layers_and_verifies() {
    let env = Env::new();
    env.keygen("ops");
    let src = format!("docker-archive:{}", fixture_str("legacy-save.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "z.tar", "--compression", "zstd", &src]).ok();
    let index = signed_index(&env, "z.tar");
    let zstd =
        index["blobs"].as_array().unwrap().iter().filter(|b| b["mediaType"].as_str().unwrap().ends_with("+zstd"));
    assert_eq!(zstd.count(), 2, "two distinct legacy layers, each compressed with zstd");
    env.run(&["verify", "-p", "ops.pub", "z.tar"]).ok();
}

#[test]
fn an_encrypted_key_takes_its_password_from_the_environment() {
    let env = Env::new();
    let out = env.cmd().args(["keygen", "-o", "enc"]).env("AIRLOCK_KEY_PASSWORD", "s3cret").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(env.path("enc.key")).unwrap().contains("secret key"));
    let src = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
    let create = |pw: &str| {
        env.cmd()
            .args(["create", "-k", "enc.key", "-o", "b.tar", &src])
            .env("AIRLOCK_KEY_PASSWORD", pw)
            .output()
            .unwrap()
    };
    let wrong = create("wrong");
    assert_eq!(wrong.status.code(), Some(EXIT_TRUST), "{}", String::from_utf8_lossy(&wrong.stderr));
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("enc.key") && said.contains("(the password came from AIRLOCK_KEY_PASSWORD)"), "{said}");
    assert!(!env.path("b.tar").exists());
    assert!(create("s3cret").status.success());
    env.run(&["verify", "-p", "enc.pub", "b.tar"]).ok();
}

#[test]
fn keygen_refuses_to_overwrite_a_key() {
    let env = Env::new();
    env.keygen("ops");
    let before = std::fs::read(env.path("ops.key")).unwrap();
    env.run(&["keygen", "--no-password", "-o", "ops"]).fails(EXIT_BAD_INPUT, &["ops.key", "--force"]);
    assert_eq!(std::fs::read(env.path("ops.key")).unwrap(), before);
}

#[test]
fn a_legacy_docker_save_reuses_a_layer_another_source_carries_compressed() {
    reuses_a_compressed_layer("legacy-save.tar");
}

#[test]
fn a_docker25_save_reuses_a_layer_another_source_carries_compressed() {
    reuses_a_compressed_layer("docker25-save.tar");
}

fn reuses_a_compressed_layer(save: &str) {
    let env = Env::new();
    env.keygen("ops");
    let legacy = format!("docker-archive:{}", fixture_str(save));
    let tools = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
    // docker save first on the command line: the order must not matter.
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &legacy, &tools]).ok();
    let index = signed_index(&env, "b.tar");
    let layer_of = |name: &str| -> Vec<String> {
        let blobs = image(&index, name)["blobs"].as_array().unwrap().clone();
        index["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| blobs.contains(&b["digest"]) && b["mediaType"].as_str().unwrap().contains("layer"))
            .map(|b| b["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let busybox = layer_of("registry.example/tools/busybox:1.36");
    assert_eq!(busybox.len(), 1);
    assert_eq!(layer_of("example.com/team/base:1.0"), busybox, "the legacy base image uses the OCI archive's blob");
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
}

#[test]
fn skip_missing_platforms_takes_what_an_image_has() {
    let env = Env::new();
    env.keygen("ops");
    let src = format!("oci-archive:{}", fixture_str("multiarch.oci.tar"));
    let args =
        ["create", "-k", "ops.key", "-o", "b.tar", "--platform", "linux/arm64", "--platform", "linux/s390x", &src];
    env.run(&args).fails(EXIT_BAD_INPUT, &["linux/s390x", "--skip-missing-platforms"]);
    let mut with_skip = args.to_vec();
    with_skip.push("--skip-missing-platforms");
    env.run(&with_skip).ok();
    let index = signed_index(&env, "b.tar");
    assert_eq!(image(&index, "registry.example/team/multi:2.0")["platforms"], serde_json::json!(["linux/arm64"]));

    // A single-platform image that has none of the requested platforms is refused either way.
    let tools = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
    env.run(&[
        "create",
        "-k",
        "ops.key",
        "-o",
        "c.tar",
        "--platform",
        "linux/arm64",
        "--skip-missing-platforms",
        &tools,
    ])
    .fails(EXIT_BAD_INPUT, &["registry.example/tools/busybox:1.36", "linux/amd64"]);
}
