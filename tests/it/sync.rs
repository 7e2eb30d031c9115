//! Recurring one-way sync on the isolated side: a bundle carries a series, a sequence number and
//! an expiry in its signed index, and the importers (`push`, `export`, `load`) refuse a replayed
//! older bundle, an expired one, and a second import racing on the same state, unless told.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    ClosedPort, EXIT_BAD_INPUT, EXIT_TRUST, Env, Peer, Registry, Run, fixture_str, skip_without, tool,
};
use crate::fakes::silent_server;
use crate::push::EXIT_REGISTRY;
use crate::signed_lies::resign;

/// A bundle of one image of the committed OCI layout (`base` or `web-1.4`), always named
/// `example.com/sync/app:1`, signed with `ops.key`.
fn bundle(env: &Env, out: &str, layout_ref: &str, extra: &[&str]) {
    if !env.path("ops.key").exists() {
        env.keygen("ops");
    }
    let src = format!("oci:{}:{layout_ref}=example.com/sync/app:1", fixture_str("oci-layout"));
    let mut args = vec!["create", "-k", "ops.key", "-o", out, "--created", "2026-01-01T00:00:00Z"];
    args.extend_from_slice(extra);
    args.push(&src);
    env.run(&args).ok();
}

fn export(env: &Env, bundle: &str, out: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["export", "-p", "ops.pub", bundle, "--format", "oci", "-o", out];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn signed_digest(env: &Env, bundle: &str) -> String {
    let doc: Value = serde_json::from_str(&env.run(&["inspect", "--json", bundle]).ok().stdout).unwrap();
    doc["images"][0]["digest"].as_str().unwrap().to_owned()
}

fn registry_digest(reference: &str) -> String {
    let image = format!("docker://{reference}");
    let run = tool("skopeo", &["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &image], &[]).ok();
    run.stdout.trim().to_owned()
}

#[test]
fn replaying_an_older_bundle_after_a_newer_one_is_refused_and_tags_nothing() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    bundle(&env, "old.tar", "base", &["--sequence", "1"]);
    bundle(&env, "new.tar", "web-1.4", &["--sequence", "2"]);
    let reg = Registry::start(&[]);
    let to = format!("{}/mirror", reg.host);
    let tag = format!("{}/mirror/sync/app:1", reg.host);
    env.run(&["push", "-p", "ops.pub", "new.tar", "--to", &to]).ok();
    assert_eq!(registry_digest(&tag), signed_digest(&env, "new.tar"));

    env.run(&["push", "-p", "ops.pub", "old.tar", "--to", &to])
        .fails(EXIT_TRUST, &["old.tar", "series `default`", "sequence 1 is not after 2", "--allow-rollback"]);
    assert_eq!(registry_digest(&tag), signed_digest(&env, "new.tar"), "the tag was not rolled back");

    let forced = env.run(&["push", "-p", "ops.pub", "old.tar", "--to", &to, "--allow-rollback"]).ok();
    assert!(forced.stderr.contains("applying it because of --allow-rollback"), "{}", forced.stderr);
    assert_eq!(registry_digest(&tag), signed_digest(&env, "old.tar"));
    // The state keeps the highest sequence: the replay did not lower the bar.
    env.run(&["push", "-p", "ops.pub", "old.tar", "--to", &to]).fails(EXIT_TRUST, &["sequence 1 is not after 2"]);
}

#[test]
fn an_expired_bundle_is_refused_unless_allowed_and_verify_says_so() {
    let env = Env::new();
    bundle(&env, "b.tar", "base", &["--expires", "1d"]);
    let verified = env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    assert!(verified.stdout.contains("EXPIRED at 2026-01-02T00:00:00Z"), "{}", verified.stdout);
    let inspected = env.run(&["inspect", "b.tar"]).ok();
    assert!(inspected.stdout.contains("series default, sequence 1767225600, EXPIRED"), "{}", inspected.stdout);

    export(&env, "b.tar", "out", &[]).fails(EXIT_TRUST, &["b.tar: expired at 2026-01-02T00:00:00Z", "--allow-expired"]);
    assert!(!env.path("out").exists());
    let run = export(&env, "b.tar", "out", &["--allow-expired"]).ok();
    assert!(run.stderr.contains("applying it because of --allow-expired"), "{}", run.stderr);
}

#[test]
fn a_gap_is_accepted_and_told_and_the_state_lands_under_xdg_state_home() {
    let env = Env::new();
    bundle(&env, "b5.tar", "base", &["--series", "nightly", "--sequence", "5"]);
    bundle(&env, "b7.tar", "web-1.4", &["--series", "nightly", "--sequence", "7"]);
    let first = export(&env, "b5.tar", "out5", &[]).ok();
    assert!(first.stderr.contains("series `nightly` of key"), "{}", first.stderr);
    assert!(first.stderr.contains("first bundle applied here (sequence 5)"), "{}", first.stderr);
    let gap = export(&env, "b7.tar", "out7", &[]).ok();
    assert!(gap.stderr.contains("sequence 7 follows 5, a gap of 1"), "{}", gap.stderr);
    let state = std::fs::read_to_string(env.state.path().join("airlock/state.json")).unwrap();
    let doc: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(doc["applied"][0]["series"], "nightly");
    assert_eq!(doc["applied"][0]["sequence"], 7);
}

#[test]
fn a_failed_import_does_not_advance_the_state() {
    let env = Env::new();
    bundle(&env, "b2.tar", "base", &["--sequence", "2"]);
    bundle(&env, "b3.tar", "web-1.4", &["--sequence", "3"]);
    std::fs::create_dir(env.path("taken")).unwrap();
    export(&env, "b3.tar", "taken", &["--state", "s.json"]).fails(EXIT_BAD_INPUT, &["already exists"]);
    assert!(!env.path("s.json").exists(), "nothing recorded");
    export(&env, "b2.tar", "out2", &["--state", "s.json"]).ok();
    export(&env, "b3.tar", "out3", &["--state", "s.json"]).ok();
    export(&env, "b2.tar", "again", &["--state", "s.json"]).fails(EXIT_TRUST, &["sequence 2 is not after 3"]);
}

#[test]
fn a_version_1_bundle_still_verifies_and_imports_and_says_it_is_unchecked() {
    let env = Env::new();
    bundle(&env, "b.tar", "base", &[]);
    resign(&env, "b.tar", "v1.tar", |index, _| {
        let o = index.as_object_mut().unwrap();
        o.insert("schemaVersion".into(), 1.into());
        for field in ["series", "sequence", "expires"] {
            o.remove(field);
        }
    });
    let verified = env.run(&["verify", "-p", "ops.pub", "v1.tar"]).ok();
    assert!(verified.stdout.contains("no series or sequence number (schema version 1 bundle)"), "{}", verified.stdout);
    for out in ["out1", "out2"] {
        let run = export(&env, "v1.tar", out, &[]).ok();
        assert!(run.stderr.contains("schema version 1 bundle has no series or sequence number"), "{}", run.stderr);
    }
}

#[test]
fn a_second_import_waits_for_the_first_to_release_the_state() {
    let env = Env::new();
    bundle(&env, "b.tar", "base", &[]);
    let lock = std::fs::File::create(env.path("s.json.lock")).unwrap();
    lock.lock().unwrap();
    let args = ["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "out", "--state", "s.json"];
    let stderr = std::fs::File::create(env.path("stderr.txt")).unwrap();
    let child = env.cmd().args(args).stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
    let waiting = || std::fs::read_to_string(env.path("stderr.txt")).unwrap().contains("waiting for another import");
    let start = std::time::Instant::now();
    while !waiting() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(waiting(), "the second import did not say it waits");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!env.path("out").exists(), "the import went ahead while the state was locked");
    drop(lock);
    let out = child.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(env.path("stderr.txt")).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for another import to release s.json.lock"), "{stderr}");
    assert!(env.path("out").exists());
}

#[test]
fn a_failed_or_killed_push_records_nothing_claims_nothing_and_blocks_no_rerun() {
    let env = Env::new();
    bundle(&env, "b.tar", "base", &["--series", "nightly", "--sequence", "5"]);
    let push = |to: String| {
        let mut c = env.cmd();
        c.args(["push", "-p", "ops.pub", "b.tar", "--to", &to, "--state", "s.json"]);
        c
    };
    let closed = ClosedPort::new();
    let failed = Run::from_output(push(format!("127.0.0.1:{}/m", closed.port)).arg("--retries=0").output().unwrap());
    let failed = failed.fails(EXIT_REGISTRY, &["cannot reach the registry"]);
    assert!(!failed.stderr.contains("applied here"), "claimed before it applied: {}", failed.stderr);
    assert!(!env.path("s.json").exists(), "a failed push recorded its bundle");

    // Killed while it holds the state's lock, waiting on a registry that never answers.
    let mut child = push(format!("127.0.0.1:{}/m", silent_server())).stderr(Stdio::null()).spawn().unwrap();
    let lock = std::fs::File::create(env.path("s.json.lock")).unwrap();
    let start = Instant::now();
    while lock.try_lock().is_ok() && start.elapsed() < Duration::from_secs(30) {
        lock.unlock().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lock);

    let start = Instant::now();
    let rerun = export(&env, "b.tar", "out", &["--state", "s.json"]).ok();
    assert!(start.elapsed() < Duration::from_secs(20), "the rerun waited {:?}", start.elapsed());
    assert!(!rerun.stderr.contains("waiting for another import"), "{}", rerun.stderr);
    assert!(rerun.stderr.contains("first bundle applied here (sequence 5)"), "{}", rerun.stderr);
}

#[test]
fn create_refuses_a_series_name_that_is_not_plain() {
    let env = Env::new();
    env.keygen("ops");
    let src = format!("oci:{}:base=example.com/sync/app:1", fixture_str("oci-layout"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--series", "a/b", &src])
        .fails(EXIT_BAD_INPUT, &["--series", "`a/b` is not 1 to 128 of"]);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--expires", "soon", &src])
        .fails(EXIT_BAD_INPUT, &["--expires"]);
    assert!(!env.path("b.tar").exists());
}

#[test]
fn a_dry_run_or_an_unsigned_import_records_nothing() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let env = Env::new();
    bundle(&env, "b.tar", "base", &["--sequence", "4"]);
    let reg = Registry::start(&[]);
    let to = format!("{}/mirror", reg.host);
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to, "--dry-run", "--state", "s.json"]).ok();
    assert!(!env.path("s.json").exists(), "a dry run recorded the bundle");
    let unsigned =
        env.run(&["export", "--insecure-no-signature", "b.tar", "--format", "oci", "-o", "o", "--state", "s.json"]);
    assert!(unsigned.ok().stderr.contains("signature not checked, so its sequence number is neither checked"));
    assert!(!env.path("s.json").exists(), "an unsigned import recorded the bundle");
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", &to, "--state", "s.json"]).ok();
    assert!(std::fs::read_to_string(env.path("s.json")).unwrap().contains("\"sequence\": 4"));
}

#[test]
fn a_damaged_state_file_is_named_and_left_alone() {
    let env = Env::new();
    bundle(&env, "b.tar", "base", &[]);
    std::fs::write(env.path("s.json"), "{\"version\": 1, \"applied\": [").unwrap();
    export(&env, "b.tar", "out", &["--state", "s.json"]).fails(EXIT_BAD_INPUT, &["s.json: not an airlock state file"]);
    assert!(!env.path("out").exists());
    assert_eq!(std::fs::read_to_string(env.path("s.json")).unwrap(), "{\"version\": 1, \"applied\": [");
}

#[test]
fn a_bundle_written_by_the_previous_version_still_verifies_and_exports() {
    // fixtures/v1-bundle: made by airlock 86be7ad (schema version 1), see fixtures/make.sh.
    let env = Env::new();
    let (bundle, key) = (fixture_str("v1-bundle/bundle.tar"), fixture_str("v1-bundle/v1.pub"));
    let verified = env.run(&["verify", "-p", &key, &bundle]).ok();
    assert!(verified.stdout.contains("schema version 1 bundle"), "{}", verified.stdout);
    for format in ["oci", "docker-archive"] {
        let out = format!("out-{format}");
        env.run(&["export", "-p", &key, &bundle, "--format", format, "-o", &out]).ok();
        assert!(env.path(&out).exists(), "{format} export written");
    }
}
