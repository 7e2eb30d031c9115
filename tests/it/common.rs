//! The test context: a temporary directory, the airlock binary, keys and the committed fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::process::{Command, Output};

/// Exit codes the binary promises (see README).
pub const EXIT_BAD_INPUT: i32 = 3;
pub const EXIT_INTEGRITY: i32 = 4;
pub const EXIT_TRUST: i32 = 5;
pub const EXIT_IO: i32 = 6;

pub struct Env {
    pub dir: tempfile::TempDir,
    /// XDG_STATE_HOME of every run: the importers' state never touches the user's own.
    pub state: tempfile::TempDir,
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The result of a command built with [`Env::cmd`] and run to completion.
    pub fn from_output(out: Output) -> Self {
        Run::from(out)
    }

    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the run succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "airlock failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Panics unless the run failed with `code` and stderr contains every one of `needles`.
    pub fn fails(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(self.code, code, "wrong exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}:\n{}", self.stderr);
        }
        assert!(!self.stderr.contains("panicked"), "airlock panicked:\n{}", self.stderr);
        self
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub fn fixture_str(name: &str) -> String {
    fixture(name).display().to_string()
}

impl Env {
    pub fn new() -> Self {
        Env { dir: tempfile::tempdir().expect("temp dir"), state: tempfile::tempdir().expect("state dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
        c.current_dir(self.dir.path());
        c.env_remove("AIRLOCK_KEY_PASSWORD").env_remove("SOURCE_DATE_EPOCH");
        c.env("XDG_STATE_HOME", self.state.path());
        c
    }

    /// Runs airlock with `args` in the test directory.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("run airlock"))
    }

    /// Runs airlock with `args` and `input` on its stdin (a password, a bundle).
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::process::Stdio;
        let mut child =
            self.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        Run::from(child.wait_with_output().expect("run airlock"))
    }

    /// Runs airlock with the file `name` on its stdin (read as a stream; nothing is left unwritten
    /// when airlock stops reading early).
    pub fn run_with_stdin_file(&self, args: &[&str], name: &str) -> Run {
        let stdin = std::fs::File::open(self.path(name)).expect("stdin file");
        Run::from(self.cmd().args(args).stdin(stdin).output().expect("run airlock"))
    }

    /// Makes an unencrypted key pair `NAME.key` / `NAME.pub`.
    pub fn keygen(&self, name: &str) {
        self.run(&["keygen", "--no-password", "-o", name]).ok();
    }

    /// The standard multi-source bundle: legacy docker save (2 images, 3 tags), one tag of an OCI
    /// layout, an OCI archive and a two-platform index. Signed with `ops.key`.
    pub fn standard_bundle(&self, out: &str) -> Run {
        if !self.path("ops.key").exists() {
            self.keygen("ops");
        }
        let legacy = format!("docker-archive:{}", fixture_str("legacy-save.tar"));
        let layout = format!("oci:{}:registry.example/team/app:1.4", fixture_str("oci-layout"));
        let tools = format!("oci-archive:{}", fixture_str("tools.oci.tar"));
        let multi = format!("oci-archive:{}", fixture_str("multiarch.oci.tar"));
        self.run(&[
            "create",
            "-k",
            "ops.key",
            "-o",
            out,
            "--created",
            "2026-01-01T00:00:00Z",
            &legacy,
            &layout,
            &tools,
            &multi,
        ])
    }

    /// A bundle `out` (signed with `ops.key`) of two images that differ in their registry host
    /// alone: `example.com/team/web:1.4` (the legacy save) and `registry.example/team/web:1.4`
    /// (the layout's `web-1.4`), with other digests.
    pub fn host_clash_bundle(&self, out: &str) {
        if !self.path("ops.key").exists() {
            self.keygen("ops");
        }
        let legacy = format!("docker-archive:{}", fixture_str("legacy-save.tar"));
        let layout = format!("oci:{}:web-1.4=registry.example/team/web:1.4", fixture_str("oci-layout"));
        self.run(&["create", "-k", "ops.key", "-o", out, &legacy, &layout]).ok();
    }

    /// Files in the test directory, for "nothing was left behind" checks.
    pub fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// A program outside airlock that a test checks its output against. scripts/test.sh provides
/// every one (scripts/peers.sh installs them and starts a private dockerd); a bare `cargo test`
/// may run where none is installed.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    /// The private dockerd of scripts/test.sh (AIRLOCK_TEST_DOCKER_HOST), and the `docker` CLI.
    Docker,
    /// That dockerd's containerd (AIRLOCK_TEST_CONTAINERD), and `ctr`.
    Containerd,
    /// The CNCF distribution registry (`docker-registry`), started by scripts/peers.sh.
    Registry,
    Skopeo,
    Podman,
    Minisign,
    /// Docker Engine 26 (AIRLOCK_TEST_DOCKERD26, from `peers.sh install-modern-dockerd`), which
    /// tests start themselves with [`Dockerd::start`].
    Docker26,
    /// sigstore's `cosign` (`peers.sh install-go-peers`).
    Cosign,
    /// `oras` (`peers.sh install-go-peers`).
    Oras,
    /// go-containerregistry's `crane` (`peers.sh install-go-peers`).
    Crane,
    /// The OCI distribution-spec conformance suite, `distribution-conformance.test`
    /// (`peers.sh install-go-peers`).
    Conformance,
    /// `mkfs.vfat` (dosfstools), to make a FAT32 filesystem image.
    Vfat,
    /// `rsparts` (scripts/rsparts, `peers.sh install-go-peers`): split-bundle parity with Go's
    /// klauspost/reedsolomon, written from docs/bundle-format.md alone.
    Rsparts,
    /// `python3`, which builds the hostile archives (tests/hostile.py) and measures peak memory.
    Python,
    /// `curl`, an HTTP client that is not airlock's.
    Curl,
}

impl Peer {
    fn present(self) -> bool {
        let env = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
        match self {
            Peer::Docker => env("AIRLOCK_TEST_DOCKER_HOST") && on_path("docker"),
            Peer::Containerd => env("AIRLOCK_TEST_CONTAINERD") && on_path("ctr"),
            Peer::Registry => on_path("docker-registry"),
            Peer::Skopeo => on_path("skopeo"),
            Peer::Podman => on_path("podman"),
            Peer::Minisign => on_path("minisign"),
            Peer::Docker26 => env("AIRLOCK_TEST_DOCKERD26") && on_path("docker") && on_path("ctr"),
            Peer::Cosign => on_path("cosign"),
            Peer::Oras => on_path("oras"),
            Peer::Crane => on_path("crane"),
            Peer::Conformance => on_path("distribution-conformance.test"),
            Peer::Vfat => on_path("mkfs.vfat"),
            Peer::Rsparts => on_path("rsparts"),
            Peer::Python => on_path("python3"),
            Peer::Curl => on_path("curl"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Peer::Docker => "a dockerd (AIRLOCK_TEST_DOCKER_HOST)",
            Peer::Containerd => "containerd (AIRLOCK_TEST_CONTAINERD)",
            Peer::Registry => "docker-registry",
            Peer::Skopeo => "skopeo",
            Peer::Podman => "podman",
            Peer::Minisign => "minisign",
            Peer::Docker26 => "dockerd 26 (AIRLOCK_TEST_DOCKERD26)",
            Peer::Cosign => "cosign",
            Peer::Oras => "oras",
            Peer::Crane => "crane",
            Peer::Conformance => "distribution-conformance.test",
            Peer::Vfat => "mkfs.vfat (dosfstools)",
            Peer::Rsparts => "rsparts (scripts/rsparts)",
            Peer::Python => "python3",
            Peer::Curl => "curl",
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// True when a peer of `needed` is missing, after one line on stderr naming the test, the peers
/// and how to run it; the test then returns early: `if skip_without(&[Peer::Skopeo]) { return; }`.
/// Under scripts/test.sh (AIRLOCK_TEST_REQUIRE_PEERS=1) a missing peer fails the test instead, so
/// CI never passes by skipping.
pub fn skip_without(needed: &[Peer]) -> bool {
    let missing: Vec<&str> = needed.iter().filter(|p| !p.present()).map(|p| p.name()).collect();
    if missing.is_empty() {
        return false;
    }
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    assert!(
        std::env::var_os("AIRLOCK_TEST_REQUIRE_PEERS").is_none(),
        "{test}: {} missing although scripts/test.sh should provide it",
        missing.join(", ")
    );
    // Straight to the process's stderr: libtest would hide an eprintln! of a passing test.
    let line =
        format!("skipped {test}: needs {}; run scripts/test.sh, which provides every peer\n", missing.join(", "));
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    true
}

/// A private Docker Engine started by scripts/test.sh (scripts/peers.sh start-dockerd); its
/// address comes in AIRLOCK_TEST_DOCKER_HOST.
pub fn docker_host() -> String {
    std::env::var("AIRLOCK_TEST_DOCKER_HOST").expect(
        "AIRLOCK_TEST_DOCKER_HOST is not set: run the tests with scripts/test.sh, which starts a private dockerd",
    )
}

/// containerd's socket of that dockerd.
pub fn containerd_socket() -> String {
    std::env::var("AIRLOCK_TEST_CONTAINERD").expect(
        "AIRLOCK_TEST_CONTAINERD is not set: run the tests with scripts/test.sh, which starts a private dockerd",
    )
}

/// Runs an external tool, returning (exit code, stdout, stderr).
pub fn tool(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (installed by scripts/peers.sh install): {e}"));
    Run::from(out)
}

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers.sh")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// A loopback port nothing listens on while this lives: the near end of a connection it holds
/// open, which no server can bind meanwhile. (A port found free and let go, as [`free_port`] does,
/// may be taken by another test's server before it is dialled.)
pub struct ClosedPort {
    pub port: u16,
    _ends: [std::net::TcpStream; 2],
}

impl ClosedPort {
    pub fn new() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let near = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (far, _) = listener.accept().expect("accept");
        ClosedPort { port: near.local_addr().unwrap().port(), _ends: [near, far] }
    }
}

/// A registry on a free loopback port in a temporary directory, stopped on drop.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub host: String,
}

impl Registry {
    /// `extra`: `--tls`, `--htpasswd USER:PASS`.
    pub fn start(extra: &[&str]) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut last = String::new();
        // Another test may take the port between our probe and the registry's bind.
        for _ in 0..3 {
            let port = free_port().to_string();
            let out = Command::new(peers())
                .args(["start-registry", dir.path().to_str().unwrap(), &port])
                .args(extra)
                .output()
                .expect("run peers.sh");
            if out.status.success() {
                return Registry { dir, host: format!("127.0.0.1:{port}") };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("cannot start the registry:\n{last}");
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Every request the registry has answered so far, from its access log: `METHOD URI STATUS`.
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once("] \"")?;
                let (request, status) = rest.split_once("\" ")?;
                let request = request.strip_suffix(" HTTP/1.1")?;
                Some(format!("{request} {}", status.split(' ').next()?))
            })
            .collect()
    }

    /// The client ports of the connections opened so far for work: those whose first request was
    /// not `GET /v2/` (a client's probe for the scheme, whose connection may be reused after).
    pub fn connections(&self) -> std::collections::BTreeSet<String> {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        let mut first = std::collections::BTreeMap::new();
        for l in log.lines().filter(|l| l.contains("http.request.uri=")) {
            let Some((_, rest)) = l.split_once("http.request.remoteaddr=\"") else { continue };
            let addr = rest.split('"').next().unwrap_or_default().to_owned();
            first.entry(addr).or_insert_with(|| l.contains("http.request.uri=/v2/ "));
        }
        first.into_iter().filter(|(_, probe)| !probe).map(|(addr, _)| addr).collect()
    }

    pub fn client(&self, opts: airlock::registry::ClientOptions) -> airlock::registry::Client {
        airlock::registry::Client::new(&self.host, &opts).expect("client")
    }

    /// Stops the server, keeping its storage.
    pub fn stop(&self) {
        let out = Command::new(peers()).args(["stop-registry", self.dir.path().to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&self, extra: &[&str]) {
        let port = self.host.rsplit(':').next().unwrap();
        let out = Command::new(peers())
            .args(["start-registry", self.dir.path().to_str().unwrap(), port])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(peers()).args(["stop-registry", self.dir.path().to_str().unwrap()]).output();
    }
}

/// A private dockerd 26 in a temporary directory (scripts/peers.sh start-dockerd), stopped on drop.
pub struct Dockerd {
    pub dir: tempfile::TempDir,
    /// `unix://…/docker.sock`, for DOCKER_HOST.
    pub host: String,
    pub containerd: String,
}

impl Dockerd {
    /// `extra`: `--containerd-store`.
    pub fn start(extra: &[&str]) -> Dockerd {
        let dir = tempfile::Builder::new().prefix("d26").tempdir_in("/tmp").expect("temp dir");
        let out = Command::new(peers())
            .args(["start-dockerd", dir.path().to_str().unwrap()])
            .args(extra)
            .env("DOCKERD", std::env::var("AIRLOCK_TEST_DOCKERD26").expect("AIRLOCK_TEST_DOCKERD26"))
            .output()
            .expect("run peers.sh");
        let mut d = Dockerd { dir, host: String::new(), containerd: String::new() };
        assert!(out.status.success(), "cannot start dockerd 26:\n{}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            match line.trim_start_matches("export ").split_once('=') {
                Some(("DOCKER_HOST", v)) => d.host = v.to_owned(),
                Some(("CONTAINERD_ADDRESS", v)) => d.containerd = v.to_owned(),
                _ => {}
            }
        }
        d
    }

    /// The docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Run {
        tool("docker", args, &[("DOCKER_HOST", self.host.as_str())])
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new(peers()).args(["stop-dockerd", self.dir.path().to_str().unwrap()]).output();
    }
}

/// Flips one byte in the middle of the largest blob of a bundle.
pub fn tamper(path: &std::path::Path) {
    tamper_entry(path, &|_| true);
}

/// Flips one byte in the middle of the largest entry of the tar at `path` whose name `pick`
/// accepts; returns its name.
pub fn tamper_entry(path: &std::path::Path, pick: &dyn Fn(&str) -> bool) -> String {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    let (offset, size, name) = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.raw_file_position(), e.size(), e.path().unwrap().display().to_string()))
        .filter(|(_, _, name)| pick(name))
        .max_by_key(|(_, s, _)| *s)
        .unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[(offset + size / 2) as usize] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
    name
}

/// An OCI layout with one image of `layers` incompressible layers of `size` bytes each.
pub fn big_layout(dir: &Path, layers: usize, size: usize) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut descs = Vec::new();
    for _ in 0..layers {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        descs.push(put(&data));
    }
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": descs.iter().map(|d| &d.0).collect::<Vec<_>>()}});
    let (cd, cs) = put(config.to_string().as_bytes());
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs.iter().map(|(d, s)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>()});
    let (md, ms) = put(manifest.to_string().as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "example.com/big/image:1"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// The signed index of a bundle, read with tar like any user could.
pub fn signed_index(env: &Env, bundle: &str) -> Value {
    let mut ar = tar::Archive::new(std::fs::File::open(env.path(bundle)).unwrap());
    let mut entry = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("airlock.json"), "first entry");
    serde_json::from_reader(&mut entry).unwrap()
}

/// An image of a signed index, by name.
pub fn image<'a>(index: &'a Value, name: &str) -> &'a Value {
    index["images"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("no image {name}"))
}

/// A tmpfs of `size` mounted on a directory of the test, unmounted on drop; `None` where this
/// machine cannot mount (not root, no tmpfs).
pub struct Mount(std::path::PathBuf);

impl Mount {
    pub fn tmpfs(dir: std::path::PathBuf, size: &str) -> Option<Mount> {
        let opts = format!("size={size}");
        Mount::new(dir, &["-t", "tmpfs", "-o", &opts, "tmpfs"])
    }

    /// A FAT32 filesystem of 40 MiB in a file, loop-mounted.
    pub fn vfat(env: &Env, dir: std::path::PathBuf) -> Option<Mount> {
        let image = env.path("fat.img");
        let made = tool("mkfs.vfat", &["-F", "32", "-C", image.to_str().unwrap(), "40960"], &[]);
        assert_eq!(made.code, 0, "mkfs.vfat: {}", made.stderr);
        Mount::new(dir, &["-o", "loop", image.to_str().unwrap()])
    }

    /// `mount ARGS DIR`; `None` (after a line on stderr) where this machine cannot mount.
    pub fn new(dir: std::path::PathBuf, args: &[&str]) -> Option<Mount> {
        std::fs::create_dir_all(&dir).unwrap();
        let mut all = args.to_vec();
        all.push(dir.to_str().unwrap());
        let run = tool("mount", &all, &[]);
        if run.code != 0 {
            eprintln!("skipped: cannot mount here ({}): {}", args.join(" "), run.stderr.trim());
            return None;
        }
        Some(Mount(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        tool("umount", &[self.0.to_str().unwrap()], &[]);
    }
}
