//! The isolated side without a registry: `airlock export` (docker-archive, OCI layout) and
//! `airlock load` into a real Docker Engine. Nothing that fails verification may come out.

use std::path::Path;

use crate::common::{
    EXIT_BAD_INPUT, EXIT_INTEGRITY, EXIT_IO, EXIT_TRUST, Env, Mount, Peer, big_layout, docker_host, fixture_str,
    skip_without, tamper, tamper_entry, tool,
};

/// A bundle whose images carry names no other test uses, so the shared dockerd can be checked.
fn unique_bundle(env: &Env, tag: &str) -> String {
    env.keygen("ops");
    let name = format!("example.com/sinks/{tag}:1");
    let src = format!("oci-archive:{}={name}", fixture_str("tools.oci.tar"));
    let multi = format!("oci-archive:{}=example.com/sinks/{tag}-multi:2", fixture_str("multiarch.oci.tar"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src, &multi]).ok();
    name
}

fn docker(args: &[&str]) -> crate::common::Run {
    let host = docker_host();
    tool("docker", args, &[("DOCKER_HOST", host.as_str())])
}

fn docker_tags() -> String {
    docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok().stdout
}

#[test]
fn load_streams_a_verified_bundle_into_the_docker_engine() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "load");
    let run = env.cmd().args(["load", "-p", "ops.pub", "b.tar"]).env("DOCKER_HOST", docker_host()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let tags = docker_tags();
    assert!(tags.contains(&name), "{tags}");
    assert!(tags.contains("example.com/sinks/load-multi:2"), "multi-platform image loaded for the host: {tags}");
    let arch = docker(&["image", "inspect", "--format", "{{.Architecture}}", "example.com/sinks/load-multi:2"]).ok();
    assert_eq!(arch.stdout.trim(), "amd64");
    docker(&["rmi", &name, "example.com/sinks/load-multi:2"]).ok();
}

#[test]
fn load_of_a_tampered_bundle_fails_and_tags_nothing() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "tampered");
    tamper(&env.path("b.tar"));
    let run = env.cmd().args(["load", "-p", "ops.pub", "b.tar"]).env("DOCKER_HOST", docker_host()).output().unwrap();
    assert_eq!(run.status.code(), Some(EXIT_INTEGRITY), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("digest mismatch"));
    assert!(!docker_tags().contains(&name));
}

#[test]
fn export_docker_archive_is_accepted_by_docker_load_and_podman_load() {
    if skip_without(&[Peer::Docker, Peer::Podman]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "export");
    env.run(&[
        "export",
        "-p",
        "ops.pub",
        "b.tar",
        "--format",
        "docker-archive",
        "-o",
        "images.tar",
        "--platform",
        "linux/arm64",
    ])
    .ok();
    docker(&["load", "-i", env.path("images.tar").to_str().unwrap()]).ok();
    assert!(docker_tags().contains(&name));
    let arch = docker(&["image", "inspect", "--format", "{{.Architecture}}", "example.com/sinks/export-multi:2"]).ok();
    assert_eq!(arch.stdout.trim(), "arm64", "--platform picks the platform of multi-platform images");
    docker(&["rmi", &name, "example.com/sinks/export-multi:2"]).ok();

    let root = env.path("podman-root");
    let run = env.path("podman-run");
    let podman = |args: &[&str]| {
        let mut all =
            vec!["--storage-driver=vfs", "--root", root.to_str().unwrap(), "--runroot", run.to_str().unwrap()];
        all.extend_from_slice(args);
        tool("podman", &all, &[])
    };
    podman(&["load", "-i", env.path("images.tar").to_str().unwrap()]).ok();
    let listed = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok().stdout;
    assert!(listed.contains(&name), "{listed}");
}

#[test]
fn export_oci_writes_a_layout_skopeo_reads_with_the_signed_digests() {
    if skip_without(&[Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "oci");
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout"]).ok();
    let inspect = env.run(&["inspect", "--json", "b.tar"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let want = doc["images"].as_array().unwrap().iter().find(|i| i["name"] == name.as_str()).unwrap()["digest"].clone();
    let layout = format!("oci:{}:{name}", env.path("layout").display());
    let got = tool("skopeo", &["inspect", "--format", "{{.Digest}}", &layout], &[]).ok();
    assert_eq!(got.stdout.trim(), want.as_str().unwrap());
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout", "--allow-rollback"])
        .fails(EXIT_BAD_INPUT, &["already exists"]);
}

#[test]
fn export_refuses_a_wrong_key_and_leaves_nothing_behind() {
    let env = Env::new();
    unique_bundle(&env, "wrongkey");
    env.keygen("other");
    let before = env.listing();
    env.run(&["export", "-p", "other.pub", "b.tar", "--format", "docker-archive", "-o", "images.tar"])
        .fails(EXIT_TRUST, &["b.tar", "signed by key"]);
    tamper(&env.path("b.tar"));
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout"]).fails(EXIT_INTEGRITY, &["b.tar"]);
    assert_eq!(env.listing(), before, "no output, no temporary files");
}

#[test]
fn export_reads_a_bundle_from_stdin() {
    let env = Env::new();
    unique_bundle(&env, "stdin");
    let input = std::fs::File::open(env.path("b.tar")).unwrap();
    let out = env
        .cmd()
        .args(["export", "-p", "ops.pub", "-", "--format", "oci", "-o", "layout"])
        .stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.path("layout/index.json").is_file());
}

/// `b.tar`, signed by `ops`, of one image with one incompressible layer of `size` bytes; with the
/// layer's entry name (`blobs/sha256/…`).
fn one_layer_bundle(env: &Env, size: usize) -> String {
    env.keygen("ops");
    big_layout(&env.path("big"), 1, size);
    let src = format!("oci:{}=example.com/sinks/one-layer:1", env.path("big").display());
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    let index = crate::common::signed_index(env, "b.tar");
    let layer = index["blobs"].as_array().unwrap().iter().max_by_key(|b| b["size"].as_u64()).unwrap();
    format!("blobs/sha256/{}", layer["digest"].as_str().unwrap().trim_start_matches("sha256:"))
}

/// `airlock export -p ops.pub BUNDLE ARGS…` with the bundle on stdin.
fn export_stdin(env: &Env, args: &[&str]) -> crate::common::Run {
    let input = std::fs::File::open(env.path("b.tar")).unwrap();
    let out = env.cmd().args(["export", "-p", "ops.pub", "-"]).args(args).stdin(input).output().unwrap();
    crate::common::Run::from_output(out)
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn export_of_a_bundle_file_writes_what_stdin_gives_without_room_for_a_copy() {
    let env = Env::new();
    one_layer_bundle(&env, 8 << 20);
    export_stdin(&env, &["--format", "docker-archive", "-o", "stdin.tar"]).ok();
    export_stdin(&env, &["--format", "oci", "-o", "stdin-layout"]).ok();
    // Room for the 8 MiB archive, not for a second copy of the layer beside it.
    let Some(_disk) = Mount::tmpfs(env.path("disk"), "12m") else { return };
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "docker-archive", "-o", "disk/images.tar"]).ok();
    assert!(std::fs::read(env.path("disk/images.tar")).unwrap() == std::fs::read(env.path("stdin.tar")).unwrap());
    let left: Vec<_> = std::fs::read_dir(env.path("disk")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["images.tar"], "nothing else is left on the disk");
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout"]).ok();
    assert!(tree(&env.path("layout")) == tree(&env.path("stdin-layout")), "the layouts differ");
}

#[test]
fn export_of_a_damaged_bundle_file_names_the_blob_and_writes_nothing() {
    let env = Env::new();
    let layer = one_layer_bundle(&env, 1 << 20);
    tamper(&env.path("b.tar"));
    let before = env.listing();
    let entry = format!("b.tar: entry {layer}");
    for (format, out) in [("docker-archive", "images.tar"), ("oci", "layout")] {
        env.run(&["export", "-p", "ops.pub", "b.tar", "--format", format, "-o", out])
            .fails(EXIT_INTEGRITY, &[&entry, "digest mismatch"]);
        assert_eq!(env.listing(), before, "{format}: no output, no temporary directory");
    }
}

/// The names of the entries of the tar at `path`.
fn entry_names(path: &Path) -> Vec<String> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

#[test]
fn export_of_a_bundle_file_fails_on_a_damaged_entry_its_output_does_not_hold_and_writes_nothing() {
    let env = Env::new();
    unique_bundle(&env, "unwritten");
    let arm = ["--format", "docker-archive", "-o", "images.tar", "--platform", "linux/arm64"];
    env.run(&[&["export", "-p", "ops.pub", "b.tar"][..], &arm].concat()).ok();
    let written = entry_names(&env.path("images.tar"));
    std::fs::remove_file(env.path("images.tar")).unwrap();
    let original = std::fs::read(env.path("b.tar")).unwrap();
    // A blob only the amd64 image holds, and a file an OCI layout leaves out.
    let amd64_only = |name: &str| name.starts_with("blobs/") && !written.iter().any(|w| w == name);
    let damaged_fails = |pick: &dyn Fn(&str) -> bool, args: &[&str]| {
        std::fs::write(env.path("b.tar"), &original).unwrap();
        let entry = format!("b.tar: entry {}", tamper_entry(&env.path("b.tar"), pick));
        let before = env.listing();
        env.run(&[&["export", "-p", "ops.pub", "b.tar"][..], args].concat())
            .fails(EXIT_INTEGRITY, &[&entry, "digest mismatch"]);
        assert_eq!(env.listing(), before, "{args:?}: no output, no temporary file");
    };
    damaged_fails(&amd64_only, &arm);
    damaged_fails(&|name| name == "manifest.json", &["--format", "oci", "-o", "layout"]);
}

#[test]
fn export_of_a_bundle_file_reads_it_once() {
    if !Path::new("/proc/self/io").exists() {
        eprintln!("skipped: this kernel keeps no per-process I/O counts (/proc/self/io)");
        return;
    }
    let env = Env::new();
    one_layer_bundle(&env, 8 << 20);
    let bundle = std::fs::metadata(env.path("b.tar")).unwrap().len();
    for (format, out) in [("docker-archive", "images.tar"), ("oci", "layout")] {
        let args = ["export", "-p", "ops.pub", "b.tar", "--format", format, "-o", out];
        let read = bytes_read(&env, &args);
        assert!(read < bundle + bundle / 8, "{format}: {read} bytes read for a bundle of {bundle}");
    }
}

/// The bytes airlock with `args` read through read(2) and pread(2) (`rchar`): the shell that runs
/// it reaps it, and the kernel then adds a child's counts to its parent's `/proc/PID/io`.
fn bytes_read(env: &Env, args: &[&str]) -> u64 {
    let airlock = env.cmd();
    let mut shell = std::process::Command::new("bash");
    shell.current_dir(airlock.get_current_dir().unwrap());
    for (k, v) in airlock.get_envs() {
        match v {
            Some(v) => shell.env(k, v),
            None => shell.env_remove(k),
        };
    }
    let script = r#""$0" "$@" >/dev/null 2>&1 || exit 1; cat /proc/$$/io"#;
    let run = shell.arg("-c").arg(script).arg(airlock.get_program()).args(args).output().unwrap();
    let io = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{args:?} failed");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap().trim().parse().unwrap()
}

#[test]
fn export_of_a_split_bundle_reads_its_parts_in_place_and_names_a_damaged_part() {
    let env = Env::new();
    one_layer_bundle(&env, 2 << 20);
    export_stdin(&env, &["--format", "oci", "-o", "whole"]).ok();
    let src = format!("oci:{}=example.com/sinks/one-layer:1", env.path("big").display());
    std::fs::create_dir(env.path("parts")).unwrap();
    let args = ["create", "-k", "ops.key", "-o", "parts/b.tar", "--volume-size", "700K", &src];
    env.run(&args).ok();
    env.run(&["export", "-p", "ops.pub", "parts", "--format", "oci", "-o", "from-parts"]).ok();
    assert!(tree(&env.path("from-parts")) == tree(&env.path("whole")), "the layouts differ");

    let mut part = std::fs::read(env.path("parts/b.tar.002")).unwrap();
    part[1000] ^= 1;
    std::fs::write(env.path("parts/b.tar.002"), part).unwrap();
    let before = env.listing();
    env.run(&["export", "-p", "ops.pub", "parts", "--format", "docker-archive", "-o", "images.tar"])
        .fails(EXIT_INTEGRITY, &["b.tar.002 has sha256"]);
    assert_eq!(env.listing(), before, "no output, no temporary directory");
}

#[test]
fn load_of_a_bundle_file_needs_no_room_in_tmp_dir_and_a_stream_does() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    let name = unique_bundle(&env, "tmpdir");
    let Some(_tmp) = Mount::tmpfs(env.path("tmp"), "64k") else { return };
    let load = |input: &str| {
        let bundle = std::fs::File::open(env.path("b.tar")).unwrap();
        let mut cmd = env.cmd();
        cmd.args(["load", "-p", "ops.pub", input, "--tmp-dir", "tmp"]).env("DOCKER_HOST", docker_host()).stdin(bundle);
        crate::common::Run::from_output(cmd.output().unwrap())
    };
    load("-").fails(EXIT_IO, &["tmp/.airlock-export-", "No space left on device"]);
    assert!(!docker_tags().contains(&name));
    load("b.tar").ok();
    assert!(docker_tags().contains(&name));
    assert_eq!(std::fs::read_dir(env.path("tmp")).unwrap().count(), 0, "nothing written to --tmp-dir");
    docker(&["rmi", &name, "example.com/sinks/tmpdir-multi:2"]).ok();
}
