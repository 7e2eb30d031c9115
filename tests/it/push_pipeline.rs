//! `airlock push` runs one pipeline per image, side by side: what must still hold is that each
//! blob crosses the network once, that child manifests go before the index naming them, and that
//! tags go last, after every image is complete, so a failure in one image tags none.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Env, Peer, Registry, skip_without};
use crate::fakes::RewritingProxy;
use crate::push::{EXIT_REGISTRY, PLAIN, push_json, registry_digest, signed_images, target};

/// The bundle's signed index (its first entry).
fn signed_index(env: &Env, bundle: &str) -> Value {
    let mut tar = tar::Archive::new(std::fs::File::open(env.path(bundle)).unwrap());
    serde_json::from_reader(tar.entries().unwrap().next().unwrap().unwrap()).unwrap()
}

/// Digests of the configs and layers (not manifests) of the signed index.
fn content_blobs(index: &Value) -> BTreeSet<String> {
    let roots: BTreeSet<&str> =
        index["images"].as_array().unwrap().iter().map(|i| i["digest"].as_str().unwrap()).collect();
    index["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            !b["mediaType"].as_str().unwrap().contains("manifest")
                && !b["mediaType"].as_str().unwrap().contains("index")
        })
        .map(|b| b["digest"].as_str().unwrap().to_owned())
        .filter(|d| !roots.contains(d.as_str()))
        .collect()
}

#[test]
fn push_sends_each_blob_once_and_tags_after_every_blob_and_child_manifest() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let reg = Registry::start(&[]);
    push_json(&env, &["--to", &format!("{}/mirror", reg.host)]);
    // A log line is written when its body ends, after the client has the answer: read it whole.
    reg.stop();
    let requests = reg.requests();
    let uploads: Vec<&String> =
        requests.iter().filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/")).collect();
    let blobs = content_blobs(&signed_index(&env, "b.tar"));
    assert_eq!(uploads.len(), blobs.len(), "one upload per blob: {uploads:#?}");
    let manifest_put = |r: &String| r.starts_with("PUT ") && r.contains("/manifests/");
    let by_digest = |r: &String| r.contains("/manifests/sha256:");
    let first_tag = requests.iter().position(|r| manifest_put(r) && !by_digest(r)).expect("tags were pushed");
    let last_blob = requests.iter().rposition(|r| r.contains("/blobs/uploads/")).unwrap();
    let last_child = requests.iter().rposition(|r| manifest_put(r) && by_digest(r)).expect("a child manifest");
    assert!(last_blob < first_tag && last_child < first_tag, "tags must come last: {requests:#?}");
}

#[test]
fn a_blob_failing_in_one_image_tags_no_image_though_the_others_are_complete() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let index = signed_index(&env, "b.tar");
    // A blob only one image has: the registry refuses its upload only once another image is
    // writing its child manifests, i.e. is complete below its tag.
    let mut users = std::collections::BTreeMap::<&str, usize>::new();
    for image in index["images"].as_array().unwrap() {
        for d in image["blobs"].as_array().unwrap() {
            *users.entry(d.as_str().unwrap()).or_default() += 1;
        }
    }
    let blobs = content_blobs(&index);
    let doomed = blobs.iter().find(|d| users[d.as_str()] == 1).unwrap().clone();
    let reg = Registry::start(&[]);
    let needle = format!("digest={doomed}");
    let child_written = std::sync::atomic::AtomicBool::new(false);
    let proxy = RewritingProxy::start(&reg.host, move |req, head| {
        let line = req.lines().next().unwrap();
        if line.starts_with("put ") && line.contains("/manifests/sha256:") {
            child_written.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if !(req.starts_with("put ") && line.contains(&needle)) {
            return head;
        }
        // Not after a fixed second, which a loaded machine could spend before any image got that
        // far; a push whose other images waited for this blob writes no child, and then the
        // refusal comes after 60 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !child_written.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0".to_owned()
    });
    let to = format!("{}/mirror", proxy.host);
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to]).fails(EXIT_REGISTRY, &[&doomed, "HTTP 400"]);
    for (name, _) in signed_images(&env, "b.tar") {
        assert_eq!(registry_digest(&target(&reg, &name), PLAIN), None, "{name} must not be tagged");
    }
    reg.stop();
    let children = reg.requests().into_iter().filter(|r| r.starts_with("PUT ") && r.contains("/manifests/sha256:"));
    assert!(children.count() > 0, "the other images went ahead up to their tags");
}
