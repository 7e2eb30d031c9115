//! `airlock verify` and `inspect` on good bundles and on bundles tampered with byte by byte
//! (by `tests/hostile.py`): a good bundle verifies and says by which key; every change to a blob,
//! to the signed index or to the archive structure is refused with the right exit code and a
//! message that names the entry, digest or key.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{EXIT_INTEGRITY, EXIT_TRUST, Env, Peer, Run, skip_without};
use crate::hostile::{field, make};

/// The standard bundle `b.tar` signed by `ops`; returns the key id of `ops.pub`.
fn bundle(env: &Env) -> String {
    env.standard_bundle("b.tar").ok();
    key_id(env, "ops")
}

/// The key id minisign prints, from the public key file's comment line.
fn key_id(env: &Env, name: &str) -> String {
    let text = std::fs::read_to_string(env.path(&format!("{name}.pub"))).unwrap();
    let first = text.lines().next().unwrap();
    let id = first.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(id.len(), 16, "key id in {first:?}");
    id
}

/// The signed index, read with tar like any user could.
fn signed_index(env: &Env, bundle: &str) -> Value {
    let mut ar = tar::Archive::new(std::fs::File::open(env.path(bundle)).unwrap());
    let mut entry = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("airlock.json"));
    serde_json::from_reader(&mut entry).unwrap()
}

/// Tampers with b.tar by `case`, writing `bad.tar`, and verifies it with ops.pub.
fn verify_tampered(env: &Env, case: &str) -> (Value, Run) {
    let info = make(env, case, "bad.tar", Some("b.tar"));
    (info, env.run(&["verify", "-p", "ops.pub", "bad.tar"]))
}

const IMAGES: [(&str, &str); 6] = [
    ("example.com/team/base:1.0", "linux/amd64"),
    ("example.com/team/web:1.4", "linux/amd64"),
    ("example.com/team/web:latest", "linux/amd64"),
    ("registry.example/team/app:1.4", "linux/amd64"),
    ("registry.example/team/multi:2.0", "linux/amd64,linux/arm64"),
    ("registry.example/tools/busybox:1.36", "linux/amd64"),
];

#[test]
fn a_good_bundle_verifies_names_the_key_and_reports_every_blob_in_json() {
    let env = Env::new();
    let id = bundle(&env);
    let run = env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    assert!(run.stdout.contains(&format!("signature by key {id} verified")), "{}", run.stdout);
    for (name, _) in IMAGES {
        assert!(run.stdout.contains(name), "{name} not listed:\n{}", run.stdout);
    }

    let run = env.run(&["verify", "--json", "-p", "ops.pub", "b.tar"]).ok();
    let report: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert_eq!(report["result"], "ok");
    assert_eq!(report["signature"]["checked"], true);
    assert_eq!(report["signature"]["keyId"], id.as_str());
    let index = signed_index(&env, "b.tar");
    let want: BTreeSet<&str> =
        index["blobs"].as_array().unwrap().iter().map(|b| b["digest"].as_str().unwrap()).collect();
    let blobs = report["blobs"].as_array().unwrap();
    let got: BTreeSet<&str> = blobs.iter().map(|b| b["digest"].as_str().unwrap()).collect();
    assert_eq!(got, want, "the report lists every blob of the signed index");
    for b in blobs {
        let checked = b["checked"].as_array().unwrap();
        assert!(checked.contains(&"sha256".into()) && checked.contains(&"size".into()), "{b}");
    }
    assert_eq!(report["counts"]["blobs"], want.len());
}

#[test]
fn a_flipped_byte_in_a_blob_fails_integrity_naming_the_entry_and_digest() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    bundle(&env);
    let (info, run) = verify_tampered(&env, "bundle-flip-blob");
    run.fails(EXIT_INTEGRITY, &["bad.tar", field(&info, "entry"), &format!("expected {}", field(&info, "digest"))]);

    let run = env.run(&["verify", "--json", "-p", "ops.pub", "bad.tar"]);
    assert_eq!(run.code, EXIT_INTEGRITY);
    let report: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON on failure too");
    assert_eq!(report["result"], "failed");
    assert!(report["error"].as_str().unwrap().contains(field(&info, "digest")), "{report}");
}

#[test]
fn a_flipped_byte_in_the_signed_index_fails_trust() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    let id = bundle(&env);
    let (_, run) = verify_tampered(&env, "bundle-flip-index");
    run.fails(EXIT_TRUST, &["bad.tar", "signature does not verify", &id]);
}

#[test]
fn the_wrong_public_key_fails_trust_naming_both_key_ids() {
    let env = Env::new();
    let signer = bundle(&env);
    env.keygen("other");
    let other = key_id(&env, "other");
    assert_ne!(signer, other);
    env.run(&["verify", "-p", "other.pub", "b.tar"]).fails(EXIT_TRUST, &["b.tar", &signer, &other]);
}

#[test]
fn verify_without_a_key_or_the_insecure_flag_is_a_usage_error() {
    let env = Env::new();
    bundle(&env);
    env.run(&["verify", "b.tar"]).fails(2, &["--public-key"]);
}

#[test]
fn insecure_no_signature_still_checks_contents_and_says_the_signature_was_not_checked() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    let id = bundle(&env);
    let run = env.run(&["verify", "--insecure-no-signature", "b.tar"]).ok();
    assert!(run.stdout.contains("SIGNATURE NOT CHECKED"), "{}", run.stdout);
    assert!(!run.stdout.contains(&id), "no key was used:\n{}", run.stdout);
    let run = env.run(&["verify", "--json", "--insecure-no-signature", "b.tar"]).ok();
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["signature"]["checked"], false);

    let info = make(&env, "bundle-flip-blob", "bad.tar", Some("b.tar"));
    env.run(&["verify", "--insecure-no-signature", "bad.tar"])
        .fails(EXIT_INTEGRITY, &[field(&info, "entry"), "digest mismatch"]);
}

fn says_truncated_or_missing(run: &Run) {
    assert!(
        run.stderr.contains("truncated") || run.stderr.contains("missing"),
        "the message should say the bundle is truncated or an entry is missing:\n{}",
        run.stderr
    );
}

#[test]
fn a_bundle_cut_in_the_middle_of_a_blob_is_reported_as_truncated() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    bundle(&env);
    let (info, run) = verify_tampered(&env, "bundle-truncated-mid-blob");
    let run = run.fails(EXIT_INTEGRITY, &["bad.tar", field(&info, "entry")]);
    says_truncated_or_missing(&run);
}

#[test]
fn a_bundle_cut_at_an_entry_boundary_is_reported_as_truncated_or_missing() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    bundle(&env);
    // No end marker: the archive itself is visibly cut.
    let (_, run) = verify_tampered(&env, "bundle-truncated-at-boundary");
    says_truncated_or_missing(&run.fails(EXIT_INTEGRITY, &["bad.tar"]));
    // A clean end marker after the cut: the signed index still knows what is missing.
    let (info, run) = verify_tampered(&env, "bundle-truncated-at-boundary-with-end-marker");
    says_truncated_or_missing(&run.fails(EXIT_INTEGRITY, &["bad.tar", field(&info, "digest")]));
}

#[test]
fn trailing_garbage_after_a_bundle_is_refused() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    bundle(&env);
    let (info, run) = verify_tampered(&env, "bundle-trailing-garbage");
    run.fails(EXIT_INTEGRITY, &["bad.tar", "trailing garbage", &format!("at byte {}", info["at"])]);
}

#[test]
fn an_entry_not_in_the_signed_index_is_refused() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    bundle(&env);
    let (info, run) = verify_tampered(&env, "bundle-extra-entry");
    run.fails(EXIT_INTEGRITY, &["bad.tar", field(&info, "entry"), "not listed in the signed index"]);
}

#[test]
fn a_duplicate_entry_is_refused() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    bundle(&env);
    let (info, run) = verify_tampered(&env, "bundle-duplicate-entry");
    run.fails(EXIT_INTEGRITY, &["bad.tar", field(&info, "entry"), "duplicate entry"]);
}

#[test]
fn a_symlink_or_a_pax_header_inside_a_bundle_is_refused() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    bundle(&env);
    let (info, run) = verify_tampered(&env, "bundle-symlink-entry");
    run.fails(EXIT_INTEGRITY, &["bad.tar", field(&info, "entry"), "a link", "only regular files"]);
    let (info, run) = verify_tampered(&env, "bundle-pax-header-entry");
    run.fails(EXIT_INTEGRITY, &["bad.tar", field(&info, "entry"), "PAX extension header", "only regular files"]);
}

#[test]
fn verify_reads_a_bundle_from_stdin() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    let id = bundle(&env);
    let out = env
        .cmd()
        .args(["verify", "-p", "ops.pub", "-"])
        .stdin(std::fs::File::open(env.path("b.tar")).unwrap())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "verify from stdin failed:\n{stderr}");
    assert!(stdout.contains(&format!("signature by key {id} verified")), "{stdout}");

    // A tampered bundle on stdin is refused the same way, naming stdin as the place.
    let info = make(&env, "bundle-flip-blob", "bad.tar", Some("b.tar"));
    let out = env
        .cmd()
        .args(["verify", "-p", "ops.pub", "-"])
        .stdin(std::fs::File::open(env.path("bad.tar")).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY), "{stderr}");
    assert!(stderr.contains("<stdin>") && stderr.contains(field(&info, "entry")), "{stderr}");
}

#[test]
fn inspect_lists_every_image_with_its_platforms() {
    let env = Env::new();
    bundle(&env);
    let run = env.run(&["inspect", "b.tar"]).ok();
    for (name, platforms) in IMAGES {
        let line = run.stdout.lines().find(|l| l.split_whitespace().next() == Some(name));
        let line = line.unwrap_or_else(|| panic!("{name} not listed:\n{}", run.stdout));
        assert_eq!(line.split_whitespace().nth(1), Some(platforms), "{line}");
    }
    assert!(run.stdout.contains("not verified"), "inspect says it did not verify:\n{}", run.stdout);

    let run = env.run(&["inspect", "--json", "b.tar"]).ok();
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["verified"], false);
    let got: Vec<(String, String)> = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let p: Vec<&str> = i["platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
            (i["name"].as_str().unwrap().to_owned(), p.join(","))
        })
        .collect();
    let want: Vec<(String, String)> = IMAGES.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn a_file_read_in_parallel_and_a_pipe_read_in_order_refuse_every_tampered_bundle_alike() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // A file is verified blob by blob on every core (positional reads), a pipe as one stream:
    // both must refuse the same bundles, with the same exit code, naming the same entry.
    let env = Env::new();
    bundle(&env);
    let cases = [
        ("bundle-flip-blob", Some("entry")),
        ("bundle-truncated-mid-blob", Some("entry")),
        ("bundle-truncated-at-boundary", None),
        ("bundle-duplicate-entry", None),
        ("bundle-extra-entry", None),
        ("bundle-trailing-garbage", None),
    ];
    for (case, names) in cases {
        let info = make(&env, case, "bad.tar", Some("b.tar"));
        let needles: Vec<&str> = names.iter().map(|k| field(&info, k)).collect();
        env.run(&["verify", "-p", "ops.pub", "bad.tar"]).fails(EXIT_INTEGRITY, &[&["bad.tar"], &needles[..]].concat());
        let run = env.run_with_stdin_file(&["verify", "-p", "ops.pub", "-"], "bad.tar");
        run.fails(EXIT_INTEGRITY, &[&["<stdin>"], &needles[..]].concat());
    }
}

/// Copies bundle `from` to `to` with the text of its signature entry changed by `edit`.
fn with_signature(env: &Env, from: &str, to: &str, edit: impl Fn(&str) -> String) {
    let mut src = tar::Archive::new(std::fs::File::open(env.path(from)).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(env.path(to)).unwrap());
    for entry in src.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if entry.path().unwrap().to_str() == Some("airlock.json.minisig") {
            data = edit(std::str::from_utf8(&data).unwrap()).into_bytes();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.append(&header, &data[..]).unwrap();
    }
    out.finish().unwrap();
}

/// Found by `cargo fuzz run minisign` (fuzz/regressions/minisign): the minisign crate panicked on
/// a global signature (the last line) shorter than 64 bytes.
#[test]
fn a_signature_whose_last_line_is_cut_fails_trust_without_a_panic() {
    let env = Env::new();
    bundle(&env);
    with_signature(&env, "b.tar", "cut.tar", |sig| {
        let lines: Vec<&str> = sig.lines().collect();
        format!("{}\n{}\n{}\n{}\n", lines[0], lines[1], lines[2], &lines[3][..72])
    });
    env.run(&["verify", "-p", "ops.pub", "cut.tar"])
        .fails(EXIT_TRUST, &["cut.tar", "global signature is not 64 bytes"]);
}
