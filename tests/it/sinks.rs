//! The isolated side without a registry: `airlock export` (docker-archive, OCI layout) and
//! `airlock load` into a real Docker Engine. Nothing that fails verification may come out.

use crate::common::{
    EXIT_BAD_INPUT, EXIT_INTEGRITY, EXIT_TRUST, Env, Peer, docker_host, fixture_str, skip_without, tamper, tool,
};

/// A bundle whose images carry names no other test uses, so the shared dockerd can be checked.
fn unique_bundle(env: &Env, tag: &str) -> String {
    env.keygen("ops");
    let name = format!("example.com/sinks/{tag}:1");
    let src = format!("oci-archive:{}={name}", fixture_str("tools.oci.tar"));
    let multi = format!("oci-archive:{}=example.com/sinks/{tag}-multi:2", fixture_str("multiarch.oci.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src, &multi]).ok();
    name
}

fn docker(args: &[&str]) -> crate::common::Run {
    let host = docker_host();
    tool("docker", args, &[("DOCKER_HOST", host.as_str())])
}

fn docker_tags() -> String {
    docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok().stdout
}

#[test]
fn load_streams_a_verified_bundle_into_the_docker_engine() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "load");
    let run = env.cmd().args(["load", "-p", "ops.pub", "b.tar"]).env("DOCKER_HOST", docker_host()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let tags = docker_tags();
    assert!(tags.contains(&name), "{tags}");
    assert!(tags.contains("example.com/sinks/load-multi:2"), "multi-platform image loaded for the host: {tags}");
    let arch = docker(&["image", "inspect", "--format", "{{.Architecture}}", "example.com/sinks/load-multi:2"]).ok();
    assert_eq!(arch.stdout.trim(), "amd64");
    docker(&["rmi", &name, "example.com/sinks/load-multi:2"]).ok();
}

#[test]
fn load_of_a_tampered_bundle_fails_and_tags_nothing() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "tampered");
    tamper(&env.path("b.tar"));
    let run = env.cmd().args(["load", "-p", "ops.pub", "b.tar"]).env("DOCKER_HOST", docker_host()).output().unwrap();
    assert_eq!(run.status.code(), Some(EXIT_INTEGRITY), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("digest mismatch"));
    assert!(!docker_tags().contains(&name));
}

#[test]
fn export_docker_archive_is_accepted_by_docker_load_and_podman_load() {
    if skip_without(&[Peer::Docker, Peer::Podman]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "export");
    env.run(&[
        "export",
        "-p",
        "ops.pub",
        "b.tar",
        "--format",
        "docker-archive",
        "-o",
        "images.tar",
        "--platform",
        "linux/arm64",
    ])
    .ok();
    docker(&["load", "-i", env.path("images.tar").to_str().unwrap()]).ok();
    assert!(docker_tags().contains(&name));
    let arch = docker(&["image", "inspect", "--format", "{{.Architecture}}", "example.com/sinks/export-multi:2"]).ok();
    assert_eq!(arch.stdout.trim(), "arm64", "--platform picks the platform of multi-platform images");
    docker(&["rmi", &name, "example.com/sinks/export-multi:2"]).ok();

    let root = env.path("podman-root");
    let run = env.path("podman-run");
    let podman = |args: &[&str]| {
        let mut all =
            vec!["--storage-driver=vfs", "--root", root.to_str().unwrap(), "--runroot", run.to_str().unwrap()];
        all.extend_from_slice(args);
        tool("podman", &all, &[])
    };
    podman(&["load", "-i", env.path("images.tar").to_str().unwrap()]).ok();
    let listed = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok().stdout;
    assert!(listed.contains(&name), "{listed}");
}

#[test]
fn export_oci_writes_a_layout_skopeo_reads_with_the_signed_digests() {
    if skip_without(&[Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "oci");
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout"]).ok();
    let inspect = env.run(&["inspect", "--json", "b.tar"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let want = doc["images"].as_array().unwrap().iter().find(|i| i["name"] == name.as_str()).unwrap()["digest"].clone();
    let layout = format!("oci:{}:{name}", env.path("layout").display());
    let got = tool("skopeo", &["inspect", "--format", "{{.Digest}}", &layout], &[]).ok();
    assert_eq!(got.stdout.trim(), want.as_str().unwrap());
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout", "--allow-rollback"])
        .fails(EXIT_BAD_INPUT, &["already exists"]);
}

#[test]
fn export_refuses_a_wrong_key_and_leaves_nothing_behind() {
    let env = Env::new();
    unique_bundle(&env, "wrongkey");
    env.keygen("other");
    let before = env.listing();
    env.run(&["export", "-p", "other.pub", "b.tar", "--format", "docker-archive", "-o", "images.tar"])
        .fails(EXIT_TRUST, &["b.tar", "signed by key"]);
    tamper(&env.path("b.tar"));
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout"]).fails(EXIT_INTEGRITY, &["b.tar"]);
    assert_eq!(env.listing(), before, "no output, no temporary files");
}

#[test]
fn export_reads_a_bundle_from_stdin() {
    let env = Env::new();
    unique_bundle(&env, "stdin");
    let input = std::fs::File::open(env.path("b.tar")).unwrap();
    let out = env
        .cmd()
        .args(["export", "-p", "ops.pub", "-", "--format", "oci", "-o", "layout"])
        .stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.path("layout/index.json").is_file());
}
