//! Text from a hostile file that ends up in an error message: a media type, a digest, a JSON key
//! or unknown field, a list's `kind`, a bundle index's media type, each carrying terminal escapes
//! and ten thousand characters. The message must show it escaped and cut, whichever parser quotes
//! it.

use serde_json::{Value, json};

use crate::common::{EXIT_BAD_INPUT, Env, Run};

/// Terminal escapes (clear the screen, turn red) and a long tail.
fn hostile(prefix: &str) -> String {
    format!("{prefix}\x1b[2J\x1b[31m{}", "y".repeat(10_000))
}

/// A copy of fixtures/oci-layout at `name` whose `index.json` is `edit`ed (given the layout's
/// directory, to add blobs); the first image is `base`.
fn layout(env: &Env, name: &str, edit: impl FnOnce(&std::path::Path, &mut Value) -> Option<String>) {
    let dir = crate::inputs::copy_layout_to(env, name);
    let mut index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let text = edit(&dir, &mut index).unwrap_or_else(|| index.to_string());
    std::fs::write(dir.join("index.json"), text).unwrap();
}

/// Writes `bytes` as a blob of the layout at `dir`; its digest.
fn add_blob(dir: &std::path::Path, bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

fn shown_escaped(run: Run, needle: &str) {
    let run = run.fails(EXIT_BAD_INPUT, &[needle, "\\u{1b}[2J\\u{1b}[31myyy", "more characters"]);
    assert!(!run.stderr.contains('\x1b'), "a raw escape reached the terminal:\n{}", run.stderr);
    assert!(run.stderr.len() < 4096, "the message was not cut: {} bytes", run.stderr.len());
}

#[test]
fn hostile_text_in_a_source_is_shown_escaped_and_cut_in_the_message() {
    let env = Env::new();
    env.keygen("ops");
    layout(&env, "media-type", |_, index| {
        index["manifests"][0]["mediaType"] = json!(hostile("x"));
        None
    });
    layout(&env, "digest", |_, index| {
        index["manifests"][0]["digest"] = json!(hostile("sha256:"));
        None
    });
    layout(&env, "key", |_, index| {
        let text = index.to_string();
        let key = serde_json::to_string(&hostile("k")).unwrap();
        Some(format!("{{{key}:1,{key}:2,{}", &text[1..]))
    });
    layout(&env, "confusion", |dir, index| {
        let first = &mut index["manifests"][0];
        let hex = first["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
        let mut manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap();
        manifest["mediaType"] = json!(hostile("application/"));
        let bytes = manifest.to_string().into_bytes();
        first["digest"] = json!(add_blob(dir, &bytes));
        first["size"] = json!(bytes.len());
        None
    });
    let create =
        |name: &str| env.run(&["create", "-k", "ops.key", "-o", "b.tar", &format!("oci:{name}:base=example.com/a:1")]);
    shown_escaped(create("media-type"), "unsupported manifest media type `x");
    shown_escaped(create("digest"), "is not a sha256 digest");
    shown_escaped(create("key"), "duplicate key `k");
    shown_escaped(create("confusion"), "document says `application/");

    let list = format!(
        "apiVersion: content.hauler.cattle.io/v1\nkind: {}\nspec:\n  images: []\n",
        serde_json::to_string(&hostile("Im")).unwrap()
    );
    std::fs::write(env.path("list.yaml"), list).unwrap();
    shown_escaped(env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "list.yaml"]), "kind `Im");
    let list = format!("kind: Images\nspec: {}\n", serde_json::to_string(&hostile("sp")).unwrap());
    std::fs::write(env.path("list.yaml"), list).unwrap();
    let run = env.run(&["create", "-k", "ops.key", "-o", "b.tar", "-f", "list.yaml"]);
    shown_escaped(run, "not an image list: spec: invalid type: string \"sp");
    assert!(!env.path("b.tar").exists(), "{:?}", env.listing());
}

/// An index file (`airlock index`) whose signed index is `edit`ed; `diff` reads it unverified.
fn index_file(env: &Env, out: &str, edit: impl FnOnce(&mut Value)) {
    let (index, sig) = crate::hostile_files::entries(env, "b.idx");
    let mut index: Value = serde_json::from_slice(&index).unwrap();
    edit(&mut index);
    crate::hostile_files::tar_of(
        env,
        out,
        &[("airlock.json", index.to_string().as_bytes()), ("airlock.json.minisig", &sig)],
    );
}

#[test]
fn hostile_text_in_a_bundle_index_is_shown_escaped_and_cut_in_the_message() {
    let env = Env::new();
    env.keygen("ops");
    crate::inputs::copy_layout_to(&env, "b");
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "oci:b:base=example.com/a:1"]).ok();
    env.run(&["index", "-o", "b.idx", "b.tar"]).ok();
    index_file(&env, "field.idx", |index| index[hostile("k")] = json!(1));
    index_file(&env, "media-type.idx", |index| index["mediaType"] = json!(hostile("x")));
    shown_escaped(env.run(&["diff", "b.idx", "field.idx"]), "unknown field `k");
    shown_escaped(
        env.run(&["diff", "b.idx", "media-type.idx"]),
        "unsupported bundle index (schemaVersion 2, mediaType `x",
    );
}
