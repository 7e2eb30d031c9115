//! Delta bundles, the way a nightly one-way sync uses them: a full bundle, then deltas made
//! against the last bundle's index file, applied in order on the isolated side; a lost delta
//! named with what it lacks and repaired by a cumulative one; `docker load` via `export --base`;
//! `diff` and `index`.

use serde_json::Value;

use crate::common::{
    EXIT_BAD_INPUT, EXIT_INTEGRITY, EXIT_TRUST, Env, Peer, Registry, docker_host, fixture_str, signed_index,
    skip_without, tamper, tool,
};
use crate::signed_lies::resign;

/// The committed OCI layout's images: `base` (the busybox layer), `web-1.4` and
/// `registry.example/team/app:1.4` (each the busybox layer and a small layer of its own).
const BASE: &str = "base";
const WEB: &str = "web-1.4";
const APP: &str = "registry.example/team/app:1.4";

/// The busybox layer every image of the layout shares, and `web-1.4`'s own layer.
const BUSYBOX_LAYER: &str = "sha256:70ff78f69a9e7c4be879d3ceff84f7b767e1a2218884ee03841fb46c9f76d0d4";
const WEB_LAYER: &str = "sha256:32c610e8c613b13def40bc9d30305c68af7b38aed2d095d1e6e4cd1ac02cc94b";

/// Creates `out` from `images` (layout ref, name) with `extra` flags, signed with `ops.key`.
fn create(env: &Env, out: &str, images: &[(&str, &str)], extra: &[&str]) -> crate::common::Run {
    if !env.path("ops.key").exists() {
        env.keygen("ops");
    }
    let sources: Vec<String> =
        images.iter().map(|(r, name)| format!("oci:{}:{r}={name}", fixture_str("oci-layout"))).collect();
    let mut args = vec!["create", "-k", "ops.key", "-o", out, "--created", "2026-01-01T00:00:00Z"];
    args.extend_from_slice(extra);
    args.extend(sources.iter().map(String::as_str));
    env.run(&args).ok()
}

fn size(env: &Env, name: &str) -> u64 {
    std::fs::metadata(env.path(name)).unwrap().len()
}

fn bundle_id(env: &Env, bundle: &str) -> String {
    signed_index(env, bundle)["bundleId"].as_str().unwrap().to_owned()
}

fn push(env: &Env, bundle: &str, to: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["push", "-p", "ops.pub", bundle, "--to", to];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// `skopeo inspect --raw` (the manifest's bytes) or `--config --raw` of a pushed tag.
fn raw(reference: &str, config: bool) -> Option<String> {
    let image = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false", "--raw", &image];
    if config {
        args.insert(1, "--config");
    }
    let run = tool("skopeo", &args, &[]);
    (run.code == 0).then_some(run.stdout)
}

#[test]
fn deltas_applied_in_order_leave_the_registry_a_full_push_of_the_final_set_would() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let first = [(BASE, "example.com/sync/app:1"), (APP, "example.com/sync/old:1")];
    // A new tag (app:2) and an updated image sharing the busybox layer (app:1).
    let second = [(WEB, "example.com/sync/app:1"), (BASE, "example.com/sync/app:2"), (APP, "example.com/sync/old:1")];
    // The removed image (old:1).
    let last = [(WEB, "example.com/sync/app:1"), (BASE, "example.com/sync/app:2")];
    create(&env, "full.tar", &first, &["--sequence", "1"]);
    env.run(&["index", "full.tar", "-o", "full.index"]).ok();
    create(&env, "d1.tar", &second, &["--base", "full.index"]);
    env.run(&["index", "d1.tar", "-o", "d1.index"]).ok();
    let made = create(&env, "d2.tar", &last, &["--base", "d1.index"]);
    assert!(made.stdout.contains("delta: 4 blobs (1.0 MiB) left to its bases"), "{}", made.stdout);

    // d1 took the creation time as its sequence; d2, created at the same second, one more than
    // its base's. A delta of a delta names both bases, each blob with the one that carries it.
    let d2 = signed_index(&env, "d2.tar");
    assert_eq!(d2["sequence"].as_u64().unwrap(), signed_index(&env, "d1.tar")["sequence"].as_u64().unwrap() + 1);
    let bases: Vec<&str> = d2["bases"].as_array().unwrap().iter().map(|b| b["bundleId"].as_str().unwrap()).collect();
    assert_eq!(bases, [bundle_id(&env, "d1.tar"), bundle_id(&env, "full.tar")]);
    let layer = d2["blobs"].as_array().unwrap().iter().find(|b| b["digest"] == BUSYBOX_LAYER).unwrap();
    assert_eq!(layer["carriedBy"].as_str().unwrap(), bundle_id(&env, "full.tar"));
    assert!(size(&env, "d2.tar") < 16 << 10, "a delta of an unchanged set is a few KB: {}", size(&env, "d2.tar"));
    assert!(size(&env, "full.tar") > 1 << 20);

    let (a, b) = (Registry::start(&[]), Registry::start(&[]));
    let (to_a, to_b) = (format!("{}/mirror", a.host), format!("{}/mirror", b.host));
    for bundle in ["full.tar", "d1.tar", "d2.tar"] {
        push(&env, bundle, &to_a, &[]).ok();
    }
    create(&env, "final.tar", &last, &["--sequence", "9"]);
    push(&env, "final.tar", &to_b, &["--state", "other.json"]).ok();
    for tag in ["sync/app:1", "sync/app:2"] {
        for config in [false, true] {
            let (got, want) =
                (raw(&format!("{}/mirror/{tag}", a.host), config), raw(&format!("{}/mirror/{tag}", b.host), config));
            assert!(got.is_some() && got == want, "{tag} (config: {config}) differs:\n{got:?}\n{want:?}");
        }
    }
    let tags = |host: &str| {
        let repo = format!("docker://{host}/mirror/sync/app");
        let run = tool("skopeo", &["list-tags", "--tls-verify=false", &repo], &[]).ok();
        serde_json::from_str::<Value>(&run.stdout).unwrap()["Tags"].clone()
    };
    assert_eq!(tags(&a.host), tags(&b.host));
    // A push never deletes: the removed image's tag stays where it was.
    assert!(raw(&format!("{}/mirror/sync/old:1", a.host), false).is_some());

    let d2_seq = d2["sequence"].to_string();
    push(&env, "d1.tar", &to_a, &[])
        .fails(EXIT_TRUST, &["d1.tar", &format!("is not after {d2_seq}"), "--allow-rollback"]);
    let rerun = push(&env, "d2.tar", &to_a, &[]).ok();
    assert!(
        rerun.stderr.contains("is the last one applied here") && rerun.stderr.contains("re-run"),
        "{}",
        rerun.stderr
    );
}

#[test]
fn a_lost_delta_is_named_with_what_it_lacks_and_repaired_by_a_cumulative_delta() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let one = [(BASE, "example.com/lost/app:1")];
    let two = [(BASE, "example.com/lost/app:1"), (WEB, "example.com/lost/web:1")];
    let three = [(BASE, "example.com/lost/app:1"), (WEB, "example.com/lost/web:1"), (APP, "example.com/lost/extra:1")];
    create(&env, "full.tar", &one, &["--sequence", "1"]);
    env.run(&["index", "full.tar", "-o", "full.index"]).ok();
    create(&env, "d1.tar", &two, &["--base", "full.index", "--sequence", "2"]);
    create(&env, "d2.tar", &three, &["--base", "d1.tar", "--sequence", "3"]);
    let reg = Registry::start(&[]);
    let to = format!("{}/mirror", reg.host);
    push(&env, "full.tar", &to, &[]).ok();

    // d1.tar never arrived: d2.tar relies on the layer only d1.tar carries.
    let d1 = bundle_id(&env, "d1.tar");
    push(&env, "d2.tar", &to, &[]).fails(
        EXIT_BAD_INPUT,
        &[
            "d2.tar: a delta: 2 blobs it relies on are not in",
            WEB_LAYER,
            &format!("carried by base bundle {d1} (sequence 2)"),
            "--base",
        ],
    );
    for tag in ["lost/web:1", "lost/extra:1"] {
        assert!(raw(&format!("{}/mirror/{tag}", reg.host), false).is_none(), "{tag} was tagged");
    }
    // The connected side made the next bundle against the last index it knows arrived.
    create(&env, "cumulative.tar", &three, &["--base", "full.index", "--sequence", "4"]);
    push(&env, "cumulative.tar", &to, &[]).ok();
    for tag in ["lost/app:1", "lost/web:1", "lost/extra:1"] {
        assert!(raw(&format!("{}/mirror/{tag}", reg.host), false).is_some(), "{tag} missing");
    }

    // Or the lost bundle arrives after all and comes along as --base (into a registry of its own).
    let other = Registry::start(&[]);
    let to_other = format!("{}/mirror", other.host);
    push(&env, "full.tar", &to_other, &["--state", "o.json"]).ok();
    push(&env, "d2.tar", &to_other, &["--state", "o.json", "--base", "d1.tar"]).ok();
    assert!(raw(&format!("{}/mirror/lost/web:1", other.host), false).is_some());
}

#[test]
fn a_delta_verifies_alone_and_with_its_bases_and_an_index_file_is_no_base_bundle() {
    let env = Env::new();
    let images = [(BASE, "example.com/v/app:1"), (WEB, "example.com/v/web:1")];
    create(&env, "full.tar", &images, &["--sequence", "5"]);
    let made = create(&env, "same.tar", &images, &["--base", "full.tar"]);
    assert!(made.stdout.contains("base "), "{}", made.stdout);
    let id = bundle_id(&env, "full.tar");

    let alone = env.run(&["verify", "-p", "ops.pub", "same.tar"]).ok();
    assert!(alone.stdout.contains(&format!("base {id} sequence 5: 4 blobs")), "{}", alone.stdout);
    assert!(alone.stdout.contains("give the bases with --base"), "{}", alone.stdout);
    let whole = env.run(&["verify", "-p", "ops.pub", "same.tar", "--base", "full.tar"]).ok();
    assert!(whole.stdout.contains("the whole state is at hand: 4 blobs"), "{}", whole.stdout);

    env.run(&["index", "full.tar", "-o", "full.index"]).ok();
    env.run(&["verify", "-p", "ops.pub", "same.tar", "--base", "full.index"])
        .fails(4, &["full.index", "holds only a signed index"]);
    // A base that lacks what the delta relies on is named, with the bundle that carries it.
    create(&env, "other.tar", &[(APP, "example.com/v/x:1")], &["--sequence", "3"]);
    env.run(&["verify", "-p", "ops.pub", "same.tar", "--base", "other.tar"])
        .fails(EXIT_BAD_INPUT, &["same.tar: a delta: 3 blobs", &format!("base bundle {id} (sequence 5)")]);
    // Load and export of a delta take the missing blobs from --base only.
    env.run(&["export", "-p", "ops.pub", "same.tar", "--format", "oci", "-o", "out"])
        .fails(EXIT_BAD_INPUT, &["4 blobs it relies on are not in any --base bundle given"]);
    assert!(!env.path("out").exists());
    env.run(&["export", "-p", "ops.pub", "same.tar", "--format", "oci", "-o", "out", "--base", "full.tar"]).ok();
    // An expired delta is refused like any bundle, before its bases are even opened.
    create(&env, "stale.tar", &images, &["--base", "full.tar", "--expires", "1d"]);
    let args = ["export", "-p", "ops.pub", "stale.tar", "--format", "oci", "-o", "o2", "--base", "full.tar"];
    env.run(&args).fails(EXIT_TRUST, &["stale.tar: expired at 2026-01-02T00:00:00Z", "--allow-expired"]);
    let blobs = std::fs::read_dir(env.path("out/blobs/sha256")).unwrap().count();
    assert_eq!(blobs, signed_index(&env, "same.tar")["blobs"].as_array().unwrap().len());
}

#[test]
fn a_base_must_be_signed_by_the_same_key_and_be_of_the_same_series() {
    let env = Env::new();
    let images = [(BASE, "example.com/k/app:1")];
    create(&env, "full.tar", &images, &["--sequence", "5"]);
    env.keygen("other");
    let src = format!("oci:{}:{BASE}=example.com/k/app:1", fixture_str("oci-layout"));
    env.run(&["create", "-k", "other.key", "-o", "d.tar", "--base", "full.tar", &src])
        .fails(EXIT_TRUST, &["base full.tar"]);
    env.run(&["create", "-k", "ops.key", "-o", "d.tar", "--base", "full.tar", "--series", "weekly", &src])
        .fails(EXIT_BAD_INPUT, &["base full.tar", "series `default`", "`weekly`"]);
    env.run(&["create", "-k", "ops.key", "-o", "d.tar", "--base", "full.tar", "--sequence", "5", &src])
        .fails(EXIT_BAD_INPUT, &["--sequence", "5 is not after 5"]);
    assert!(!env.path("d.tar").exists());
}

#[test]
fn a_damaged_base_is_reported_before_an_unreachable_registry() {
    let env = Env::new();
    let images = [(BASE, "example.com/v/app:1"), (WEB, "example.com/v/web:1")];
    create(&env, "full.tar", &images, &["--sequence", "5"]);
    create(&env, "same.tar", &images, &["--base", "full.tar"]);
    crate::common::tamper(&env.path("full.tar"));
    let closed = crate::common::ClosedPort::new();
    let to = format!("127.0.0.1:{}/m", closed.port);
    push(&env, "same.tar", &to, &["--base", "full.tar", "--retries", "0"])
        .fails(4, &["full.tar: entry blobs/sha256/", "digest mismatch", "cannot reach the registry"]);
}

#[test]
fn index_files_round_trip_and_make_the_same_delta_as_the_bundle() {
    let env = Env::new();
    let images = [(BASE, "example.com/i/app:1")];
    create(&env, "full.tar", &images, &["--sequence", "5"]);
    env.run(&["index", "full.tar", "-o", "full.index"]).ok();
    assert!(size(&env, "full.index") < 16 << 10);
    assert_eq!(signed_index(&env, "full.index"), signed_index(&env, "full.tar"));
    let inspected = env.run(&["inspect", "full.index"]).ok();
    assert!(inspected.stdout.contains("example.com/i/app:1"), "{}", inspected.stdout);

    let next = [(BASE, "example.com/i/app:1"), (WEB, "example.com/i/web:1")];
    create(&env, "from-index.tar", &next, &["--base", "full.index"]);
    create(&env, "from-bundle.tar", &next, &["--base", "full.tar"]);
    let (a, b) =
        (std::fs::read(env.path("from-index.tar")).unwrap(), std::fs::read(env.path("from-bundle.tar")).unwrap());
    assert!(a == b, "a delta made against the index file differs from one made against the bundle");
    let inspected = env.run(&["inspect", "from-index.tar"]).ok();
    assert!(
        inspected.stdout.contains(&format!("base {} sequence 5", bundle_id(&env, "full.tar"))),
        "{}",
        inspected.stdout
    );
}

#[test]
fn diff_names_what_changed_and_what_a_delta_would_carry() {
    let env = Env::new();
    let old = [(BASE, "example.com/d/app:1"), (APP, "example.com/d/old:1")];
    let new = [(WEB, "example.com/d/app:1"), (BASE, "example.com/d/app:2"), (APP, "example.com/d/new:1")];
    create(&env, "old.tar", &old, &[]);
    create(&env, "new.tar", &new, &[]);
    env.run(&["index", "old.tar", "-o", "old.index"]).ok();
    let out = env.run(&["diff", "old.index", "new.tar"]).ok().stdout;
    let digest = |r: &str| {
        let i: Value =
            serde_json::from_str(&std::fs::read_to_string(crate::common::fixture("oci-layout/index.json")).unwrap())
                .unwrap();
        let m = i["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == r);
        m.unwrap()["digest"].as_str().unwrap().to_owned()
    };
    for line in [
        format!("removed   example.com/d/old:1  {}", digest(APP)),
        format!("retagged  example.com/d/app:2  {}  (was example.com/d/app:1)", digest(BASE)),
        format!("retagged  example.com/d/new:1  {}  (was example.com/d/old:1)", digest(APP)),
        format!("changed   example.com/d/app:1  {} -> {}", digest(BASE), digest(WEB)),
        "3 new blobs (1.4 KiB)".to_owned(),
    ] {
        assert!(out.contains(&line), "lacks {line:?}:\n{out}");
    }
    let json: Value = serde_json::from_str(&env.run(&["diff", "--json", "old.tar", "new.tar"]).ok().stdout).unwrap();
    assert_eq!(json["diff"]["newBlobs"].as_array().unwrap().len(), 3);
    // What the delta carries is what diff said it would: the new blobs and every manifest.
    create(&env, "delta.tar", &new, &["--base", "old.index"]);
    let carried: u64 = signed_index(&env, "delta.tar")["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b.get("carriedBy").is_none())
        .map(|b| b["size"].as_u64().unwrap())
        .sum();
    assert_eq!(json["diff"]["bytesToCarry"].as_u64().unwrap(), carried);
}

#[test]
fn docker_load_takes_from_a_delta_only_whole_images_and_export_base_gives_it_all() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    let host = docker_host();
    let docker = |args: &[&str]| tool("docker", args, &[("DOCKER_HOST", host.as_str())]);
    // An image of its own layer (every fixture image shares the busybox layer), built here.
    std::fs::create_dir(env.path("ctx")).unwrap();
    std::fs::write(env.path("ctx/Dockerfile"), "FROM scratch\nCOPY own.txt /own.txt\n").unwrap();
    std::fs::write(env.path("ctx/own.txt"), "carried whole by the delta\n").unwrap();
    let own = "example.com/deltas-load/own:1";
    docker(&["build", "-q", "-t", own, &env.path("ctx").display().to_string()]).ok();
    docker(&["save", "-o", &env.path("own.tar").display().to_string(), own]).ok();

    create(&env, "full.tar", &[(BASE, "example.com/deltas-load/app:1")], &["--sequence", "1"]);
    let web = format!("oci:{}:{WEB}=example.com/deltas-load/web:1", fixture_str("oci-layout"));
    let base = format!("oci:{}:{BASE}=example.com/deltas-load/app:1", fixture_str("oci-layout"));
    env.run(&["create", "-k", "ops.key", "-o", "d1.tar", "--base", "full.tar", &base, &web, "docker-archive:own.tar"])
        .ok();
    for tag in ["own:1", "web:1", "app:1"] {
        let _ = docker(&["rmi", "-f", &format!("example.com/deltas-load/{tag}")]);
    }
    // The delta's manifest.json lists only the image all of whose blobs it carries.
    let loaded = docker(&["load", "-i", &env.path("d1.tar").display().to_string()]).ok();
    assert!(loaded.stdout.contains(own), "{}", loaded.stdout);
    assert!(!loaded.stdout.contains("web:1") && !loaded.stdout.contains("app:1"), "{}", loaded.stdout);
    assert_ne!(docker(&["image", "inspect", "example.com/deltas-load/web:1"]).code, 0);

    let args =
        ["export", "-p", "ops.pub", "d1.tar", "--base", "full.tar", "--format", "docker-archive", "-o", "all.tar"];
    env.run(&args).ok();
    docker(&["load", "-i", &env.path("all.tar").display().to_string()]).ok();
    let index = signed_index(&env, "d1.tar");
    let check = || {
        for tag in ["own:1", "web:1", "app:1"] {
            let name = format!("example.com/deltas-load/{tag}");
            let id = docker(&["image", "inspect", "--format", "{{.Id}}", &name]).ok().stdout;
            let manifest = crate::common::image(&index, &name)["blobs"].as_array().unwrap().clone();
            assert!(manifest.iter().any(|d| d.as_str() == Some(id.trim())), "{name}: docker has config {id}");
        }
    };
    check();

    // `airlock load` of the delta takes the rest from --base too (a re-run for the state).
    for tag in ["own:1", "web:1", "app:1"] {
        docker(&["rmi", "-f", &format!("example.com/deltas-load/{tag}")]).ok();
    }
    let load = ["load", "-p", "ops.pub", "d1.tar", "--base", "full.tar"];
    let run = crate::common::Run::from_output(env.cmd().args(load).env("DOCKER_HOST", &host).output().unwrap()).ok();
    assert!(run.stderr.contains("re-run"), "{}", run.stderr);
    check();
}

#[test]
fn a_signed_index_that_lies_about_its_bases_is_refused() {
    let env = Env::new();
    let images = [(BASE, "example.com/l/app:1"), (WEB, "example.com/l/web:1")];
    create(&env, "full.tar", &images, &["--sequence", "5"]);
    create(&env, "delta.tar", &images, &["--base", "full.tar"]);
    // A manifest left to a base: a sink could not tag from the delta alone.
    resign(&env, "delta.tar", "manifest.tar", |index, _| {
        let id = index["bases"][0]["bundleId"].clone();
        let blobs = index["blobs"].as_array_mut().unwrap();
        let manifest = blobs.iter_mut().find(|b| b["mediaType"].as_str().unwrap().contains("manifest")).unwrap();
        manifest["carriedBy"] = id;
    });
    env.run(&["verify", "-p", "ops.pub", "manifest.tar"]).fails(4, &["a delta carries every manifest"]);
    // A blob said to be carried by a bundle that is not among its bases.
    resign(&env, "delta.tar", "stranger.tar", |index, _| {
        let layer = index["blobs"].as_array_mut().unwrap().iter_mut().find(|b| b["digest"] == WEB_LAYER).unwrap();
        layer["carriedBy"] = "0123456789abcdef0123456789abcdef".into();
    });
    env.run(&["verify", "-p", "ops.pub", "stranger.tar"]).fails(4, &["which is not a base"]);
    // A base later in the series than the delta itself.
    resign(&env, "delta.tar", "later.tar", |index, _| {
        index["bases"][0]["sequence"] = (index["sequence"].as_u64().unwrap() + 1).into();
    });
    env.run(&["verify", "-p", "ops.pub", "later.tar"]).fails(4, &["is not an earlier bundle of this series"]);
    // A blob the index leaves to a base, yet in the archive.
    create(&env, "carried.tar", &images, &["--sequence", "9"]);
    resign(&env, "carried.tar", "both.tar", |index, _| {
        let base = signed_index(&env, "full.tar");
        index["bases"] = serde_json::json!([{"bundleId": base["bundleId"], "indexDigest": format!("sha256:{}", "0".repeat(64)), "series": "default", "sequence": 5}]);
        let layer = index["blobs"].as_array_mut().unwrap().iter_mut().find(|b| b["digest"] == BUSYBOX_LAYER).unwrap();
        layer["carriedBy"] = base["bundleId"].clone();
    });
    env.run(&["verify", "-p", "ops.pub", "both.tar"]).fails(4, &["says base bundle", "carries it, not this one"]);
    // A given base whose signed index is not the one the delta recorded.
    resign(&env, "delta.tar", "other-base.tar", |index, _| {
        index["bases"][0]["indexDigest"] = format!("sha256:{}", "0".repeat(64)).into();
    });
    env.run(&["verify", "-p", "ops.pub", "other-base.tar"]).ok();
    env.run(&["verify", "-p", "ops.pub", "other-base.tar", "--base", "full.tar"])
        .fails(4, &["full.tar: bundle", "the delta records sha256:0000"]);
}

#[test]
fn a_delta_from_a_registry_fetches_only_the_blobs_it_carries() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let env = Env::new();
    let reg = Registry::start(&[]);
    let both = [(BASE, "example.com/r/app:1"), (WEB, "example.com/r/web:1")];
    create(&env, "both.tar", &both, &["--sequence", "1"]);
    push(&env, "both.tar", &format!("{}/src", reg.host), &["--state", "seed.json"]).ok();
    // Yesterday's bundle held app:1 only; today's adds web:1, whose own layer is all that is new.
    create(&env, "yesterday.tar", &[(BASE, "example.com/r/app:1")], &["--sequence", "2"]);
    env.run(&["index", "yesterday.tar", "-o", "yesterday.index"]).ok();
    let before = reg.requests().len();
    let (app, web) = (format!("docker://{}/src/r/app:1", reg.host), format!("docker://{}/src/r/web:1", reg.host));
    let args =
        ["create", "-k", "ops.key", "-o", "today.tar", "--base", "yesterday.index", "--cache", "cache", &app, &web];
    env.run(&args).ok();
    let requests = reg.requests().split_off(before);
    let fetched =
        |digest: &str| requests.iter().any(|r| r.starts_with("GET ") && r.contains(&format!("/blobs/{digest}")));
    assert!(fetched(WEB_LAYER), "{requests:#?}");
    assert!(!fetched(BUSYBOX_LAYER), "the base's layer was fetched: {requests:#?}");
    let cached = tool("find", &[&env.path("cache").display().to_string(), "-type", "f"], &[]).ok().stdout;
    assert!(!cached.contains(BUSYBOX_LAYER.trim_start_matches("sha256:")), "{cached}");
    env.run(&["verify", "-p", "ops.pub", "today.tar", "--base", "yesterday.tar"]).ok();
}

#[test]
fn export_of_a_delta_file_reads_what_it_leaves_out_from_its_base_in_place() {
    let env = Env::new();
    create(&env, "full.tar", &[(BASE, "example.com/deltas-export/app:1")], &[]);
    let images = [(BASE, "example.com/deltas-export/app:1"), (WEB, "example.com/deltas-export/web:1")];
    create(&env, "d1.tar", &images, &["--base", "full.tar"]);
    for (format, out) in [("docker-archive", "images.tar"), ("oci", "layout")] {
        let args = ["export", "-p", "ops.pub", "--base", "full.tar", "--format", format, "-o"];
        env.run(&[&args[..], &[&format!("file-{out}"), "d1.tar"]].concat()).ok();
        let input = std::fs::File::open(env.path("d1.tar")).unwrap();
        let piped = env.cmd().args(args).args([&format!("stdin-{out}"), "-"]).stdin(input).output().unwrap();
        crate::common::Run::from_output(piped).ok();
        let read = |name: &str| match env.path(name) {
            dir if dir.is_dir() => crate::sinks::tree(&dir),
            file => vec![(String::new(), std::fs::read(file).unwrap())],
        };
        assert!(read(&format!("file-{out}")) == read(&format!("stdin-{out}")), "{format}: file and stdin differ");
    }
    let busybox = BUSYBOX_LAYER.trim_start_matches("sha256:");
    assert!(env.path(&format!("file-layout/blobs/sha256/{busybox}")).is_file(), "the base's layer is in the layout");

    tamper(&env.path("full.tar"));
    let before = env.listing();
    let entry = format!("full.tar: entry blobs/sha256/{busybox}");
    for format in ["docker-archive", "oci"] {
        env.run(&["export", "-p", "ops.pub", "d1.tar", "--base", "full.tar", "--format", format, "-o", "out"])
            .fails(EXIT_INTEGRITY, &[&entry, "digest mismatch"]);
        assert_eq!(env.listing(), before, "{format}: no output, no temporary directory");
    }
}
