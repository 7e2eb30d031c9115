//! Split bundles for removable media: volumes that `cat` back into the bundle, a signed part list,
//! parity that rebuilds lost parts, every reading command taking the parts, and the output
//! filesystem checked before a byte is written.

use crate::common::{
    EXIT_BAD_INPUT, EXIT_INTEGRITY, EXIT_IO, EXIT_TRUST, Env, Mount, Peer, Registry, skip_without, tool,
};

const CREATED: &str = "2026-01-01T00:00:00Z";

/// The standard bundle's sources, once whole as `whole.tar` and once split as `b.tar` with
/// `extra` flags.
fn split_and_whole(env: &Env, extra: &[&str]) {
    env.standard_bundle("whole.tar").ok();
    let mut args = vec!["create", "-k", "ops.key", "-o", "b.tar", "--created", CREATED];
    args.extend_from_slice(extra);
    let sources = standard_sources();
    args.extend(sources.iter().map(String::as_str));
    env.run(&args).ok();
}

fn standard_sources() -> Vec<String> {
    use crate::common::fixture_str;
    vec![
        format!("docker-archive:{}", fixture_str("legacy-save.tar")),
        format!("oci:{}:registry.example/team/app:1.4", fixture_str("oci-layout")),
        format!("oci-archive:{}", fixture_str("tools.oci.tar")),
        format!("oci-archive:{}", fixture_str("multiarch.oci.tar")),
    ]
}

/// The data parts on disk, in order.
fn data_parts(env: &Env) -> Vec<String> {
    env.listing()
        .into_iter()
        .filter(|n| n.len() == 9 && n.starts_with("b.tar.") && n[6..].bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

fn joined(env: &Env) -> Vec<u8> {
    data_parts(env).iter().flat_map(|p| std::fs::read(env.path(p)).unwrap()).collect()
}

fn corrupt(env: &Env, name: &str, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(env.path(name)).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

#[test]
fn volumes_joined_with_cat_are_the_unsplit_bundle_byte_for_byte() {
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "2"]);
    let parts = data_parts(&env);
    assert!(parts.len() >= 3, "{parts:?}");
    assert!(joined(&env) == std::fs::read(env.path("whole.tar")).unwrap(), "cat of the parts is not the bundle");
    for p in &parts[..parts.len() - 1] {
        assert_eq!(std::fs::metadata(env.path(p)).unwrap().len(), 300 << 10, "{p}");
    }
    for p in ["b.tar.p01", "b.tar.p02", "b.tar.parts", "b.tar.parts.minisig"] {
        assert!(env.path(p).exists(), "{p} missing: {:?}", env.listing());
    }
    assert!(!env.listing().iter().any(|n| n.starts_with(".airlock-")), "temporary files left: {:?}", env.listing());
}

#[test]
fn the_part_list_verifies_with_stock_minisign_and_names_every_part() {
    if skip_without(&[Peer::Minisign]) {
        return;
    }
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "1"]);
    let list = env.path("b.tar.parts");
    let run = tool("minisign", &["-Vm", list.to_str().unwrap(), "-p", env.path("ops.pub").to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "minisign -V: {}{}", run.stdout, run.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&list).unwrap()).unwrap();
    let whole = env.run(&["inspect", "--json", "whole.tar"]).ok();
    let whole: serde_json::Value = serde_json::from_str(&whole.stdout).unwrap();
    assert_eq!(doc["bundleId"], whole["bundleId"]);
    assert_eq!(doc["parts"].as_array().unwrap().len(), data_parts(&env).len());
    assert_eq!(doc["parity"]["parts"].as_array().unwrap().len(), 1);
}

#[test]
fn every_reading_command_takes_the_first_part_the_parts_in_order_or_the_directory() {
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K"]);
    let parts = data_parts(&env);
    env.run(&["verify", "-p", "ops.pub", "b.tar.001"]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    env.run(&["verify", "-p", "ops.pub", "."]).ok();
    let mut in_order = vec!["verify", "-p", "ops.pub"];
    in_order.extend(parts.iter().map(String::as_str));
    env.run(&in_order).ok();
    in_order.swap(3, 4);
    env.run(&in_order).fails(EXIT_BAD_INPUT, &["every data part in order"]);
    env.run(&["inspect", "b.tar.001"]).ok();

    env.run(&["export", "-p", "ops.pub", "whole.tar", "--format", "docker-archive", "-o", "from-whole.tar"]).ok();
    env.run(&[
        "export",
        "-p",
        "ops.pub",
        "b.tar.001",
        "--format",
        "docker-archive",
        "-o",
        "from-parts.tar",
        "--allow-rollback",
    ])
    .ok();
    let (a, b) =
        (std::fs::read(env.path("from-whole.tar")).unwrap(), std::fs::read(env.path("from-parts.tar")).unwrap());
    assert!(a == b, "export from the parts differs from export of the whole bundle");
}

#[test]
fn a_part_list_signed_by_another_key_is_refused() {
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K"]);
    env.keygen("other");
    env.run(&["verify", "-p", "other.pub", "b.tar.001"]).fails(EXIT_TRUST, &["b.tar.parts", "signed by key"]);
    env.run(&["verify", "-p", "other.pub", "--part", "b.tar.002"]).fails(EXIT_TRUST, &["b.tar.parts"]);
}

#[test]
fn a_deleted_and_a_corrupted_part_are_named_by_verify_and_rebuilt_by_repair() {
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "2"]);
    env.run(&["verify", "-p", "ops.pub", "--part", "b.tar.003"]).ok();
    std::fs::remove_file(env.path("b.tar.002")).unwrap();
    corrupt(&env, "b.tar.003", 1000);

    let run = env.run(&["verify", "-p", "ops.pub", "b.tar.001"]);
    run.fails(
        EXIT_INTEGRITY,
        &[
            "b.tar.002 is missing",
            "b.tar.003 has sha256",
            "`airlock repair -p KEY.pub b.tar.001` can rebuild them",
            "its 2 parity parts",
        ],
    );
    env.run(&["verify", "-p", "ops.pub", "--part", "b.tar.003"]).fails(EXIT_INTEGRITY, &["b.tar.003: has sha256"]);

    let repaired = env.run(&["repair", "-p", "ops.pub", "b.tar.001"]).ok();
    assert!(repaired.stdout.contains("b.tar.002: is missing: rebuilt"), "{}", repaired.stdout);
    assert!(repaired.stdout.contains("b.tar.003: has sha256"), "{}", repaired.stdout);
    assert!(repaired.stdout.contains("2 of "), "{}", repaired.stdout);
    env.run(&["verify", "-p", "ops.pub", "b.tar.001"]).ok();
    assert!(
        joined(&env) == std::fs::read(env.path("whole.tar")).unwrap(),
        "the rebuilt parts differ from the originals"
    );
    let again = env.run(&["repair", "-p", "ops.pub", "b.tar.001"]).ok();
    assert!(again.stdout.contains("nothing to repair"), "{}", again.stdout);
}

/// `rsparts ARGS` (scripts/rsparts: Go's klauspost/reedsolomon, from the format document alone)
/// in the test directory; the names of the parts it wrote.
fn rsparts(env: &Env, args: &[&str]) -> Vec<String> {
    let script = format!("cd '{}' && rsparts \"$@\"", env.dir.path().display());
    let mut all = vec!["-c", script.as_str(), "rsparts"];
    all.extend_from_slice(args);
    let run = tool("sh", &all, &[]);
    assert_eq!(run.code, 0, "rsparts {args:?}: {}", run.stderr);
    run.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn parts_lost_are_rebuilt_by_another_implementation_from_the_format_document() {
    if skip_without(&[Peer::Rsparts]) {
        return;
    }
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "2"]);
    std::fs::remove_file(env.path("b.tar.002")).unwrap();
    corrupt(&env, "b.tar.004", 77);
    assert_eq!(rsparts(&env, &["rebuild", "b.tar"]), ["b.tar.002", "b.tar.004"]);
    env.run(&["verify", "-p", "ops.pub", "b.tar.001"]).ok();
    assert!(joined(&env) == std::fs::read(env.path("whole.tar")).unwrap(), "rsparts rebuilt other bytes");
}

#[test]
fn parity_made_by_another_implementation_is_airlocks_byte_for_byte_and_repairs() {
    if skip_without(&[Peer::Rsparts]) {
        return;
    }
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "2"]);
    for p in ["b.tar.p01", "b.tar.p02"] {
        std::fs::remove_file(env.path(p)).unwrap();
    }
    assert_eq!(rsparts(&env, &["parity", "b.tar"]), ["b.tar.p01", "b.tar.p02"]);
    // The signed part list holds airlock's digests: Go's parity must be the same bytes.
    for p in ["b.tar.p01", "b.tar.p02"] {
        env.run(&["verify", "-p", "ops.pub", "--part", p]).ok();
    }
    std::fs::remove_file(env.path("b.tar.001")).unwrap();
    std::fs::remove_file(env.path("b.tar.003")).unwrap();
    env.run(&["repair", "-p", "ops.pub", "b.tar.001"]).ok();
    env.run(&["verify", "-p", "ops.pub", "b.tar.001"]).ok();
    assert!(joined(&env) == std::fs::read(env.path("whole.tar")).unwrap(), "repair from Go's parity differs");
}

#[test]
fn a_lost_parity_part_is_rebuilt_too_and_a_corrupt_part_in_the_middle_of_a_stream_is_named() {
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "1"]);
    std::fs::remove_file(env.path("b.tar.p01")).unwrap();
    env.run(&["verify", "-p", "ops.pub", "b.tar.001"]).ok();
    let repaired = env.run(&["repair", "-p", "ops.pub", "b.tar.001"]).ok();
    assert!(repaired.stdout.contains("b.tar.p01: is missing: rebuilt"), "{}", repaired.stdout);
    env.run(&["verify", "-p", "ops.pub", "--part", "b.tar.p01"]).ok();

    corrupt(&env, "b.tar.002", 5000);
    // No dockerd needed: the bundle fails before anything would be loaded.
    let load =
        env.cmd().args(["load", "-p", "ops.pub", "b.tar.001"]).env("DOCKER_HOST", "unix:///nonexistent").output();
    let load = crate::common::Run::from_output(load.unwrap());
    load.fails(
        EXIT_INTEGRITY,
        &["b.tar.002 has sha256", "`airlock repair -p KEY.pub b.tar.001` can rebuild it from its parity part"],
    );
    std::fs::remove_file(env.path("b.tar.p01")).unwrap();
    let too_many = env.run(&["repair", "-p", "ops.pub", "b.tar.001"]);
    too_many.fails(EXIT_INTEGRITY, &["b.tar.002 has sha256", "b.tar.p01 is missing", "too many are lost"]);
}

#[test]
fn more_lost_parts_than_parity_say_so_and_nothing_is_written() {
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "2"]);
    for p in ["b.tar.001", "b.tar.002", "b.tar.003"] {
        std::fs::remove_file(env.path(p)).unwrap();
    }
    let before = env.listing();
    env.run(&["verify", "-p", "ops.pub", "b.tar"]).fails(EXIT_INTEGRITY, &["too many are lost: 3 damaged, only 2"]);
    env.run(&["repair", "-p", "ops.pub", "b.tar.p01"]).fails(EXIT_INTEGRITY, &["too many are lost"]);
    assert_eq!(env.listing(), before);
}

#[test]
fn push_from_the_parts_keeps_every_digest() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "2"]);
    let reg = Registry::start(&[]);
    let to = format!("{}/mirror", reg.host);
    env.run(&["push", "-p", "ops.pub", "b.tar.001", "--to", &to]).ok();
    let images = crate::push::signed_images(&env, "whole.tar");
    assert!(!images.is_empty());
    for (name, digest) in images {
        let at = crate::push::target(&reg, &name);
        assert_eq!(crate::push::registry_digest(&at, crate::push::PLAIN).as_deref(), Some(digest.as_str()), "{at}");
    }
}

#[test]
fn cat_of_the_parts_loads_in_docker() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    use crate::interop::{DOCKER, DockerTags, STANDARD_TAGS, loaded, set};
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    split_and_whole(&env, &["--volume-size", "300K", "--parity", "1"]);
    let _cleanup = DockerTags(STANDARD_TAGS.iter().map(|t| t.to_string()).collect());
    let host = crate::common::docker_host();
    let script = format!("cd '{}' && cat b.tar.0* | docker load", env.dir.path().display());
    let run = tool("sh", &["-c", &script], &[("DOCKER_HOST", host.as_str())]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(loaded(&run.stdout), set(&STANDARD_TAGS), "docker load said:\n{}", run.stdout);
}

/// Runs `airlock ARGS` under a file-size limit of `kib` KiB, SIGXFSZ ignored (EFBIG instead).
fn run_with_file_limit(env: &Env, kib: u64, args: &[&str]) -> crate::common::Run {
    let script = format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\"");
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(env.dir.path()).env_remove("SOURCE_DATE_EPOCH").args([
        "-c",
        &script,
        env!("CARGO_BIN_EXE_airlock"),
    ]);
    crate::common::Run::from_output(cmd.args(args).output().unwrap())
}

#[test]
fn a_file_size_limit_hit_by_a_volume_leaves_no_part_and_names_the_limit() {
    let env = Env::new();
    env.keygen("ops");
    let before = env.listing();
    let mut args = vec!["create", "-k", "ops.key", "-o", "b.tar", "--volume-size", "600K", "--parity", "1"];
    let sources = standard_sources();
    args.extend(sources.iter().map(String::as_str));
    let run = run_with_file_limit(&env, 400, &args);
    run.fails(EXIT_IO, &["b.tar.001", "file-size limit", "--volume-size", "File too large"]);
    assert_eq!(env.listing(), before, "partial parts left behind");
    // Volumes under the limit fit.
    args[6] = "300K";
    let run = run_with_file_limit(&env, 400, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_full_filesystem_is_caught_before_a_byte_is_written() {
    let env = Env::new();
    env.keygen("ops");
    let Some(_mnt) = Mount::tmpfs(env.path("stick"), "512k") else { return };
    let mut args = vec!["create", "-k", "ops.key", "-o", "stick/b.tar"];
    let sources = standard_sources();
    args.extend(sources.iter().map(String::as_str));
    env.run(&args).fails(EXIT_IO, &["stick/b.tar", "not enough space", "tmpfs", "needs 1.", "free"]);
    assert_eq!(std::fs::read_dir(env.path("stick")).unwrap().count(), 0, "something was written");
    // Parity parts count too.
    let mut split = args.clone();
    split.extend(["--volume-size", "100K", "--parity", "3"]);
    env.run(&split).fails(EXIT_IO, &["not enough space"]);
}

/// Writes zeros to `path` until the filesystem is full: another program taking the space.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_disk_filled_by_another_program_midway_leaves_no_part_and_names_the_limit() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let reg = Registry::start(&[]);
    crate::registry_source::big_image(&env, &reg);
    let Some(_mnt) = Mount::tmpfs(env.path("stick"), "32m") else { return };
    // The source stalls 2 MiB into a layer: the pre-flight has passed and parts are being written.
    let proxy = crate::fakes::PausingProxy::start(reg.host.clone(), 2 << 20);
    let src = format!("docker://127.0.0.1:{}/src/big:1", proxy.port);
    let args = ["create", "-k", "ops.key", "-o", "stick/b.tar", "--volume-size", "3M", "--parity", "2", "--jobs", "1"];
    let out = std::process::Stdio::piped;
    let create = env.cmd().args(args).arg(&src).stdout(out()).stderr(out()).spawn().unwrap();
    assert!(proxy.paused(std::time::Duration::from_secs(60)), "create never reached a layer");
    assert!(std::fs::read_dir(env.path("stick")).unwrap().count() > 0, "nothing written before the stall");
    fill(&env.path("stick/other"));
    proxy.resume();
    let run = crate::common::Run::from_output(create.wait_with_output().unwrap());
    run.fails(
        EXIT_IO,
        &["stick/b.tar.", "the output filesystem is full (ENOSPC)", "every part written so far was removed"],
    );
    let left: Vec<_> = std::fs::read_dir(env.path("stick")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["other"], "parts left behind");
}

#[test]
fn a_fat32_stick_takes_volumes_and_refuses_a_bundle_it_cannot_hold() {
    if skip_without(&[Peer::Vfat]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let Some(_mnt) = Mount::vfat(&env, env.path("usb")) else { return };
    let sources = standard_sources();
    let create = |extra: &[&str]| {
        let mut args = vec!["create", "-k", "ops.key", "-o", "usb/b.tar"];
        args.extend_from_slice(extra);
        args.extend(sources.iter().map(String::as_str));
        env.run(&args)
    };
    create(&[]).fails(EXIT_BAD_INPUT, &["usb/b.tar", "FAT", "4 GiB − 1", "--volume-size fat32"]);
    create(&["--volume-size", "5G"]).fails(EXIT_BAD_INPUT, &["FAT", "--volume-size fat32"]);
    assert_eq!(std::fs::read_dir(env.path("usb")).unwrap().count(), 0, "something was written");
    create(&["--volume-size", "fat32", "--parity", "1"]).ok();
    env.run(&["verify", "-p", "ops.pub", "usb"]).ok();
    env.run(&["verify", "-p", "ops.pub", "--part", "usb/b.tar.p01"]).ok();
}

/// fixtures/v2-parts: a bundle split in 3 volumes with 1 parity part, made by airlock 6c2acf9 (the
/// last version before parity was computed while writing; see fixtures/make.sh). Today's airlock
/// verifies its parts, rebuilds a lost one from its parity and exports it.
#[test]
fn a_split_bundle_with_parity_written_by_the_previous_version_still_verifies_repairs_and_exports() {
    let env = Env::new();
    for entry in std::fs::read_dir(crate::common::fixture("v2-parts")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, env.path(path.file_name().unwrap().to_str().unwrap())).unwrap();
    }
    let original = std::fs::read(env.path("bundle.tar.002")).unwrap();

    env.run(&["verify", "-p", "v2.pub", "bundle.tar.001"]).ok();
    std::fs::remove_file(env.path("bundle.tar.002")).unwrap();
    env.run(&["verify", "-p", "v2.pub", "bundle.tar.001"]).fails(EXIT_INTEGRITY, &["bundle.tar.002 is missing"]);
    let repaired = env.run(&["repair", "-p", "v2.pub", "bundle.tar.001"]).ok();
    assert!(repaired.stdout.contains("bundle.tar.002: is missing: rebuilt"), "{}", repaired.stdout);
    assert!(std::fs::read(env.path("bundle.tar.002")).unwrap() == original, "the rebuilt part differs");
    env.run(&["export", "-p", "v2.pub", "bundle.tar.001", "--format", "docker-archive", "-o", "out.tar"]).ok();
    assert!(env.path("out.tar").exists(), "docker-archive export written");
}
