//! Signatures, attestations, SBOMs and referrers across the gap: images signed and attested with
//! the real `cosign` and given an artifact with the real `oras` in a real registry on loopback,
//! carried by `create`, replayed by `push` into a fresh registry under another prefix, where
//! `cosign verify`, `cosign verify-attestation`, `cosign tree` and `oras discover` must succeed on
//! the new names. cosign never leaves loopback: keys, no transparency log.

use std::process::Command;

use serde_json::Value;

use crate::common::{EXIT_BAD_INPUT, EXIT_TRUST, Env, Peer, Registry, Run, signed_index, skip_without, tool};
use crate::registry_source::seed;

const PASSWORD: &str = "cosign-test-password";

/// Runs a Go peer in the test directory, with a HOME of its own (cosign keeps a cache there).
pub(crate) fn peer(env: &Env, program: &str, args: &[&str]) -> Run {
    let out = Command::new(program)
        .args(args)
        .current_dir(env.dir.path())
        .env("HOME", env.path("home"))
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("COSIGN_EXPERIMENTAL", "1")
        .env("SIGSTORE_NO_CACHE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/peers.sh install-go-peers): {e}"));
    Run::from_output(out)
}

/// `cosign.key` / `cosign.pub` (ECDSA P-256, as cosign writes them) under `prefix`.
fn cosign_keys(env: &Env, prefix: &str) {
    std::fs::create_dir_all(env.path("home")).unwrap();
    peer(env, "cosign", &["generate-key-pair", "--output-key-prefix", prefix]).ok();
}

fn cosign_sign(env: &Env, key: &str, image: &str, extra: &[&str]) {
    let mut args = vec!["sign", "--key", key, "--tlog-upload=false", "--yes", "--allow-http-registry"];
    args.extend(extra);
    args.push(image);
    peer(env, "cosign", &args).ok();
}

/// A registry holding busybox (signed and attested with cosign's tags) and a two-platform image
/// (signed with `--registry-referrers-mode=oci-1-1` and given a note with `oras attach`).
pub(crate) struct Signed {
    pub(crate) reg: Registry,
    pub(crate) busybox: String,
    pub(crate) multi: String,
}

/// `b.tar` created from [`signed_registry`] with `flags`, in a new [`Env`]; `None` (the test skips)
/// without the registry, skopeo, cosign, oras and `more` peers.
fn signed_bundle(more: &[Peer], flags: &[&str]) -> Option<(Env, Signed)> {
    let peers: Vec<Peer> =
        [Peer::Registry, Peer::Skopeo, Peer::Cosign, Peer::Oras].into_iter().chain(more.iter().copied()).collect();
    if skip_without(&peers) {
        return None;
    }
    let env = Env::new();
    let s = signed_registry(&env);
    create_from(&env, &s, flags).ok();
    Some((env, s))
}

pub(crate) fn signed_registry(env: &Env) -> Signed {
    let reg = Registry::start(&[]);
    let busybox = seed(&reg, "tools.oci.tar", "src/busybox:1.36");
    let multi = seed(&reg, "multiarch.oci.tar", "src/multi:2.0");
    cosign_keys(env, "cosign");
    let by_digest = format!("{}/src/busybox@{busybox}", reg.host);
    cosign_sign(env, "cosign.key", &by_digest, &[]);
    std::fs::write(
        env.path("sbom.spdx.json"),
        r#"{"spdxVersion":"SPDX-2.3","name":"busybox","SPDXID":"SPDXRef-DOCUMENT"}"#,
    )
    .unwrap();
    let attest = ["attest", "--key", "cosign.key", "--tlog-upload=false", "--yes", "--allow-http-registry"];
    let attest: Vec<&str> = attest.into_iter().chain(["--type", "spdxjson", "--predicate", "sbom.spdx.json"]).collect();
    peer(env, "cosign", &[&attest[..], &[by_digest.as_str()]].concat()).ok();
    let multi_ref = format!("{}/src/multi@{multi}", reg.host);
    cosign_sign(env, "cosign.key", &multi_ref, &["--registry-referrers-mode=oci-1-1"]);
    std::fs::write(env.path("note.txt"), "carried across the gap\n").unwrap();
    peer(
        env,
        "oras",
        &["attach", "--plain-http", "--artifact-type", "application/vnd.example.note", &multi_ref, "note.txt"],
    )
    .ok();
    Signed { reg, busybox, multi }
}

pub(crate) fn create_from(env: &Env, s: &Signed, extra: &[&str]) -> Run {
    if !env.path("ops.key").exists() {
        env.keygen("ops");
    }
    let busybox = format!("{}/src/busybox:1.36", s.reg.host);
    let multi = format!("{}/src/multi:2.0", s.reg.host);
    let mut args = vec!["create", "-k", "ops.key", "-o", "b.tar"];
    args.extend(extra);
    args.extend([busybox.as_str(), multi.as_str()]);
    env.run(&args)
}

fn kinds(image: &Value) -> Vec<String> {
    let mut v: Vec<String> = image["attachments"]
        .as_array()
        .map(|a| a.iter().map(|x| x["kind"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn signed_images_pushed_under_another_prefix_verify_with_cosign_and_oras_there() {
    let Some((env, s)) = signed_bundle(&[], &[]) else { return };
    let index = signed_index(&env, "b.tar");
    let busybox = crate::common::image(&index, &format!("{}/src/busybox:1.36", s.reg.host));
    assert_eq!(kinds(busybox), ["cosign-attestation", "cosign-signature"]);
    let multi = crate::common::image(&index, &format!("{}/src/multi:2.0", s.reg.host));
    assert_eq!(kinds(multi), ["referrer", "referrer"]);
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();

    let inside = Registry::start(&[]);
    let to = format!("{}/inside", inside.host);
    let pushed = env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to]).ok();
    assert!(pushed.stdout.contains("2 attachments written"), "{}", pushed.stdout);

    let new_busybox = format!("{to}/src/busybox:1.36");
    let verify = ["verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry"];
    let out = peer(&env, "cosign", &[&verify[..], &[new_busybox.as_str()]].concat()).ok();
    assert!(out.stdout.contains(&s.busybox), "cosign verify names another digest:\n{}", out.stdout);
    let attest = ["verify-attestation", "--key", "cosign.pub", "--type", "spdxjson", "--insecure-ignore-tlog=true"];
    peer(&env, "cosign", &[&attest[..], &["--allow-http-registry", &new_busybox]].concat()).ok();
    let tree = peer(&env, "cosign", &["tree", "--allow-http-registry", &new_busybox]).ok();
    assert!(tree.stdout.contains("Signatures") && tree.stdout.contains("Attestations"), "{}", tree.stdout);

    let new_multi = format!("{to}/src/multi@{}", s.multi);
    let found = peer(&env, "oras", &["discover", "--plain-http", "--format", "json", &new_multi]).ok();
    let found: Value = serde_json::from_str(&found.stdout).unwrap();
    let mut types: Vec<&str> =
        found["referrers"].as_array().unwrap().iter().map(|r| r["artifactType"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["application/vnd.dev.cosign.artifact.sig.v1+json", "application/vnd.example.note"]);
}

#[test]
fn a_repeat_push_writes_no_attachment_again_and_keeps_what_the_fallback_index_lists() {
    let Some((env, s)) = signed_bundle(&[], &[]) else { return };
    let inside = Registry::start(&[]);
    let to = format!("{}/inside", inside.host);
    // Something attached inside, before the bundle arrives: the push must keep it listed.
    seed(&inside, "multiarch.oci.tar", "inside/src/multi:2.0");
    let inner = format!("{to}/src/multi@{}", s.multi);
    std::fs::write(env.path("scan.txt"), "scanned inside\n").unwrap();
    peer(
        &env,
        "oras",
        &["attach", "--plain-http", "--artifact-type", "application/vnd.example.scan", &inner, "scan.txt"],
    )
    .ok();
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to]).ok();
    let again = env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to, "--allow-rollback"]).ok();
    assert!(!again.stdout.contains("attachments written"), "{}", again.stdout);
    let found = peer(&env, "oras", &["discover", "--plain-http", "--format", "json", &inner]).ok();
    let found: Value = serde_json::from_str(&found.stdout).unwrap();
    let mut types: Vec<&str> =
        found["referrers"].as_array().unwrap().iter().map(|r| r["artifactType"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            "application/vnd.example.note",
            "application/vnd.example.scan"
        ]
    );
}

#[test]
fn no_attachments_and_an_artifact_type_filter_choose_what_is_carried() {
    let Some((env, s)) = signed_bundle(&[], &["--no-attachments"]) else { return };
    let index = signed_index(&env, "b.tar");
    assert!(index["images"].as_array().unwrap().iter().all(|i| i.get("attachments").is_none()));
    std::fs::remove_file(env.path("b.tar")).unwrap();
    create_from(&env, &s, &["--attachments", "cosign-signature,application/vnd.example.note"]).ok();
    let index = signed_index(&env, "b.tar");
    let busybox = crate::common::image(&index, &format!("{}/src/busybox:1.36", s.reg.host));
    assert_eq!(kinds(busybox), ["cosign-signature"]);
    let multi = crate::common::image(&index, &format!("{}/src/multi:2.0", s.reg.host));
    assert_eq!(multi["attachments"][0]["artifactType"], "application/vnd.example.note");
    assert_eq!(multi["attachments"].as_array().unwrap().len(), 1);
}

/// Puts a JSON document into the registry as a manifest under `reference` (with `curl`).
fn put_manifest(reg: &Registry, repo: &str, reference: &str, media_type: &str, doc: &Value) {
    let url = format!("http://{}/v2/{repo}/manifests/{reference}", reg.host);
    let body = doc.to_string();
    let ctype = format!("Content-Type: {media_type}");
    tool("curl", &["-sf", "-X", "PUT", "-H", &ctype, "--data-binary", &body, &url], &[]).ok();
}

/// A registry with busybox as `src/busybox:1.36`: the registry, the image's digest and manifest.
fn hostile_source(env: &Env) -> (Registry, String, String) {
    env.keygen("ops");
    let reg = Registry::start(&[]);
    let digest = seed(&reg, "tools.oci.tar", "src/busybox:1.36");
    let src = format!("docker://{}/src/busybox:1.36", reg.host);
    let raw = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &src], &[]).ok().stdout;
    (reg, digest, raw)
}

#[test]
fn a_fallback_index_listing_the_image_itself_is_refused_naming_the_loop() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let (reg, digest, manifest) = hostile_source(&env);
    let size = manifest.len();
    let me =
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size});
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [me]});
    let tag = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    put_manifest(&reg, "src/busybox", &tag, "application/vnd.oci.image.index.v1+json", &index);
    let src = format!("{}/src/busybox:1.36", reg.host);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).fails(
        EXIT_BAD_INPUT,
        &[&format!("image {src}: attachments"), &format!("lists the image's own manifest {digest} as attached to it")],
    );
    assert!(!env.path("b.tar").exists());
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--no-attachments", &src]).ok();
}

#[test]
fn more_referrers_than_an_image_may_carry_are_refused_naming_the_limit() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let (reg, digest, manifest) = hostile_source(&env);
    // 257 distinct artifacts with the image as subject (their config: the image's own, which
    // the registry holds), listed in its fallback index.
    let size = manifest.len();
    let config = serde_json::from_str::<Value>(&manifest).unwrap()["config"].clone();
    let subject =
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size});
    let mut listed = Vec::new();
    for i in 0..257 {
        let doc = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example.flood",
            "config": {"mediaType": "application/vnd.example.flood.config", "digest": config["digest"], "size": config["size"]},
            "layers": [],
            "subject": subject, "annotations": {"n": i.to_string()}});
        let bytes = doc.to_string();
        let d = format!("sha256:{}", sha256_hex(bytes.as_bytes()));
        put_manifest(&reg, "src/busybox", &d, "application/vnd.oci.image.manifest.v1+json", &doc);
        listed.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d,
            "size": bytes.len(), "artifactType": "application/vnd.example.flood"}));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": listed});
    let tag = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    put_manifest(&reg, "src/busybox", &tag, "application/vnd.oci.image.index.v1+json", &index);
    let src = format!("{}/src/busybox:1.36", reg.host);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src])
        .fails(EXIT_BAD_INPUT, &["lists 257 referrers, more than the 256 an image may carry"]);
    assert!(!env.path("b.tar").exists());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_cosign_save_layout_and_an_exported_layout_carry_their_attachments() {
    if skip_without(&[Peer::Registry, Peer::Skopeo, Peer::Cosign, Peer::Oras]) {
        return;
    }
    let env = Env::new();
    let s = signed_registry(&env);
    env.keygen("ops");
    let by_digest = format!("{}/src/busybox@{}", s.reg.host, s.busybox);
    peer(&env, "cosign", &["save", "--dir", "saved", &by_digest]).ok();
    env.run(&["create", "-k", "ops.key", "-o", "saved.tar", "oci:saved=registry.example/busybox:1.36"]).ok();
    let index = signed_index(&env, "saved.tar");
    let img = crate::common::image(&index, "registry.example/busybox:1.36");
    assert_eq!(kinds(img), ["cosign-attestation", "cosign-signature"]);
    assert!(img["attachments"].as_array().unwrap().iter().all(|a| a["subject"] == s.busybox.as_str()));

    create_from(&env, &s, &[]).ok();
    env.run(&["export", "-p", "ops.pub", "--format", "oci", "-o", "layout", "b.tar"]).ok();
    env.run(&["create", "-k", "ops.key", "-o", "again.tar", "oci:layout"]).ok();
    let (before, after) = (signed_index(&env, "b.tar"), signed_index(&env, "again.tar"));
    for img in before["images"].as_array().unwrap() {
        let name = img["name"].as_str().unwrap();
        assert_eq!(crate::common::image(&after, name)["attachments"], img["attachments"], "{name}");
    }
    let docker = env
        .run(&["export", "-p", "ops.pub", "--format", "docker-archive", "-o", "d.tar", "b.tar", "--allow-rollback"])
        .ok();
    assert!(docker.stderr.contains("note: 4 attachments"), "{}", docker.stderr);
}
#[test]
fn verify_cosign_key_passes_signed_images_and_names_an_unsigned_image_or_a_wrong_key() {
    let Some((env, s)) = signed_bundle(&[Peer::Crane], &[]) else { return };
    let ok = env.run(&["verify", "-p", "ops.pub", "--cosign-key", "cosign.pub", "b.tar"]).ok();
    assert_eq!(ok.stdout.matches("cosign signature by cosign.pub").count(), 2, "{}", ok.stdout);
    cosign_keys(&env, "other");
    env.run(&["verify", "-p", "ops.pub", "--cosign-key", "other.pub", "b.tar"])
        .fails(EXIT_TRUST, &["carries cosign signatures, none by other.pub"]);
    env.run(&["verify", "-p", "ops.pub", "--cosign-key", "other.pub", "--cosign-key", "cosign.pub", "b.tar"]).ok();

    // An image signed by nobody, and one whose signature tag holds another image's signature.
    let plain = seed(&s.reg, "multiarch.oci.tar", "src/plain:1");
    let forged = seed(&s.reg, "multiarch.oci.tar", "src/forged:1");
    let stolen = format!("{}/src/busybox:sha256-{}.sig", s.reg.host, s.busybox.trim_start_matches("sha256:"));
    let planted = format!("{}/src/forged:sha256-{}.sig", s.reg.host, forged.trim_start_matches("sha256:"));
    tool("crane", &["copy", "--insecure", &stolen, &planted], &[]).ok();
    for (repo, digest, why) in [
        ("plain", &plain, "carries no cosign signature".to_owned()),
        ("forged", &forged, format!("its cosign signature is over another digest ({})", s.busybox)),
    ] {
        let bundle = format!("{repo}.tar");
        let src = format!("{}/src/{repo}:1", s.reg.host);
        env.run(&["create", "-k", "ops.key", "-o", &bundle, &src]).ok();
        let image = format!("image {src} ({digest}): {why}");
        env.run(&["verify", "-p", "ops.pub", "--cosign-key", "cosign.pub", &bundle]).fails(EXIT_TRUST, &[&image]);
        let inside = Registry::start(&[]);
        let to = format!("{}/inside", inside.host);
        env.run(&["push", "-p", "ops.pub", &bundle, "--to", &to, "--require-cosign-key", "cosign.pub"])
            .fails(EXIT_TRUST, &[&image]);
        assert!(!inside.requests().iter().any(|r| r.starts_with("PUT")), "{:?}", inside.requests());
    }
    let inside = Registry::start(&[]);
    let to = format!("{}/inside", inside.host);
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to, "--require-cosign-key", "cosign.pub"]).ok();
}

#[test]
fn an_image_signed_with_an_ed25519_key_passes_verify_cosign_key() {
    if skip_without(&[Peer::Registry, Peer::Skopeo, Peer::Cosign]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    std::fs::create_dir_all(env.path("home")).unwrap();
    let reg = Registry::start(&[]);
    let digest = seed(&reg, "tools.oci.tar", "src/ed:1");
    // An Ed25519 key made by openssl, imported into cosign (which then signs Ed25519ph).
    tool("openssl", &["genpkey", "-algorithm", "ed25519", "-out", env.path("ed.pem").to_str().unwrap()], &[]).ok();
    peer(&env, "cosign", &["import-key-pair", "--key", "ed.pem", "--output-key-prefix", "ed"]).ok();
    cosign_sign(&env, "ed.key", &format!("{}/src/ed@{digest}", reg.host), &[]);
    let src = format!("{}/src/ed:1", reg.host);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    let ok = env.run(&["verify", "-p", "ops.pub", "--cosign-key", "ed.pub", "b.tar"]).ok();
    assert!(ok.stdout.contains("cosign signature by ed.pub"), "{}", ok.stdout);
    env.run_with_stdin_file(&["verify", "-p", "ops.pub", "--cosign-key", "ed.pub", "-"], "b.tar")
        .fails(EXIT_BAD_INPUT, &["--cosign-key: needs a bundle file, not stdin"]);
}

#[test]
fn create_from_a_registry_with_the_referrers_api_finds_the_same_attachments() {
    let Some((env, s)) = signed_bundle(&[], &[]) else { return };
    // `airlock serve` answers the referrers API (distribution 2.8 does not): the other path.
    let served = crate::serve::Served::start(&env, &["-p", "ops.pub", "b.tar"]);
    let host = s.reg.host.replace(':', "_");
    let src = format!("{}/{host}/src/multi:2.0", served.addr);
    env.run(&["create", "-k", "ops.key", "-o", "again.tar", &src]).ok();
    let again = signed_index(&env, "again.tar");
    let before = signed_index(&env, "b.tar");
    let original = crate::common::image(&before, &format!("{}/src/multi:2.0", s.reg.host));
    assert_eq!(crate::common::image(&again, &src)["attachments"], original["attachments"]);
    served.stop().ok();
}
