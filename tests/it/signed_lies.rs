//! Bundles that are correctly signed and still lie: the signer's key is used (as a compromised
//! build machine or a careless signer could) to sign an index whose names are paths or terminal
//! escapes, or whose `index.json`, `manifest.json` or `repositories` say something else than the
//! signed index, or whose manifests fan out without end. Every reader refuses them.

use std::io::Read;

use serde_json::Value;

use crate::common::{EXIT_INTEGRITY, Env, Peer, Run, skip_without};

/// The entries of a bundle, in order, as (name, bytes).
pub type Entries = Vec<(String, Vec<u8>)>;

/// Reads `input`, lets `edit` change the signed index and the entries, signs the index again
/// with `ops.key` and writes `output`: a bundle that verifies as far as the signature goes.
pub fn resign(env: &Env, input: &str, output: &str, edit: impl FnOnce(&mut Value, &mut Entries)) {
    let mut ar = tar::Archive::new(std::fs::File::open(env.path(input)).unwrap());
    let mut entries: Entries = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_str().unwrap().to_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    let mut index: Value = serde_json::from_slice(&entries[0].1).unwrap();
    edit(&mut index, &mut entries);
    let bytes = serde_json::to_vec_pretty(&index).unwrap();
    let text = std::fs::read_to_string(env.path("ops.key")).unwrap();
    let key = airlock::bundle::sign::SecretKey::from_box("ops.key", &text, || unreachable!("unencrypted")).unwrap();
    entries[1].1 = key.sign(&bytes, "resigned by a test").into_bytes();
    entries[0].1 = bytes;
    let mut out = tar::Builder::new(std::fs::File::create(env.path(output)).unwrap());
    for (name, data) in &entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append(&h, &data[..]).unwrap();
    }
    out.finish().unwrap();
}

/// Sets a file entry's bytes and its digest and size in the signed index.
pub fn set_file(index: &mut Value, entries: &mut Entries, path: &str, bytes: Vec<u8>) {
    use sha2::Digest as _;
    let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)));
    let f = index["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == path).unwrap();
    f["digest"] = digest.into();
    f["size"] = bytes.len().into();
    entries.iter_mut().find(|(n, _)| n == path).unwrap().1 = bytes;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn standard(env: &Env) {
    env.standard_bundle("b.tar").ok();
}

fn refused_by_every_reader(env: &Env, bundle: &str, needles: &[&str]) -> Run {
    env.run(&["export", "-p", "ops.pub", "--format", "oci", "-o", "out", bundle]).fails(EXIT_INTEGRITY, needles);
    assert!(!env.path("out").exists(), "export left a layout behind");
    // push checks the whole bundle before it contacts the registry (nothing listens here).
    env.run(&["push", "-p", "ops.pub", "--to", "127.0.0.1:9/mirror", bundle]).fails(EXIT_INTEGRITY, needles);
    env.run(&["verify", "-p", "ops.pub", bundle]).fails(EXIT_INTEGRITY, needles)
}

#[test]
fn a_signed_index_naming_a_path_or_terminal_escapes_is_refused_and_never_printed_raw() {
    let env = Env::new();
    standard(&env);
    for (name, shown) in [("../../x", "../../x"), ("example.com/a:1\u{1b}[2J\u{1b}[31m", "\\u{1b}[2J")] {
        resign(&env, "b.tar", "bad.tar", |index, _| index["images"][0]["name"] = name.into());
        let run = refused_by_every_reader(&env, "bad.tar", &["bad.tar", "not a valid image reference", shown]);
        assert!(!run.stderr.contains('\u{1b}'), "a raw escape reached the terminal:\n{}", run.stderr);
        let run = env.run(&["inspect", "bad.tar"]);
        assert_ne!(run.code, 0, "inspect printed the index:\n{}", run.stdout);
        assert!(!run.stderr.contains('\u{1b}') && !run.stdout.contains('\u{1b}'), "inspect printed a raw escape");
    }
}

/// Edits a JSON view of the bundle and re-signs the index that lists it.
fn lie_in_view(env: &Env, path: &str, edit: impl FnOnce(&mut Value)) {
    resign(env, "b.tar", "bad.tar", |index, entries| {
        let mut view: Value = serde_json::from_slice(&entries.iter().find(|(n, _)| n == path).unwrap().1).unwrap();
        edit(&mut view);
        set_file(index, entries, path, serde_json::to_vec(&view).unwrap());
    });
}

#[test]
fn views_that_name_another_image_than_the_signed_index_are_refused_by_every_reader() {
    let env = Env::new();
    standard(&env);
    lie_in_view(&env, "index.json", |v| {
        let first = v["manifests"][0].clone();
        v["manifests"][0]["digest"] = v["manifests"][1]["digest"].clone();
        v["manifests"][0]["size"] = v["manifests"][1]["size"].clone();
        v["manifests"][1]["digest"] = first["digest"].clone();
        v["manifests"][1]["size"] = first["size"].clone();
    });
    refused_by_every_reader(&env, "bad.tar", &["bad.tar: index.json", "something other than the signed index"]);
    lie_in_view(&env, "manifest.json", |v| v[0]["RepoTags"][0] = "evil.example/other:1".into());
    refused_by_every_reader(&env, "bad.tar", &["bad.tar: manifest.json", "something other than the signed index"]);
    lie_in_view(&env, "repositories", |v| {
        let (k, val) = v.as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
        v.as_object_mut().unwrap().remove(&k);
        v["evil.example/other"] = val;
    });
    refused_by_every_reader(&env, "bad.tar", &["bad.tar: repositories", "something other than the signed index"]);
}

/// An index of `count` copies of one descriptor.
fn fan_out(child: &Value, count: usize) -> Vec<u8> {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": vec![child.clone(); count],
    });
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn a_signed_fan_out_of_nested_indexes_is_refused_at_once_by_every_reader() {
    // Five levels of indexes, each naming the one below 20,000 times: 20,000^5 paths to walk
    // without a visited set; with one, five reads and the depth limit.
    use sha2::Digest as _;
    let env = Env::new();
    standard(&env);
    resign(&env, "b.tar", "bad.tar", |index, entries| {
        let img = index["images"]
            .as_array()
            .unwrap()
            .iter()
            .position(|i| i["platforms"].as_array().unwrap().len() == 2)
            .unwrap();
        let mut below = serde_json::json!({
            "mediaType": index["images"][img]["mediaType"], "digest": index["images"][img]["digest"], "size": index["images"][img]["size"],
        });
        for _ in 0..5 {
            let bytes = fan_out(&below, 20_000);
            let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)));
            below = serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": bytes.len()});
            index["blobs"].as_array_mut().unwrap().push(below.clone());
            index["images"][img]["blobs"].as_array_mut().unwrap().push(digest.clone().into());
            entries.push((format!("blobs/sha256/{}", &digest[7..]), bytes));
        }
        index["images"][img]["digest"] = below["digest"].clone();
        index["images"][img]["size"] = below["size"].clone();
    });
    refused_by_every_reader(
        &env,
        "bad.tar",
        &["bad.tar: image registry.example/team/multi:2.0", "nest deeper than 4 levels"],
    );
}

#[test]
fn fat_manifests_are_checked_one_at_a_time_in_bounded_memory() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // 40 listed "manifests" of 4 MiB each, under --insecure-no-signature: all held at once they
    // cost hundreds of MiB; one at a time, a few.
    use sha2::Digest as _;
    let env = Env::new();
    standard(&env);
    resign(&env, "b.tar", "fat.tar", |index, entries| {
        for i in 0..40 {
            let pad = format!("{i:08}").repeat(500_000);
            let doc = serde_json::json!({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [], "annotations": {"pad": pad},
            });
            let bytes = serde_json::to_vec(&doc).unwrap();
            let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)));
            index["blobs"].as_array_mut().unwrap().push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": bytes.len(),
            }));
            entries.push((format!("blobs/sha256/{}", &digest[7..]), bytes));
        }
    });
    let (code, rss_kib, stderr) = crate::hostile::peak_rss(&env, &["verify", "--insecure-no-signature", "fat.tar"]);
    assert_eq!(code, 0, "{stderr}");
    eprintln!("verify of 40 fat manifests: peak RSS {} MiB", rss_kib / 1024);
    assert!(rss_kib < 120 * 1024, "verify of 40 fat manifests peaked at {} MiB", rss_kib / 1024);
}
