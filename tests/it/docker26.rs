//! What today's Docker hands airlock: `docker save` from Docker 25+ (graphdriver store: an OCI
//! layout around uncompressed layers; containerd image store: an image index of which only the
//! pulled platforms are present) and `ctr images export --platform`.

use serde_json::Value;

use crate::common::{
    Dockerd, EXIT_BAD_INPUT, Env, Peer, Registry, Run, fixture, fixture_str, image, signed_index, skip_without, tool,
};

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

    // With --skip-missing-platforms the platforms held are taken, as for those an index lacks.
    let both = ["--platform", "linux/arm64", "--platform", "linux/amd64", "--skip-missing-platforms"];
    let run = env.run(&[&["create", "-k", "ops.key", "-o", "skip.tar"][..], &both, &[&src]].concat()).ok();
    assert!(run.stderr.contains("left out linux/arm64"), "{}", run.stderr);
    let skip = signed_index(&env, "skip.tar");
    assert_eq!(image(&skip, "registry.example/team/multi:2.0")["digest"], multi["digest"]);
}

/// The platform a daemon here pulls, and the other one of `multiarch.oci.tar`.
const HOST: &str = if cfg!(target_arch = "aarch64") { "linux/arm64" } else { "linux/amd64" };
const OTHER: &str = if cfg!(target_arch = "aarch64") { "linux/amd64" } else { "linux/arm64" };

/// airlock with DOCKER_HOST set to a daemon.
fn airlock_at(env: &Env, d: &Dockerd, args: &[&str]) -> Run {
    Run::from_output(env.cmd().args(args).env("DOCKER_HOST", &d.host).output().unwrap())
}

/// An image pulled into a dockerd 26 with the containerd store, then `docker save`d.
struct Pulled {
    d: Dockerd,
    _registry: Registry,
    reference: String,
    /// The digest `docker pull` reported (the registry's).
    digest: String,
    save: std::path::PathBuf,
}

/// Pushes an OCI archive's image (every platform) into a registry with skopeo, pulls it into a
/// containerd-store dockerd 26 (which fetches only this host's platform) and saves it; also makes
/// the key `ops`.
fn pulled(env: &Env, archive: &str, image: &str, repo_tag: &str) -> Pulled {
    env.keygen("ops");
    let registry = Registry::start(&[]);
    let reference = format!("{}/{repo_tag}", registry.host);
    let src = format!("oci-archive:{}:{image}", fixture_str(archive));
    let dest = format!("docker://{reference}");
    tool("skopeo", &["copy", "--quiet", "--all", "--dest-tls-verify=false", &src, &dest], &[]).ok();
    let d = Dockerd::start(&["--containerd-store"]);
    let run = d.docker(&["pull", &reference]).ok();
    let digest = run.stdout.lines().find_map(|l| l.strip_prefix("Digest: ")).expect("docker pull names a digest");
    let save = env.path("save.tar");
    d.docker(&["save", "-o", save.to_str().unwrap(), &reference]).ok();
    Pulled { digest: digest.trim().to_owned(), d, _registry: registry, reference, save }
}

#[test]
fn a_docker26_save_bundles_as_small_as_a_docker20_save_and_loads_back_with_the_same_image_ids() {
    if skip_without(&[Peer::Docker26]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let d = Dockerd::start(&[]);
    d.docker(&["load", "-i", &fixture_str("legacy-save.tar")]).ok();
    let tags = ["example.com/team/base:1.0", "example.com/team/web:1.4", "example.com/team/web:latest"];
    let ids = || tags.map(|t| d.docker(&["image", "inspect", "--format", "{{.Id}}", t]).ok().stdout.trim().to_owned());
    let before = ids();
    let save = env.path("d26-save.tar");
    d.docker(&[&["save", "-o", save.to_str().unwrap()][..], &tags].concat()).ok();
    let layout: Value = serde_json::from_slice(&tar_file(&save, "index.json")).unwrap();
    assert_eq!(layout["manifests"].as_array().unwrap().len(), 3, "dockerd 26 writes the OCI layout");

    let legacy = format!("docker-archive:{}", fixture_str("legacy-save.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "d20.tar", &legacy]).ok();
    env.run(&["create", "-k", "ops.key", "-o", "d26.tar", &format!("docker-archive:{}", save.display())]).ok();
    let (d20, d26) = (size(&env, "d20.tar"), size(&env, "d26.tar"));
    assert!(d26 <= d20 + d20 / 100, "Docker 26 save: {d26} bytes, Docker 20.10 save: {d20} bytes");

    d.docker(&[&["rmi"][..], &tags].concat()).ok();
    airlock_at(&env, &d, &["load", "-p", "ops.pub", "d26.tar"]).ok();
    assert_eq!(ids(), before, "docker shows the image IDs it had before docker save");
}

#[test]
fn a_containerd_store_save_of_a_multi_platform_image_keeps_the_pulled_platform_under_its_index_digest() {
    if skip_without(&[Peer::Docker26, Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let Pulled { d, reference, digest: index_digest, save, .. } =
        pulled(&env, "multiarch.oci.tar", "registry.example/team/multi:2.0", "team/multi:2.0");

    let run = env.run(&["create", "-k", "ops.key", "-o", "b.tar", &format!("docker-archive:{}", save.display())]).ok();
    assert!(run.stderr.contains(&format!("left out {OTHER}")), "{}", run.stderr);
    let index = signed_index(&env, "b.tar");
    let saved = image(&index, &reference);
    assert_eq!(saved["platforms"], serde_json::json!([HOST]));
    assert_eq!(saved["filteredFrom"], index_digest.as_str(), "the registry's index digest is recorded");
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();

    let daemon = format!("docker-daemon:{reference}");
    airlock_at(&env, &d, &["create", "-k", "ops.key", "-o", "daemon.tar", &daemon]).ok();
    assert_eq!(image(&signed_index(&env, "daemon.tar"), &reference)["digest"], saved["digest"]);

    let run = airlock_at(&env, &d, &["create", "-k", "ops.key", "-o", "other.tar", "--platform", OTHER, &daemon]);
    let run = run.fails(EXIT_BAD_INPUT, &[&daemon, OTHER, "not in this source", "--platform"]);
    assert!(!run.stderr.contains(".airlock-stage"), "the daemon is named, not a staging file: {}", run.stderr);
    assert!(!env.path("other.tar").exists());

    let export = env.path("ctr.tar");
    let ctr = ["-a", &d.containerd, "-n", "moby", "images", "export", "--platform", HOST];
    tool("ctr", &[&ctr[..], &[export.to_str().unwrap(), &reference]].concat(), &[]).ok();
    let run =
        env.run(&["create", "-k", "ops.key", "-o", "ctr-b.tar", &format!("oci-archive:{}", export.display())]).ok();
    assert!(run.stderr.contains(&format!("left out {OTHER}")), "{}", run.stderr);
    assert_eq!(image(&signed_index(&env, "ctr-b.tar"), &reference)["digest"], saved["digest"], "as from docker save");
}

#[test]
fn a_containerd_store_save_of_a_single_platform_image_keeps_its_registry_digest() {
    if skip_without(&[Peer::Docker26, Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let Pulled { reference, digest, save, .. } =
        pulled(&env, "tools.oci.tar", "registry.example/tools/busybox:1.36", "tools/busybox:1.36");

    let run = env.run(&["create", "-k", "ops.key", "-o", "b.tar", &format!("docker-archive:{}", save.display())]).ok();
    assert!(!run.stderr.contains("left out"), "{}", run.stderr);
    let index = signed_index(&env, "b.tar");
    assert_eq!(image(&index, &reference)["digest"], digest.as_str(), "the registry's manifest digest");
    assert!(image(&index, &reference).get("filteredFrom").is_none());
}
