//! `airlock create` from registries (`docker://REF`, bare references): images pushed by skopeo
//! into the real distribution registry come out in the bundle with the same digests.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::common::{EXIT_INTEGRITY, Env, Peer, Registry, fixture_str, skip_without, tool};

const EXIT_REGISTRY: i32 = 7;

/// The key pair `ops` and a fresh registry started with `args`; `None` (the test skips) without
/// the peers.
fn keyed_registry(args: &[&str]) -> Option<(Env, Registry)> {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return None;
    }
    let env = Env::new();
    env.keygen("ops");
    Some((env, Registry::start(args)))
}

/// Copies a fixture into the registry with skopeo; returns the digest the registry serves.
pub(crate) fn seed(reg: &Registry, fixture: &str, repo: &str) -> String {
    let dest = format!("docker://{}/{repo}", reg.host);
    let src = format!("oci-archive:{}", fixture_str(fixture));
    tool("skopeo", &["copy", "--all", "--dest-tls-verify=false", &src, &dest], &[]).ok();
    let inspect = ["inspect", "--format", "{{.Digest}}", "--tls-verify=false", &dest];
    tool("skopeo", &inspect, &[]).ok().stdout.trim().to_owned()
}

fn images(env: &Env, bundle: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&env.run(&["inspect", "--json", bundle]).ok().stdout).unwrap();
    doc["images"].as_array().unwrap().clone()
}

#[test]
fn create_from_a_registry_keeps_every_digest_and_takes_digest_pins() {
    let Some((env, reg)) = keyed_registry(&[]) else { return };
    let multi = seed(&reg, "multiarch.oci.tar", "src/multi:2.0");
    let tools = seed(&reg, "tools.oci.tar", "src/busybox:1.36");
    let by_tag = format!("docker://{}/src/multi:2.0", reg.host);
    let pinned = format!("{}/src/busybox@{tools}", reg.host); // bare reference, pinned by digest
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &by_tag, &pinned]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    let got = images(&env, "b.tar");
    let digest_of = |name: &str| got.iter().find(|i| i["name"] == name).unwrap()["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest_of(&format!("{}/src/multi:2.0", reg.host)), multi);
    assert_eq!(digest_of(&pinned), tools);
    let platforms = &got.iter().find(|i| i["digest"] == multi.as_str()).unwrap()["platforms"];
    assert_eq!(platforms, &serde_json::json!(["linux/amd64", "linux/arm64"]));
}

#[test]
fn create_from_a_registry_filters_platforms_and_records_the_original_digest() {
    let Some((env, reg)) = keyed_registry(&[]) else { return };
    let multi = seed(&reg, "multiarch.oci.tar", "src/multi:2.0");
    let src = format!("docker://{}/src/multi:2.0", reg.host);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--platform", "linux/arm64", &src]).ok();
    let mut ar = tar::Archive::new(std::fs::File::open(env.path("b.tar")).unwrap());
    let index: Value = serde_json::from_reader(ar.entries().unwrap().next().unwrap().unwrap()).unwrap();
    let image = &index["images"][0];
    assert_eq!(image["filteredFrom"], multi.as_str());
    assert_eq!(image["platforms"], serde_json::json!(["linux/arm64"]));
}

#[test]
fn create_authenticates_to_a_tls_registry_with_basic_auth() {
    let Some((env, reg)) = keyed_registry(&["--tls", "--htpasswd", "porter:right-Pa55"]) else { return };
    let certs = env.path("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(reg.ca(), certs.join("ca.crt")).unwrap();
    let dest = format!("docker://{}/src/busybox:1.36", reg.host);
    let src = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
    let certs_arg = format!("--dest-cert-dir={}", certs.display());
    tool("skopeo", &["copy", &certs_arg, "--dest-creds", "porter:right-Pa55", &src, &dest], &[]).ok();

    let ca = reg.ca().display().to_string();
    let source = format!("{}/src/busybox:1.36", reg.host);
    let create = |password: &str, ca_args: &[&str]| {
        let args =
            ["create", "-k", "ops.key", "-o", "b.tar", "--retries", "0", "--username", "porter", "--password-stdin"];
        env.run_with_stdin(&[&args[..], ca_args, &[source.as_str()]].concat(), format!("{password}\n").as_bytes())
    };
    create("right-Pa55", &[]).fails(EXIT_REGISTRY, &[&reg.host]);
    let wrong = create("wrong-Pa55", &["--ca-cert", &ca]).fails(EXIT_REGISTRY, &[&reg.host]);
    assert!(!wrong.stderr.contains("wrong-Pa55"), "{}", wrong.stderr);
    assert!(!env.path("b.tar").exists());
    create("right-Pa55", &["--ca-cert", &ca]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
}

#[test]
fn a_stopped_registry_is_named_and_leaves_no_output() {
    let Some((env, reg)) = keyed_registry(&[]) else { return };
    seed(&reg, "tools.oci.tar", "src/busybox:1.36");
    reg.stop();
    let src = format!("docker://{}/src/busybox:1.36", reg.host);
    let before = env.listing();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--retries", "0", &src]).fails(EXIT_REGISTRY, &[&reg.host]);
    assert_eq!(env.listing(), before);
}

#[test]
fn a_registry_serving_a_corrupt_layer_is_caught() {
    let Some((env, reg)) = keyed_registry(&[]) else { return };
    seed(&reg, "tools.oci.tar", "src/busybox:1.36");
    // Corrupt the layer in the registry's storage, keeping its size.
    let blobs = reg.dir.path().join("data/docker/registry/v2/blobs/sha256");
    let layer = walkdir::WalkDir::new(blobs)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() == "data")
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(layer.path()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(layer.path(), bytes).unwrap();
    let src = format!("docker://{}/src/busybox:1.36", reg.host);
    let before = env.listing();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).fails(EXIT_INTEGRITY, &["digest mismatch"]);
    assert_eq!(env.listing(), before);
}

/// Completed blobs in a `--cache` directory, with their inode and mtime.
fn cached(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|rd| rd.filter_map(|e| e.ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".partial"))
        .map(|e| {
            let m = e.metadata().unwrap();
            (e.file_name().to_string_lossy().into_owned(), m.ino(), m.modified().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn an_interrupted_create_with_a_cache_resumes_without_fetching_again() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    crate::common::big_layout(&env.path("big"), 6, 24 << 20);
    let reg = Registry::start(&[]);
    let layout = format!("oci:{}:example.com/big/image:1", env.path("big").display());
    let dest = format!("docker://{}/src/big:1", reg.host);
    tool("skopeo", &["copy", "--dest-tls-verify=false", &layout, &dest], &[]).ok();
    let src = format!("docker://{}/src/big:1", reg.host);
    let cache = env.path("cache");

    // Stop the registry once the cache holds its first complete blob.
    let mut create = env.cmd();
    create.args(["create", "-k", "ops.key", "-o", "b.tar", "--cache", "cache", "--jobs", "1", "--retries", "1", &src]);
    let child = create.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while cached(&cache).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    reg.stop();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_REGISTRY), "the create must fail when its registry dies: {err}");
    assert!(err.contains(&reg.host), "{err}");
    assert!(!env.path("b.tar").exists());
    let landed = cached(&cache);
    assert!(!landed.is_empty());

    reg.restart(&[]);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--cache", "cache", &src]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    let after = cached(&cache);
    for blob in &landed {
        assert!(after.contains(blob), "{} was fetched again", blob.0);
    }

    // A corrupt cached blob is noticed, fetched again, and the bundle is still right.
    let victim = cache.join("blobs/sha256").join(&landed[0].0);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "c.tar", "--cache", "cache", &src]).ok();
    env.run(&["verify", "-p", "ops.pub", "c.tar"]).ok();
}

#[test]
fn a_hauler_image_list_with_per_image_platforms_is_honoured() {
    let Some((env, reg)) = keyed_registry(&[]) else { return };
    seed(&reg, "multiarch.oci.tar", "src/multi:2.0");
    seed(&reg, "tools.oci.tar", "src/busybox:1.36");
    let list = format!(
        "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nmetadata:\n  name: airgap\nspec:\n  images:\n    - name: {0}/src/multi:2.0\n      platform: linux/arm64\n    - name: {0}/src/busybox:1.36\n",
        reg.host
    );
    std::fs::write(env.path("images.yaml"), list).unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "images.yaml"]).ok();
    let got = images(&env, "b.tar");
    let platforms =
        |repo: &str| got.iter().find(|i| i["name"].as_str().unwrap().contains(repo)).unwrap()["platforms"].clone();
    assert_eq!(platforms("src/multi"), serde_json::json!(["linux/arm64"]));
    assert_eq!(platforms("src/busybox"), serde_json::json!(["linux/amd64"]));

    std::fs::write(
        env.path("bad.yaml"),
        "kind: Images\nspec:\n  images:\n    - name: ok/image:1\n    - name: Not/Valid:1\n",
    )
    .unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "c.tar", "-f", "bad.yaml"])
        .fails(crate::common::EXIT_BAD_INPUT, &["bad.yaml:5"]);
}

#[test]
fn create_from_a_registry_that_never_answers_fails_within_its_timeout() {
    let env = Env::new();
    env.keygen("ops");
    let port = crate::fakes::silent_server();
    let src = format!("docker://127.0.0.1:{port}/src/busybox:1.36");
    let start = std::time::Instant::now();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--timeout", "8", &src])
        .fails(EXIT_REGISTRY, &[&format!("127.0.0.1:{port}"), "did not answer", "--timeout 8"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(12), "took {:?}", start.elapsed());
    assert!(!env.path("b.tar").exists());
}

/// A registry holding one image of two 4 MiB incompressible layers; returns the `docker://`
/// source and the raw manifest.
pub(crate) fn big_image(env: &Env, reg: &Registry) -> (String, Value) {
    crate::common::big_layout(&env.path("big"), 2, 4 << 20);
    let layout = format!("oci:{}:example.com/big/image:1", env.path("big").display());
    let dest = format!("docker://{}/src/big:1", reg.host);
    tool("skopeo", &["copy", "--dest-tls-verify=false", &layout, &dest], &[]).ok();
    let raw = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &dest], &[]).ok().stdout;
    (dest, serde_json::from_str(&raw).unwrap())
}

#[test]
fn a_download_reset_midway_is_resumed_in_the_same_run_with_and_without_a_cache() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let reg = Registry::start(&[]);
    big_image(&env, &reg);
    for cache in [None, Some("cache")] {
        let proxy = crate::fakes::CuttingProxy::on_answers(reg.host.clone(), 3 << 20);
        let src = format!("docker://127.0.0.1:{}/src/big:1", proxy.port);
        let mut args = vec!["create", "-k", "ops.key", "-o", "b.tar", "--jobs", "1", "--retries", "0", &src];
        args.extend(cache.map(|c| ["--cache", c]).iter().flatten());
        env.run(&args).ok();
        assert!(proxy.cut.load(std::sync::atomic::Ordering::SeqCst), "the proxy never cut a download");
        env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
        std::fs::remove_file(env.path("b.tar")).unwrap();
    }
}

#[test]
fn a_corrupt_partial_download_in_the_cache_is_fetched_again() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let reg = Registry::start(&[]);
    let (src, manifest) = big_image(&env, &reg);
    let layer = &manifest["layers"][0];
    let hex = layer["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
    let blobs = env.path("cache/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    // Half a blob's worth of bytes that are not its first half.
    std::fs::write(blobs.join(format!("{hex}.partial")), vec![0x5a; 2 << 20]).unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--cache", "cache", &src]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    assert!(blobs.join(hex).exists() && !blobs.join(format!("{hex}.partial")).exists());

    // A partial download that is a directory is the cache's problem, and says so.
    std::fs::remove_file(blobs.join(hex)).unwrap();
    std::fs::create_dir(blobs.join(format!("{hex}.partial"))).unwrap();
    let partial = format!("{hex}.partial");
    let run = env.run(&["create", "-k", "ops.key", "-o", "c.tar", "--cache", "cache", &src]);
    let run = run.fails(crate::common::EXIT_BAD_INPUT, &[&partial, "cache"]);
    assert!(!run.stderr.contains(&reg.host), "{}", run.stderr);
}

#[test]
fn create_fetches_many_images_at_once_over_as_many_connections_as_jobs() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let reg = Registry::start(&[]);
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &format!("{}/src", reg.host)]).ok();
    let doc: Value = serde_json::from_str(&env.run(&["inspect", "--json", "b.tar"]).ok().stdout).unwrap();
    let sources: Vec<String> = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("docker://{}/src/{}", reg.host, i["name"].as_str().unwrap().split_once('/').unwrap().1))
        .collect();
    let before = reg.connections();
    let mut args = vec!["create", "-k", "ops.key", "-o", "r.tar", "--jobs", "4"];
    args.extend(sources.iter().map(String::as_str));
    env.run(&args).ok();
    env.run(&["verify", "-p", "ops.pub", "r.tar"]).ok();
    assert_eq!(images(&env, "r.tar").len(), sources.len());
    let opened = reg.connections().difference(&before).count();
    let requests = reg.requests().len();
    // Four workers keep their connections.
    assert!(opened <= 4, "{opened} connections for {requests} requests with --jobs 4");
}

#[test]
fn an_index_naming_one_manifest_20000_times_costs_a_handful_of_requests() {
    // Without a visited set this index costs 40,000 requests (each child and its config again)
    // and lists the platform 20,000 times in the signed index.
    let Some((env, reg)) = keyed_registry(&[]) else { return };
    let child = seed(&reg, "tools.oci.tar", "src/fan:one");
    let tmp = tempfile::tempdir().unwrap();
    let opts = airlock::registry::ClientOptions {
        max_retries: 1,
        docker_config: Some(tmp.path().join("no-config.json")),
        ..Default::default()
    };
    let client = reg.client(opts);
    let (bytes, media_type) = client.get_manifest("src/fan", &child).unwrap();
    let desc = serde_json::json!({"mediaType": media_type, "digest": child, "size": bytes.len()});
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": vec![desc; 20_000],
    });
    let index = serde_json::to_vec(&index).unwrap();
    let oci_index = "application/vnd.oci.image.index.v1+json";
    client.put_manifest("src/fan", "many", oci_index, &index, &mut || Ok(())).unwrap();

    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let proxy = crate::fakes::RewritingProxy::start(&reg.host, move |_, head| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        head
    });
    let src = format!("docker://{}/src/fan:many", proxy.host);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    let n = requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n < 20, "create made {n} requests for an index of one distinct manifest");
    let got = images(&env, "b.tar");
    assert_eq!(got[0]["platforms"], serde_json::json!(["linux/amd64"]));
}

#[test]
fn the_platforms_of_an_index_are_fetched_at_once() {
    let Some((env, reg)) = keyed_registry(&[]) else { return };
    seed(&reg, "multiarch.oci.tar", "src/multi:2.0");
    // Every child manifest (asked by digest) is answered only once two are in flight, or after
    // 10 s: fetched one after another, never two would be (a fixed delay instead let a loaded
    // machine send the second request after the first was answered).
    let (now, peak) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicUsize::new(0)));
    let (n, p) = (now.clone(), peak.clone());
    let proxy = crate::fakes::RewritingProxy::start(&reg.host, move |req, head| {
        let line = req.lines().next().unwrap_or("");
        if !(line.starts_with("get ") && line.contains("/manifests/sha256:")) {
            return head;
        }
        p.fetch_max(n.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while p.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        n.fetch_sub(1, Ordering::SeqCst);
        head
    });
    let src = format!("docker://{}/src/multi:2.0", proxy.host);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    assert_eq!(peak.load(Ordering::SeqCst), 2, "both platforms' manifests at once");
}
