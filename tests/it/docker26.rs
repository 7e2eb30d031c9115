//! What today's Docker hands airlock: `docker save` from Docker 25+ (graphdriver store: an OCI
//! layout around uncompressed layers; containerd image store: an image index of which only the
//! pulled platforms are present) and `ctr images export --platform`.

use serde_json::Value;

use crate::common::{EXIT_BAD_INPUT, Env, fixture, fixture_str, image, signed_index};

/// The media types of every blob of a bundle, by digest.
fn media_types(index: &Value) -> Vec<(String, String)> {
    let blobs = index["blobs"].as_array().unwrap();
    blobs.iter().map(|b| (b["digest"].as_str().unwrap().into(), b["mediaType"].as_str().unwrap().into())).collect()
}

/// A file of a tar, read whole.
fn tar_file(tar: &std::path::Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(tar).unwrap());
    let mut entry =
        ar.entries().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap().to_str() == Some(name)).unwrap();
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut buf).unwrap();
    buf
}

fn size(env: &Env, name: &str) -> u64 {
    std::fs::metadata(env.path(name)).unwrap().len()
}

#[test]
fn a_docker25_save_makes_a_bundle_as_small_as_a_legacy_save_with_the_same_image_ids() {
    let env = Env::new();
    env.keygen("ops");
    for (out, save) in [("legacy.tar", "legacy-save.tar"), ("d25.tar", "docker25-save.tar")] {
        env.run(&["create", "-k", "ops.key", "-o", out, &format!("docker-archive:{}", fixture_str(save))]).ok();
        env.run(&["verify", "-p", "ops.pub", out]).ok();
    }
    assert!(
        size(&env, "d25.tar") <= size(&env, "legacy.tar") + size(&env, "legacy.tar") / 100,
        "Docker 25+ bundle {} bytes, legacy {} bytes",
        size(&env, "d25.tar"),
        size(&env, "legacy.tar")
    );
    let (legacy, d25) = (signed_index(&env, "legacy.tar"), signed_index(&env, "d25.tar"));
    let layers: Vec<String> =
        media_types(&d25).into_iter().filter(|(_, t)| t.contains("layer")).map(|(_, t)| t).collect();
    assert_eq!(layers, ["application/vnd.oci.image.layer.v1.tar+gzip"; 2], "both distinct layers compressed");
    // Same configs (image IDs), same compressed layers: the same blobs as from the legacy save.
    assert_eq!(media_types(&d25), media_types(&legacy));
    let docker_manifest: Value =
        serde_json::from_slice(&tar_file(&fixture("docker25-save.tar"), "manifest.json")).unwrap();
    for entry in docker_manifest.as_array().unwrap() {
        let id = entry["Config"].as_str().unwrap().replace("blobs/sha256/", "sha256:");
        assert!(media_types(&d25).iter().any(|(d, _)| *d == id), "config {id} kept, so the image ID holds");
    }
}

#[test]
fn compression_none_keeps_a_docker25_saves_manifests_byte_for_byte() {
    let env = Env::new();
    env.keygen("ops");
    let src = format!("docker-archive:{}", fixture_str("docker25-save.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--compression", "none", &src]).ok();
    let saved: Value = serde_json::from_slice(&tar_file(&fixture("docker25-save.tar"), "index.json")).unwrap();
    let index = signed_index(&env, "b.tar");
    for entry in saved["manifests"].as_array().unwrap() {
        let name = entry["annotations"]["io.containerd.image.name"].as_str().unwrap();
        assert_eq!(image(&index, name)["digest"], entry["digest"], "{name} keeps docker's manifest");
    }
}

/// `multiarch.oci.tar` unpacked into `dir` without its arm64 manifest, as `ctr images export
/// --platform linux/amd64` leaves a multi-platform image; returns the index digest.
fn layout_without_arm64(dir: &std::path::Path) -> String {
    tar::Archive::new(std::fs::File::open(fixture("multiarch.oci.tar")).unwrap()).unpack(dir).unwrap();
    let top: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = top["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blob = |d: &str| dir.join("blobs/sha256").join(&d[7..]);
    let index: Value = serde_json::from_slice(&std::fs::read(blob(&digest)).unwrap()).unwrap();
    let arm = index["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == "arm64");
    std::fs::remove_file(blob(arm.unwrap()["digest"].as_str().unwrap())).unwrap();
    digest
}

#[test]
fn platforms_a_layout_does_not_hold_are_left_out_with_a_notice_and_the_index_digest_recorded() {
    let env = Env::new();
    env.keygen("ops");
    let original = layout_without_arm64(&env.path("layout"));
    let src = format!("oci:{}", env.path("layout").display());
    let run = env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    assert!(run.stderr.contains("left out linux/arm64"), "{}", run.stderr);
    let index = signed_index(&env, "b.tar");
    let multi = image(&index, "registry.example/team/multi:2.0");
    assert_eq!(multi["platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(multi["filteredFrom"], original.as_str());
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();

    env.run(&["create", "-k", "ops.key", "-o", "arm.tar", "--platform", "linux/arm64", &src]).fails(
        EXIT_BAD_INPUT,
        &["registry.example/team/multi:2.0", "linux/arm64 manifest", "not in this source", "--platform"],
    );
    assert!(!env.path("arm.tar").exists());
}
