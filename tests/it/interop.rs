//! Bundles as the real peers see them: `docker load`, `podman load`, `ctr images import`, skopeo's
//! `oci-archive:` transport and the stock `minisign`, plus byte-for-byte reproducibility. Every
//! expected value comes from the bundle itself (its signed index, `manifest.json`) or the fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::Value;

use crate::common::{Env, Peer, Run, containerd_socket, docker_host, fixture_str, skip_without, tool};

/// The single-platform tags of the standard bundle, in docker's familiar form.
pub(crate) const STANDARD_TAGS: [&str; 5] = [
    "example.com/team/base:1.0",
    "example.com/team/web:1.4",
    "example.com/team/web:latest",
    "registry.example/team/app:1.4",
    "registry.example/tools/busybox:1.36",
];

/// The private dockerd is shared by every test thread; tests here that load into it take turns.
pub(crate) static DOCKER: Mutex<()> = Mutex::new(());

pub(crate) fn docker(args: &[&str]) -> Run {
    let host = docker_host();
    tool("docker", args, &[("DOCKER_HOST", host.as_str())])
}

/// Removes the tags it holds from the private dockerd when dropped, even after a failed assertion.
pub(crate) struct DockerTags(pub(crate) Vec<String>);

impl Drop for DockerTags {
    fn drop(&mut self) {
        let mut args = vec!["rmi"];
        args.extend(self.0.iter().map(String::as_str));
        docker(&args);
    }
}

fn podman(env: &Env, args: &[&str]) -> Run {
    let (root, run) = (env.path("podman-root"), env.path("podman-run"));
    let mut all = vec!["--storage-driver=vfs", "--root", root.to_str().unwrap(), "--runroot", run.to_str().unwrap()];
    all.extend_from_slice(args);
    tool("podman", &all, &[])
}

/// A containerd namespace of this test process; its images are removed and it is deleted on drop.
struct CtrNamespace(String);

impl CtrNamespace {
    fn new(label: &str) -> Self {
        CtrNamespace(format!("airlock-interop-{}-{label}", std::process::id()))
    }

    fn run(&self, args: &[&str]) -> Run {
        let sock = containerd_socket();
        let mut all = vec!["-a", sock.as_str(), "-n", self.0.as_str()];
        all.extend_from_slice(args);
        tool("ctr", &all, &[])
    }
}

impl Drop for CtrNamespace {
    fn drop(&mut self) {
        let names = self.run(&["images", "ls", "-q"]).stdout;
        let mut args = vec!["images", "rm", "--sync"];
        args.extend(names.lines());
        self.run(&args);
        tool("ctr", &["-a", &containerd_socket(), "namespaces", "rm", &self.0], &[]);
    }
}

/// The non-empty lines of a tool's output.
fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// What `docker load` / `podman load` printed as loaded.
pub(crate) fn loaded(out: &str) -> BTreeSet<String> {
    out.lines().filter_map(|l| l.strip_prefix("Loaded image: ")).map(|t| t.trim().to_owned()).collect()
}

pub(crate) fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The report of `airlock verify --json`: the signed index as an auditor sees it.
fn verified(env: &Env, bundle: &str) -> Value {
    let run = env.run(&["verify", "-p", "ops.pub", "--json", bundle]).ok();
    serde_json::from_str(&run.stdout).expect("verify --json prints JSON")
}

/// Image name -> digest, from the signed index.
fn signed_digests(env: &Env, bundle: &str) -> BTreeMap<String, String> {
    let report = verified(env, bundle);
    let images = report["images"].as_array().expect("images").iter();
    images.map(|i| (i["name"].as_str().unwrap().to_owned(), i["digest"].as_str().unwrap().to_owned())).collect()
}

/// One entry of a bundle, read with tar.
fn bundle_entry(env: &Env, bundle: &str, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(env.path(bundle)).unwrap());
    let mut entry = ar.entries().unwrap().map(Result::unwrap).find(|e| e.path().unwrap().to_str() == Some(name));
    let entry = entry.as_mut().unwrap_or_else(|| panic!("{bundle} has no {name}"));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(entry, &mut bytes).unwrap();
    bytes
}

/// Tag -> image ID (`sha256:` + config hex) from the bundle's `manifest.json`.
fn config_ids(env: &Env, bundle: &str) -> BTreeMap<String, String> {
    let manifest: Value = serde_json::from_slice(&bundle_entry(env, bundle, "manifest.json")).unwrap();
    let mut ids = BTreeMap::new();
    for entry in manifest.as_array().expect("manifest.json is an array") {
        let config = entry["Config"].as_str().unwrap();
        let id = format!("sha256:{}", config.strip_prefix("blobs/sha256/").expect("Config is blobs/sha256/<hex>"));
        for tag in entry["RepoTags"].as_array().unwrap() {
            ids.insert(tag.as_str().unwrap().to_owned(), id.clone());
        }
    }
    ids
}

#[test]
fn docker_load_of_a_bundle_tags_every_single_platform_image() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let ids = config_ids(&env, "b.tar");
    assert_eq!(ids.keys().cloned().collect::<BTreeSet<_>>(), set(&STANDARD_TAGS), "manifest.json RepoTags");

    let _cleanup = DockerTags(STANDARD_TAGS.iter().map(|t| t.to_string()).collect());
    let load = docker(&["load", "-i", env.path("b.tar").to_str().unwrap()]).ok();
    assert_eq!(loaded(&load.stdout), set(&STANDARD_TAGS), "docker load said:\n{}", load.stdout);
    let listed = lines(&docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok().stdout);
    for (tag, id) in &ids {
        assert!(listed.contains(tag), "docker images lacks {tag}: {listed:?}");
        let got = docker(&["image", "inspect", "--format", "{{.Id}}", tag]).ok();
        assert_eq!(got.stdout.trim(), id, "image ID of {tag} is its config digest");
    }
}

#[test]
fn docker_load_shows_a_docker_hub_image_by_its_familiar_name() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    env.keygen("ops");
    let source = format!("oci-archive:{}=airlock-interop/hub:1", fixture_str("tools.oci.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &source]).ok();
    assert!(signed_digests(&env, "b.tar").contains_key("docker.io/airlock-interop/hub:1"), "full name in the index");

    let _cleanup = DockerTags(vec!["airlock-interop/hub:1".into()]);
    let load = docker(&["load", "-i", env.path("b.tar").to_str().unwrap()]).ok();
    assert_eq!(loaded(&load.stdout), set(&["airlock-interop/hub:1"]), "docker load said:\n{}", load.stdout);
    let got = docker(&["image", "inspect", "--format", "{{.Id}}", "airlock-interop/hub:1"]).ok();
    assert_eq!(got.stdout.trim(), config_ids(&env, "b.tar")["airlock-interop/hub:1"]);
}

/// podman 4.3 tries the bundle as an OCI directory, then as an OCI archive (refused: "more than one
/// image in oci, choose an image"), then as a docker-archive, which loads every `manifest.json` tag.
#[test]
fn podman_load_of_a_bundle_tags_every_single_platform_image() {
    if skip_without(&[Peer::Podman]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let load = podman(&env, &["load", "-i", env.path("b.tar").to_str().unwrap()]).ok();
    assert_eq!(loaded(&load.stdout), set(&STANDARD_TAGS), "podman load said:\n{}", load.stdout);
    let listed = lines(&podman(&env, &["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok().stdout);
    assert_eq!(listed, set(&STANDARD_TAGS), "podman images");
    for (tag, id) in config_ids(&env, "b.tar") {
        let got = podman(&env, &["image", "inspect", "--format", "sha256:{{.Id}}", &tag]).ok();
        assert_eq!(got.stdout.trim(), id, "image ID of {tag} is its config digest");
    }
}

/// With a single image the OCI-archive attempt succeeds: podman stores the signed index as is.
#[test]
fn podman_load_of_a_one_image_bundle_keeps_the_signed_multi_platform_index() {
    if skip_without(&[Peer::Podman]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &format!("oci-archive:{}", fixture_str("multiarch.oci.tar"))])
        .ok();
    let want = signed_digests(&env, "b.tar");
    let load = podman(&env, &["load", "-i", env.path("b.tar").to_str().unwrap()]).ok();
    assert_eq!(loaded(&load.stdout), set(&["registry.example/team/multi:2.0"]), "podman load said:\n{}", load.stdout);
    let listed = podman(&env, &["images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"]).ok();
    let want = format!("registry.example/team/multi:2.0 {}", want["registry.example/team/multi:2.0"]);
    assert_eq!(lines(&listed.stdout), set(&[&want]));
}

#[test]
fn ctr_import_of_a_bundle_names_every_image_by_its_full_reference_and_signed_digest() {
    if skip_without(&[Peer::Containerd]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let want = signed_digests(&env, "b.tar");
    let ns = CtrNamespace::new("names");
    ns.run(&["images", "import", env.path("b.tar").to_str().unwrap()]).ok();
    let listed = ns.run(&["images", "ls"]).ok().stdout;
    let got: BTreeMap<String, String> = listed
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .map(|cols| (cols[0].to_owned(), cols[2].to_owned()))
        .collect();
    assert_eq!(got, want, "ctr images ls:\n{listed}");
    let check = ns.run(&["images", "check"]).ok().stdout;
    let complete = check.lines().skip(1).filter(|l| l.contains(" complete (")).count();
    assert_eq!(complete, want.len(), "every image complete for the host platform:\n{check}");
}

#[test]
fn ctr_import_names_a_docker_hub_image_docker_io() {
    if skip_without(&[Peer::Containerd]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let source = format!("oci-archive:{}=busybox:1.36", fixture_str("tools.oci.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &source]).ok();
    let ns = CtrNamespace::new("hub");
    ns.run(&["images", "import", env.path("b.tar").to_str().unwrap()]).ok();
    assert_eq!(lines(&ns.run(&["images", "ls", "-q"]).ok().stdout), set(&["docker.io/library/busybox:1.36"]));
}

/// Without `--all-platforms` ctr 1.6 keeps only the host's platform of a multi-platform index (the
/// arm64 manifest, config and layer are not stored). The content store also briefly holds blobs ctr
/// made itself (e.g. the archive's `index.json`), so this checks that every signed blob is there.
#[test]
fn ctr_import_with_all_platforms_stores_every_signed_blob() {
    if skip_without(&[Peer::Containerd]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let report = verified(&env, "b.tar");
    let blobs: BTreeSet<String> =
        report["blobs"].as_array().unwrap().iter().map(|b| b["digest"].as_str().unwrap().to_owned()).collect();
    let ns = CtrNamespace::new("all");
    ns.run(&["images", "import", "--all-platforms", env.path("b.tar").to_str().unwrap()]).ok();
    let names = lines(&ns.run(&["images", "ls", "-q"]).ok().stdout);
    assert_eq!(names, signed_digests(&env, "b.tar").into_keys().collect());
    let content = lines(&ns.run(&["content", "ls", "-q"]).ok().stdout);
    let missing: Vec<&String> = blobs.difference(&content).collect();
    assert!(missing.is_empty(), "signed blobs not in containerd's content store: {missing:?}");
}

#[test]
fn skopeo_reads_the_bundle_as_an_oci_archive_with_the_signed_digests() {
    if skip_without(&[Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let want = signed_digests(&env, "b.tar");
    let at = |name: &str| format!("oci-archive:{}:{name}", env.path("b.tar").display());
    let skopeo = |args: &[&str]| tool("skopeo", args, &[]).ok().stdout;

    let app = skopeo(&["inspect", "--format", "{{.Digest}}", &at("registry.example/team/app:1.4")]);
    assert_eq!(app.trim(), want["registry.example/team/app:1.4"]);

    let raw: Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &at("registry.example/team/multi:2.0")])).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let platforms: BTreeSet<String> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(platforms, set(&["linux/amd64", "linux/arm64"]));
    let multi = skopeo(&["inspect", "--format", "{{.Digest}}", &at("registry.example/team/multi:2.0")]);
    assert_eq!(multi.trim(), want["registry.example/team/multi:2.0"]);

    let out = format!("oci:{}:web", env.path("out").display());
    tool("skopeo", &["copy", &at("example.com/team/web:1.4"), &out], &[]).ok();
    let copied = skopeo(&["inspect", "--format", "{{.Digest}}", &out]);
    assert_eq!(copied.trim(), want["example.com/team/web:1.4"], "skopeo copy keeps the manifest byte for byte");
}

fn extract_index(env: &Env, bundle: &str) {
    let b = env.path(bundle);
    let dir = env.dir.path().to_str().unwrap();
    tool("tar", &["-xf", b.to_str().unwrap(), "-C", dir, "airlock.json", "airlock.json.minisig"], &[]).ok();
}

fn minisign_verify(env: &Env, pubkey: &str) -> Run {
    let (index, key) = (env.path("airlock.json"), env.path(pubkey));
    tool("minisign", &["-Vm", index.to_str().unwrap(), "-p", key.to_str().unwrap()], &[])
}

#[test]
fn minisign_verifies_the_signed_index_of_a_bundle_and_rejects_a_flipped_byte() {
    if skip_without(&[Peer::Minisign]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    extract_index(&env, "b.tar");
    let ok = minisign_verify(&env, "ops.pub").ok();
    let bundle_id = verified(&env, "b.tar")["bundleId"].as_str().unwrap().to_owned();
    assert!(ok.stdout.contains(&format!("bundle:{bundle_id}")), "trusted comment names the bundle:\n{}", ok.stdout);

    let mut index = std::fs::read(env.path("airlock.json")).unwrap();
    let mid = index.len() / 2;
    index[mid] ^= 0x01;
    std::fs::write(env.path("airlock.json"), index).unwrap();
    let bad = minisign_verify(&env, "ops.pub");
    assert_ne!(bad.code, 0, "minisign accepted a changed index:\n{}{}", bad.stdout, bad.stderr);
    assert!(bad.stderr.contains("Signature verification failed"), "{}", bad.stderr);
}

#[test]
fn a_key_made_by_minisign_without_a_password_signs_bundles_airlock_verifies() {
    if skip_without(&[Peer::Minisign]) {
        return;
    }
    let env = Env::new();
    let (pk, sk) = (env.path("mk.pub"), env.path("mk.key"));
    tool("minisign", &["-G", "-W", "-p", pk.to_str().unwrap(), "-s", sk.to_str().unwrap()], &[]).ok();
    let source = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
    env.run(&["create", "-k", "mk.key", "-o", "b.tar", &source]).ok();
    env.run(&["verify", "-p", "mk.pub", "b.tar"]).ok();
    extract_index(&env, "b.tar");
    minisign_verify(&env, "mk.pub").ok();
}

/// The standard bundle's sources, for creates driven by hand.
fn standard_sources() -> Vec<String> {
    vec![
        format!("docker-archive:{}", fixture_str("legacy-save.tar")),
        format!("oci:{}:registry.example/team/app:1.4", fixture_str("oci-layout")),
        format!("oci-archive:{}", fixture_str("tools.oci.tar")),
        format!("oci-archive:{}", fixture_str("multiarch.oci.tar")),
    ]
}

/// `airlock create -k ops.key -o OUT SOURCES…` with SOURCE_DATE_EPOCH set.
fn create_at_epoch(env: &Env, out: &str, epoch: &str) {
    let run = env
        .cmd()
        .args(["create", "-k", "ops.key", "-o", out])
        .args(standard_sources())
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

fn bytes(env: &Env, name: &str) -> Vec<u8> {
    std::fs::read(env.path(name)).unwrap()
}

#[test]
fn two_creates_with_the_same_inputs_key_and_created_time_are_byte_identical() {
    let env = Env::new();
    env.standard_bundle("one.tar").ok();
    env.standard_bundle("two.tar").ok();
    assert!(bytes(&env, "one.tar") == bytes(&env, "two.tar"), "bundles differ");
}

#[test]
fn source_date_epoch_makes_creates_byte_identical_and_sets_the_creation_time() {
    let env = Env::new();
    env.standard_bundle("flag.tar").ok(); // --created 2026-01-01T00:00:00Z
    create_at_epoch(&env, "one.tar", "1767225600");
    create_at_epoch(&env, "two.tar", "1767225600");
    create_at_epoch(&env, "later.tar", "1767225601");
    assert!(bytes(&env, "one.tar") == bytes(&env, "two.tar"), "bundles differ");
    assert!(bytes(&env, "one.tar") == bytes(&env, "flag.tar"), "SOURCE_DATE_EPOCH and --created disagree");
    assert!(bytes(&env, "one.tar") != bytes(&env, "later.tar"), "SOURCE_DATE_EPOCH is ignored");
    assert_eq!(verified(&env, "one.tar")["created"], "2026-01-01T00:00:00Z");
}
