//! `airlock create docker-daemon:REF`: images straight from a real Docker Engine (DOCKER_HOST).

use serde_json::Value;

use crate::common::{EXIT_BAD_INPUT, Env, Peer, docker_host, fixture_str, skip_without, tool};

fn docker(args: &[&str]) -> crate::common::Run {
    let host = docker_host();
    tool("docker", args, &[("DOCKER_HOST", host.as_str())])
}

#[test]
fn create_takes_an_image_from_the_docker_engine_with_its_image_id() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    // interop's tests remove example.com/team/web:1.4 from the shared dockerd when they end: taking
    // turns with them keeps it there between this load and the tag below.
    let _turn = crate::interop::DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    env.keygen("ops");
    docker(&["load", "-i", &fixture_str("legacy-save.tar")]).ok();
    let tag = "example.com/daemon-source/web:1";
    docker(&["tag", "example.com/team/web:1.4", tag]).ok();
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", tag]).ok().stdout.trim().to_owned();

    let src = format!("docker-daemon:{tag}");
    let out =
        env.cmd().args(["create", "-k", "ops.key", "-o", "b.tar", &src]).env("DOCKER_HOST", docker_host()).output();
    let out = out.unwrap();
    docker(&["rmi", tag]).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();

    let mut ar = tar::Archive::new(std::fs::File::open(env.path("b.tar")).unwrap());
    let manifest: Value = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
        .map(|e| serde_json::from_reader(e).unwrap())
        .unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([tag]));
    let config = manifest[0]["Config"].as_str().unwrap().replace("blobs/sha256/", "sha256:");
    assert_eq!(config, id, "the image ID docker shows is kept");
}

#[test]
fn a_missing_daemon_image_is_named() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let out = env
        .cmd()
        .args(["create", "-k", "ops.key", "-o", "b.tar", "docker-daemon:example.com/not/there:1"])
        .env("DOCKER_HOST", docker_host())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_BAD_INPUT), "{err}");
    assert!(err.contains("example.com/not/there:1"), "{err}");
    assert!(!env.path("b.tar").exists());
}
