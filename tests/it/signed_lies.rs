//! Bundles that are correctly signed and still lie: the signer's key is used (as a compromised
//! build machine or a careless signer could) to sign an index whose names are paths or terminal
//! escapes, or whose `index.json`, `manifest.json` or `repositories` say something else than the
//! signed index, or whose manifests fan out without end. Every reader refuses them.

use std::io::Read;

use serde_json::Value;

use crate::common::{EXIT_INTEGRITY, Env, Run};

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

fn standard(env: &Env) {
    env.standard_bundle("b.tar").ok();
}

fn refused_by_every_reader(env: &Env, bundle: &str, needles: &[&str]) -> Run {
    env.run(&["export", "-p", "ops.pub", "--format", "oci", "-o", "out", bundle]).fails(EXIT_INTEGRITY, needles);
    assert!(!env.path("out").exists(), "export left a layout behind");
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
