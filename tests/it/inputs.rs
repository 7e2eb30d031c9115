//! Local inputs that try to lead airlock elsewhere or stall it: an `oci:` layout whose blob or
//! `blobs/` directory is a symlink out of the layout, a FIFO given as an archive or placed in a
//! layout, and key or list files that are huge or of the wrong algorithm. Each is refused quickly
//! (a FIFO never blocks), with the documented exit code and a message naming the file.

use std::path::Path;
use std::process::Command;

use crate::common::{EXIT_BAD_INPUT, EXIT_TRUST, Env, Peer, Run, fixture, skip_without};
use crate::fakes::{fake_server, reply};

/// A copy of fixtures/oci-layout at `layout` in the test directory.
fn copy_layout(env: &Env) -> std::path::PathBuf {
    copy_layout_to(env, "layout")
}

/// A copy of fixtures/oci-layout at `name` in the test directory.
pub(crate) fn copy_layout_to(env: &Env, name: &str) -> std::path::PathBuf {
    let dest = env.path(name);
    for e in walkdir::WalkDir::new(fixture("oci-layout")) {
        let e = e.unwrap();
        let to = dest.join(e.path().strip_prefix(fixture("oci-layout")).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
    dest
}

/// The blob file of the first layer of the `web-1.4` image.
fn a_layer(layout: &Path) -> std::path::PathBuf {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][1]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap()).unwrap();
    layout.join("blobs/sha256").join(&manifest["layers"][0]["digest"].as_str().unwrap()[7..])
}

/// `airlock ARGS` under `timeout 30`: a hang shows as exit 124, not as a stuck test.
fn run_bounded(env: &Env, args: &[&str]) -> Run {
    let mut c = Command::new("timeout");
    c.current_dir(env.path("")).arg("30").arg(env!("CARGO_BIN_EXE_airlock")).args(args);
    c.env_remove("AIRLOCK_KEY_PASSWORD").env_remove("SOURCE_DATE_EPOCH");
    Run::from_output(c.output().unwrap())
}

fn create(env: &Env, source: &str) -> Run {
    if !env.path("ops.key").exists() {
        env.keygen("ops");
    }
    let run = run_bounded(env, &["create", "-k", "ops.key", "-o", "out.tar", source]);
    assert!(!env.path("out.tar").exists(), "a bundle was written");
    run
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn a_layout_blob_linked_to_a_host_file_is_refused_even_with_the_right_content() {
    let env = Env::new();
    let layout = copy_layout(&env);
    let layer = a_layer(&layout);
    let outside = env.path("host-file");
    std::fs::rename(&layer, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &layer).unwrap();
    let hex = layer.file_name().unwrap().to_str().unwrap().to_owned();
    create(&env, "oci:layout:web-1.4=example.com/team/web:1.4")
        .fails(EXIT_BAD_INPUT, &["layout", &hex, "outside the directory"]);
}

#[test]
fn a_layout_whose_blobs_directory_links_elsewhere_is_refused() {
    let env = Env::new();
    let layout = copy_layout(&env);
    std::fs::rename(layout.join("blobs"), env.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere"), layout.join("blobs")).unwrap();
    create(&env, "oci:layout:web-1.4=example.com/team/web:1.4")
        .fails(EXIT_BAD_INPUT, &["layout", "blobs/sha256/", "outside the directory"]);
}

#[test]
fn a_fifo_as_the_archive_index_or_blob_is_refused_without_blocking() {
    let env = Env::new();
    mkfifo(&env.path("pipe.tar"));
    create(&env, "oci-archive:pipe.tar").fails(EXIT_BAD_INPUT, &["pipe.tar", "is a FIFO, not a regular file"]);
    create(&env, "docker-archive:pipe.tar").fails(EXIT_BAD_INPUT, &["pipe.tar", "is a FIFO"]);

    let layout = copy_layout(&env);
    std::fs::remove_file(layout.join("index.json")).unwrap();
    mkfifo(&layout.join("index.json"));
    create(&env, "oci:layout:web-1.4=example.com/team/web:1.4").fails(EXIT_BAD_INPUT, &["index.json", "is a FIFO"]);

    std::fs::remove_dir_all(&layout).unwrap();
    let layout = copy_layout(&env);
    let layer = a_layer(&layout);
    std::fs::remove_file(&layer).unwrap();
    mkfifo(&layer);
    create(&env, "oci:layout:web-1.4=example.com/team/web:1.4")
        .fails(EXIT_BAD_INPUT, &[layer.file_name().unwrap().to_str().unwrap(), "is a FIFO"]);
}

#[test]
fn a_public_key_of_another_algorithm_is_refused() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let text = std::fs::read_to_string(env.path("ops.pub")).unwrap();
    let out = Command::new("python3")
        .args(["-c", "import base64,sys;l=sys.argv[1].split('\\n');r=base64.b64decode(l[1]);print(l[0]);print(base64.b64encode(b'Eb'+r[2:]).decode())", &text])
        .output()
        .unwrap();
    std::fs::write(env.path("eb.pub"), out.stdout).unwrap();
    env.run(&["verify", "-p", "eb.pub", "b.tar"]).fails(EXIT_TRUST, &["eb.pub", "algorithm `Eb` is not Ed25519"]);
}

#[test]
fn huge_key_and_list_files_are_refused_before_they_are_read() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let big = vec![b'A'; 64 << 20];
    for name in ["big.pub", "big.key", "big.list"] {
        std::fs::write(env.path(name), &big).unwrap();
    }
    env.run(&["verify", "-p", "big.pub", "b.tar"]).fails(EXIT_TRUST, &["big.pub", "67108864 bytes is too large"]);
    let src = format!("oci:{}:web-1.4", fixture("oci-layout").display());
    env.run(&["create", "-k", "big.key", "-o", "out.tar", &src]).fails(EXIT_TRUST, &["big.key", "too large"]);
    env.run(&["create", "-k", "ops.key", "-o", "out.tar", "-f", "big.list"])
        .fails(EXIT_BAD_INPUT, &["big.list", "too large for an image list"]);
    mkfifo(&env.path("fifo.pub"));
    run_bounded(&env, &["verify", "-p", "fifo.pub", "b.tar"]).fails(EXIT_TRUST, &["fifo.pub", "is a FIFO"]);
}

#[test]
fn huge_or_fifo_ca_certificates_docker_configs_and_passwords_are_refused_unread() {
    let env = Env::new();
    std::fs::write(env.path("big.pem"), vec![b'A'; 2 << 20]).unwrap();
    mkfifo(&env.path("pipe.pem"));
    let push = |ca: &str| {
        run_bounded(&env, &["push", "-p", "ops.pub", "b.tar", "--to", "127.0.0.1:9/m", "--state", "s", "--ca-cert", ca])
    };
    push("big.pem").fails(EXIT_BAD_INPUT, &["big.pem", "2097152 bytes is too large for a CA certificate file"]);
    push("pipe.pem").fails(EXIT_BAD_INPUT, &["pipe.pem", "is a FIFO, not a regular file"]);
    let args = ["push", "-p", "ops.pub", "b.tar", "--to", "127.0.0.1:9/m", "--username", "u", "--password-stdin"];
    env.run_with_stdin_file(&args, "big.pem").fails(EXIT_BAD_INPUT, &["--password-stdin", "not a password"]);

    // A registry that asks for credentials makes airlock read docker's config.json.
    let (port, _) = fake_server(|_| reply("401 Unauthorized", "WWW-Authenticate: Basic realm=\"r\"\r\n", ""));
    std::fs::create_dir(env.path("docker")).unwrap();
    std::fs::write(env.path("docker/config.json"), vec![b' '; 8 << 20]).unwrap();
    env.keygen("ops");
    let src = format!("127.0.0.1:{port}/team/app:1");
    let mut create = env.cmd();
    create.args(["create", "-k", "ops.key", "-o", "out.tar", "--retries", "0", &src]);
    let run = Run::from_output(create.env("DOCKER_CONFIG", env.path("docker")).output().unwrap());
    run.fails(EXIT_BAD_INPUT, &["config.json", "too large for a docker config file"]);
}

#[test]
fn a_failing_credential_helpers_words_are_shown_escaped_and_cut() {
    let (port, _) = fake_server(|_| reply("401 Unauthorized", "WWW-Authenticate: Basic realm=\"r\"\r\n", ""));
    let env = Env::new();
    env.keygen("ops");
    std::fs::create_dir(env.path("docker")).unwrap();
    let config = format!(r#"{{"credHelpers": {{"127.0.0.1:{port}": "hostile"}}}}"#);
    std::fs::write(env.path("docker/config.json"), config).unwrap();
    let helper = env.path("docker/docker-credential-hostile");
    let script = "#!/bin/sh\nprintf '\\033[2J\\033]0;owned\\007%0100000d\\n' 0 >&2\nexit 1\n";
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", env.path("docker").display(), std::env::var("PATH").unwrap_or_default());
    let src = format!("127.0.0.1:{port}/team/app:1");
    let mut create = env.cmd();
    create.args(["create", "-k", "ops.key", "-o", "out.tar", "--retries", "0", &src]);
    let run = Run::from_output(create.env("DOCKER_CONFIG", env.path("docker")).env("PATH", path).output().unwrap());
    let run = run.fails(
        EXIT_BAD_INPUT,
        &["credential helper `docker-credential-hostile` failed", "\\u{1b}[2J", "more characters"],
    );
    assert!(!run.stderr.contains('\x1b') && run.stderr.len() < 4096, "{}", run.stderr);
    assert!(!env.path("out.tar").exists());
}

#[test]
fn a_misspelt_or_foreign_transport_is_named_with_what_to_write_instead() {
    let env = Env::new();
    std::fs::copy(fixture("tools.oci.tar"), env.path("tools.tar")).unwrap();
    let all = "docker://REF (or a bare REF), docker-daemon:REF, docker-archive:FILE, oci:DIR or oci-archive:FILE";
    create(&env, "dockr://nginx:1.27")
        .fails(EXIT_BAD_INPUT, &["`dockr://nginx:1.27`", "did you mean `docker://`?", all]);
    create(&env, "oci-archvie:tools.tar").fails(EXIT_BAD_INPUT, &["did you mean `oci-archive:`?"]);
    create(&env, "containers-storage:nginx").fails(EXIT_BAD_INPUT, &["skopeo's `containers-storage:`", "podman save"]);
    create(&env, "docker-archive://tools.tar")
        .fails(EXIT_BAD_INPUT, &["no such file `//tools.tar`", "with no `//` (docker-archive:tools.tar)"]);
    create(&env, "NGINX:1.27").fails(EXIT_BAD_INPUT, &["no such file or directory, and not an image reference", all]);
    let help = env.run(&["create", "--help"]).ok().stdout;
    assert!(help.contains("docker-daemon:REF"), "create --help names every transport:\n{help}");
}

#[test]
fn a_yaml_list_naming_a_local_archive_is_refused_even_where_it_reads_as_a_reference() {
    let env = Env::new();
    std::fs::copy(fixture("tools.oci.tar"), env.path("tools.tar")).unwrap();
    // `oci-archive:tools.tar` is also the image `oci-archive` tagged `tools.tar`, on Docker Hub.
    let hauler = "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nmetadata:\n  name: x\nspec:\n  images:\n    - name: oci-archive:tools.tar\n";
    std::fs::write(env.path("list.yaml"), hauler).unwrap();
    env.keygen("ops");
    let run = run_bounded(&env, &["create", "-k", "ops.key", "-o", "out.tar", "-f", "list.yaml"]);
    run.fails(
        EXIT_BAD_INPUT,
        &["list.yaml:7", "`oci-archive:tools.tar` is not a registry image", "--file-allow-local"],
    );
    assert!(!env.path("out.tar").exists());
    run_bounded(&env, &["create", "-k", "ops.key", "-o", "out.tar", "--file-allow-local", "list.yaml"]).ok();
}
