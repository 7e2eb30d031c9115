//! `airlock serve` as real clients see it: skopeo, crane, docker, podman and containerd pull from
//! it and get the digests the signed index names; raw HTTP checks the API's edges (405 for writes,
//! Range, pagination) and that a bundle changed on disk after start is caught on the read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Env, Peer, Run, docker_host, image, signed_index, skip_without, tool};

/// A running `airlock serve`, stopped with SIGTERM when dropped.
pub(crate) struct Served {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// Collects a child's stream into a shared string as it comes, until it ends.
fn collect(stream: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut t = sink.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    (text, reader)
}

impl Served {
    /// Starts `airlock serve ARGS` on a free loopback port and waits until it listens.
    pub(crate) fn start(env: &Env, args: &[&str]) -> Served {
        let mut child = env
            .cmd()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run airlock serve");
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        let readers = vec![out_reader, err_reader];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = stderr.lock().unwrap().clone();
            if let Some(addr) = text.lines().find_map(|l| l.split_once("://").map(|(_, rest)| rest)) {
                let addr = addr.split(' ').next().unwrap().to_owned();
                return Served { child: Some(child), addr, stdout, stderr, readers };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("airlock serve exited with {status} before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "airlock serve did not listen within 120 s:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM and returns the finished run (exit code, request log, stderr).
    pub(crate) fn stop(self) -> Run {
        let pid = self.child.as_ref().unwrap().id().to_string();
        tool("kill", &["-TERM", &pid], &[]).ok();
        self.wait()
    }

    /// Waits for the server to end on its own (after a signal sent already).
    fn wait(mut self) -> Run {
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 exchange on its own connection: status, headers (lowercase names) and body, and
/// whether the body was as long as Content-Length said.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub(crate) fn http(addr: &str, method: &str, path: &str, extra: &[&str]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // A connection cut by the server may end in a reset rather than an orderly close.
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(": ")).map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned())).collect();
    Reply { status, headers, body: raw[end..].to_vec() }
}

/// The standard bundle, served; with the signed index to compare against.
fn standard(env: &Env, extra: &[&str]) -> (Served, Value) {
    env.standard_bundle("b.tar").ok();
    let mut args = vec!["-p", "ops.pub"];
    args.extend_from_slice(extra);
    args.push("b.tar");
    let served = Served::start(env, &args);
    (served, signed_index(env, "b.tar"))
}

const WEB: &str = "example.com/team/web:1.4";
const MULTI: &str = "registry.example/team/multi:2.0";

fn digest_of(index: &Value, name: &str) -> String {
    image(index, name)["digest"].as_str().unwrap().to_owned()
}

#[test]
fn skopeo_copies_every_image_from_serve_with_the_signed_digests() {
    if skip_without(&[Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    for img in index["images"].as_array().unwrap() {
        let name = img["name"].as_str().unwrap();
        let src = format!("docker://{}/{name}", served.addr);
        let dest = format!("oci:{}:x", env.path(&name.replace(['/', ':'], "_")).display());
        tool("skopeo", &["copy", "--all", "--src-tls-verify=false", &src, &dest], &[]).ok();
        let inspect = tool("skopeo", &["inspect", "--raw", &dest], &[]).ok();
        let got = format!("sha256:{}", sha256_hex(inspect.stdout.as_bytes()));
        assert_eq!(got, img["digest"].as_str().unwrap(), "{name}: manifest bytes differ from the bundle's");
    }
    let run = served.stop().ok();
    assert!(run.stderr.contains("stopped:") && run.stderr.contains(" 0 cut"), "{}", run.stderr);
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn crane_lists_the_catalog_and_pulls_with_the_signed_digests() {
    if skip_without(&[Peer::Crane]) {
        return;
    }
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let catalog = tool("crane", &["catalog", "--insecure", &served.addr], &[]).ok();
    let mut want: Vec<String> = index["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().rsplit_once(':').unwrap().0.to_owned())
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(catalog.stdout.lines().collect::<Vec<_>>(), want);
    for name in [WEB, MULTI] {
        let r = format!("{}/{name}", served.addr);
        let digest = tool("crane", &["digest", "--insecure", &r], &[]).ok();
        assert_eq!(digest.stdout.trim(), digest_of(&index, name), "crane digest {name}");
    }
    let out = env.path("web.tar");
    tool("crane", &["pull", "--insecure", &format!("{}/{WEB}", served.addr), out.to_str().unwrap()], &[]).ok();
    assert!(out.metadata().unwrap().len() > 0);
}

#[test]
fn docker_pulls_from_serve_and_keeps_the_signed_digest() {
    if skip_without(&[Peer::Docker]) {
        return;
    }
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let host = docker_host();
    let docker = |args: &[&str]| tool("docker", args, &[("DOCKER_HOST", host.as_str())]);
    let name = format!("{}/{WEB}", served.addr);
    docker(&["pull", &name]).ok();
    let digests = docker(&["image", "inspect", "--format", "{{json .RepoDigests}}", &name]);
    docker(&["rmi", &name]);
    let want = format!("{}/example.com/team/web@{}", served.addr, digest_of(&index, WEB));
    assert!(digests.ok().stdout.contains(&want), "docker's RepoDigests lack {want}");
}

#[test]
fn podman_pulls_from_serve() {
    if skip_without(&[Peer::Podman]) {
        return;
    }
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let (root, run) = (env.path("podman-root"), env.path("podman-run"));
    let podman = |args: &[&str]| {
        let mut all =
            vec!["--storage-driver=vfs", "--root", root.to_str().unwrap(), "--runroot", run.to_str().unwrap()];
        all.extend_from_slice(args);
        tool("podman", &all, &[])
    };
    let name = format!("{}/{WEB}", served.addr);
    podman(&["pull", "--tls-verify=false", &name]).ok();
    let digest = podman(&["image", "inspect", "--format", "{{.Digest}}", &name]).ok();
    assert_eq!(digest.stdout.trim(), digest_of(&index, WEB));
}

#[test]
fn write_methods_answer_405_with_an_oci_error() {
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let digest = digest_of(&index, WEB);
    for (method, path) in [
        ("PUT", "/v2/example.com/team/web/manifests/1.4".to_owned()),
        ("DELETE", format!("/v2/example.com/team/web/manifests/{digest}")),
        ("POST", "/v2/example.com/team/web/blobs/uploads/".to_owned()),
        ("PATCH", "/v2/example.com/team/web/blobs/uploads/x".to_owned()),
        ("DELETE", format!("/v2/example.com/team/web/blobs/{digest}")),
    ] {
        let r = http(&served.addr, method, &path, &["Content-Length: 0"]);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        assert_eq!(r.json()["errors"][0]["code"], "UNSUPPORTED");
    }
    let after = http(&served.addr, "GET", "/v2/example.com/team/web/manifests/1.4", &[]);
    assert_eq!(after.header("docker-content-digest"), Some(digest.as_str()), "nothing changed");
}

#[test]
fn manifests_come_with_their_stored_bytes_type_digest_and_length() {
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let digest = digest_of(&index, MULTI);
    for path in [
        "/v2/registry.example/team/multi/manifests/2.0".to_owned(),
        format!("/v2/registry.example/team/multi/manifests/{digest}?ns=registry.example"),
    ] {
        let r = http(&served.addr, "GET", &path, &["Accept: application/vnd.oci.image.index.v1+json"]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(format!("sha256:{}", sha256_hex(&r.body)), digest);
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(r.header("content-type"), image(&index, MULTI)["mediaType"].as_str());
        assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
        let head = http(&served.addr, "HEAD", &path, &[]);
        assert_eq!((head.status, head.header("content-length")), (200, Some(r.body.len().to_string().as_str())));
        assert!(head.body.is_empty());
    }
    let missing = http(&served.addr, "GET", "/v2/registry.example/team/multi/manifests/9.9", &[]);
    assert_eq!((missing.status, missing.json()["errors"][0]["code"].as_str()), (404, Some("MANIFEST_UNKNOWN")));
    let unknown = http(&served.addr, "GET", "/v2/nobody/here/tags/list", &[]);
    assert_eq!((unknown.status, unknown.json()["errors"][0]["code"].as_str()), (404, Some("NAME_UNKNOWN")));
}

/// The largest blob of the bundle, as (repository, digest, size).
pub(crate) fn largest_blob(index: &Value) -> (String, String, u64) {
    let blob = index["blobs"].as_array().unwrap().iter().max_by_key(|b| b["size"].as_u64().unwrap()).unwrap();
    let digest = blob["digest"].as_str().unwrap();
    let img = index["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["blobs"].as_array().unwrap().iter().any(|b| b == digest))
        .unwrap();
    let repo = img["name"].as_str().unwrap().rsplit_once(':').unwrap().0.to_owned();
    (repo, digest.to_owned(), blob["size"].as_u64().unwrap())
}

#[test]
fn blobs_answer_ranges_and_whole_reads_hash_to_their_digest() {
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let (repo, digest, size) = largest_blob(&index);
    let path = format!("/v2/{repo}/blobs/{digest}");
    let whole = http(&served.addr, "GET", &path, &[]);
    assert_eq!((whole.status, whole.body.len() as u64), (200, size));
    assert_eq!(format!("sha256:{}", sha256_hex(&whole.body)), digest);
    let part = http(&served.addr, "GET", &path, &["Range: bytes=100-199"]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some(format!("bytes 100-199/{size}").as_str()));
    assert_eq!(part.body, whole.body[100..200]);
    let tail = http(&served.addr, "GET", &path, &["Range: bytes=-10"]);
    assert_eq!(tail.body, whole.body[size as usize - 10..]);
    let beyond = http(&served.addr, "GET", &path, &[&format!("Range: bytes={size}-")]);
    assert_eq!((beyond.status, beyond.header("content-range")), (416, Some(format!("bytes */{size}").as_str())));
}

#[test]
fn tags_and_catalog_paginate_with_n_and_last() {
    let env = Env::new();
    let (served, _) = standard(&env, &[]);
    let first = http(&served.addr, "GET", "/v2/_catalog?n=2", &[]);
    let names = first.json()["repositories"].clone();
    assert_eq!(names, serde_json::json!(["example.com/team/base", "example.com/team/web"]));
    let link = first.header("link").expect("a Link to the next page");
    assert_eq!(link, "</v2/_catalog?n=2&last=example.com/team/web>; rel=\"next\"");
    let next = http(&served.addr, "GET", "/v2/_catalog?n=2&last=example.com/team/web", &[]);
    assert_eq!(
        next.json()["repositories"],
        serde_json::json!(["registry.example/team/app", "registry.example/team/multi"])
    );
    let tags = http(&served.addr, "GET", "/v2/example.com/team/web/tags/list?n=1", &[]);
    assert_eq!(tags.json(), serde_json::json!({"name": "example.com/team/web", "tags": ["1.4"]}));
    let rest = http(&served.addr, "GET", "/v2/example.com/team/web/tags/list?n=1&last=1.4", &[]);
    assert_eq!(rest.json()["tags"], serde_json::json!(["latest"]));
    assert!(rest.header("link").is_none(), "no page follows the last");
}

#[test]
fn a_bundle_changed_on_disk_after_start_is_caught_on_the_read_and_the_connection_cut() {
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let (repo, digest, size) = largest_blob(&index);
    crate::common::tamper(&env.path("b.tar"));
    let r = http(&served.addr, "GET", &format!("/v2/{repo}/blobs/{digest}"), &[]);
    assert_eq!(r.header("content-length"), Some(size.to_string().as_str()));
    assert!((r.body.len() as u64) < size, "the client got every byte of a changed blob");
    let run = served.stop();
    assert!(run.stdout.contains("CUT:") && run.stdout.contains("changed on disk"), "log:\n{}", run.stdout);
    assert!(run.stderr.contains(" 1 cut"), "{}", run.stderr);
}

#[test]
fn sigterm_stops_the_server_with_a_summary_and_exit_0() {
    let env = Env::new();
    let (served, _) = standard(&env, &["--json"]);
    http(&served.addr, "GET", "/v2/", &[]);
    let run = served.stop().ok();
    let line: Value = serde_json::from_str(run.stdout.lines().next().expect("a request line")).unwrap();
    assert_eq!(
        (line["method"].as_str(), line["target"].as_str(), line["status"].as_u64()),
        (Some("GET"), Some("/v2/"), Some(200))
    );
    assert!(run.stderr.contains("stopped: 1 connections, 1 requests"), "{}", run.stderr);
}

#[test]
fn plain_http_on_a_non_loopback_address_is_refused_without_insecure() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    env.run(&["serve", "-p", "ops.pub", "--listen", "0.0.0.0:0", "b.tar"])
        .fails(crate::common::EXIT_BAD_INPUT, &["--listen 0.0.0.0:0", "not a loopback address", "--self-signed"]);
}

/// A bundle of one image of the committed OCI layout (`base` or `web-1.4`), named
/// `example.com/sync/app:1`, with the given sequence number.
fn sequenced(env: &Env, out: &str, layout_ref: &str, sequence: &str) {
    if !env.path("ops.key").exists() {
        env.keygen("ops");
    }
    let src = format!("oci:{}:{layout_ref}=example.com/sync/app:1", crate::common::fixture_str("oci-layout"));
    env.run(&["create", "-k", "ops.key", "-o", out, "--created", "2026-01-01T00:00:00Z", "--sequence", sequence, &src])
        .ok();
}

#[test]
fn the_later_sequence_decides_a_tag_and_an_older_bundle_than_served_is_refused() {
    let env = Env::new();
    sequenced(&env, "b1.tar", "base", "1");
    sequenced(&env, "b2.tar", "web-1.4", "2");
    let newest = signed_index(&env, "b2.tar")["images"][0]["digest"].as_str().unwrap().to_owned();
    // Given in any order: the sequence, not the command line, decides.
    let served = Served::start(&env, &["-p", "ops.pub", "b2.tar", "b1.tar"]);
    let r = http(&served.addr, "HEAD", "/v2/example.com/sync/app/manifests/1", &[]);
    assert_eq!(r.header("docker-content-digest"), Some(newest.as_str()));
    let run = served.stop().ok();
    assert!(run.stderr.contains("is now at sequence 2"), "{}", run.stderr);
    env.run(&["serve", "-p", "ops.pub", "--listen", "127.0.0.1:0", "b1.tar"])
        .fails(crate::common::EXIT_TRUST, &["b1.tar", "sequence 1 is not after 2", "--allow-rollback"]);
    // The same bundle again (a restart) is fine.
    Served::start(&env, &["-p", "ops.pub", "b2.tar"]).stop().ok();
}

#[test]
fn a_second_start_on_the_unchanged_file_skips_the_blobs_and_a_changed_one_reads_them_again() {
    let env = Env::new();
    let (served, _) = standard(&env, &[]);
    let first = served.stop().ok();
    assert!(
        first.stderr.contains("b.tar: verified signature by key") && first.stderr.contains("17 blobs"),
        "{}",
        first.stderr
    );
    let again = Served::start(&env, &["-p", "ops.pub", "b.tar"]).stop().ok();
    assert!(again.stderr.contains("every blob verified at"), "{}", again.stderr);
    let forced = Served::start(&env, &["-p", "ops.pub", "--reverify", "b.tar"]).stop().ok();
    assert!(forced.stderr.contains("17 blobs"), "{}", forced.stderr);
    // Rewritten in place with one byte flipped: same inode and size, new times: read again, refused.
    crate::common::tamper(&env.path("b.tar"));
    env.run(&["serve", "-p", "ops.pub", "--listen", "127.0.0.1:0", "b.tar"])
        .fails(crate::common::EXIT_INTEGRITY, &["b.tar", "digest mismatch"]);
}

#[test]
fn self_signed_tls_is_trusted_by_skopeo_and_crane_given_the_ca_and_the_ca_is_kept() {
    if skip_without(&[Peer::Skopeo, Peer::Crane]) {
        return;
    }
    let env = Env::new();
    let (served, index) = standard(&env, &["--self-signed", "tls"]);
    assert!(served.stderr.lock().unwrap().contains("https://"), "not TLS");
    // A directory holding only the CA: skopeo reads every *.crt there as a root, *.key as a client key.
    std::fs::create_dir(env.path("roots")).unwrap();
    std::fs::copy(env.path("tls/ca.crt"), env.path("roots/ca.crt")).unwrap();
    let src = format!("docker://{}/{WEB}", served.addr);
    let dest = format!("oci:{}:x", env.path("out").display());
    let roots = env.path("roots");
    tool("skopeo", &["copy", "--src-cert-dir", roots.to_str().unwrap(), &src, &dest], &[]).ok();
    let untrusted = tool("skopeo", &["inspect", &src], &[]);
    assert_ne!(untrusted.code, 0, "skopeo trusted a certificate it was not given the CA of");
    let ca = env.path("tls/ca.crt");
    let digest =
        tool("crane", &["digest", &format!("{}/{WEB}", served.addr)], &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    assert_eq!(digest.ok().stdout.trim(), digest_of(&index, WEB));
    let ca_before = std::fs::read(&ca).unwrap();
    served.stop().ok();
    let again = Served::start(&env, &["-p", "ops.pub", "--self-signed", "tls", "b.tar"]);
    assert!(again.stderr.lock().unwrap().contains("reused the CA"));
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before, "clients given ca.crt once keep trusting the server");
    // The generated pair also works as --tls-cert/--tls-key.
    again.stop().ok();
    let files =
        Served::start(&env, &["-p", "ops.pub", "--tls-cert", "tls/server.crt", "--tls-key", "tls/server.key", "b.tar"]);
    tool("skopeo", &["inspect", "--cert-dir", roots.to_str().unwrap(), &format!("docker://{}/{WEB}", files.addr)], &[])
        .ok();
}

/// Writes the files `--print-config` printed (each after `# file: PATH`) under `root` instead of
/// `prefix`.
fn write_config(printed: &str, prefix: &str, root: &std::path::Path) {
    let mut current: Option<(std::path::PathBuf, String)> = None;
    let flush = |c: Option<(std::path::PathBuf, String)>| {
        if let Some((path, text)) = c {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    };
    for line in printed.lines() {
        if let Some(path) = line.strip_prefix("# file: ") {
            flush(current.take());
            let rel = path.strip_prefix(prefix).unwrap_or_else(|| panic!("{path} is not under {prefix}"));
            current = Some((root.join(rel.trim_start_matches('/')), String::new()));
        } else if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    flush(current);
}

#[test]
fn containerd_pulls_through_the_printed_hosts_toml_and_directly() {
    if skip_without(&[Peer::Containerd]) {
        return;
    }
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let printed =
        env.run(&["serve", "-p", "ops.pub", "--print-config", "containerd", "--listen", &served.addr, "b.tar"]).ok();
    let hosts = env.path("certs.d");
    write_config(&printed.stdout, "/etc/containerd/certs.d", &hosts);
    let sock = crate::common::containerd_socket();
    let ns = format!("airlock-serve-{}", std::process::id());
    let ctr = |args: &[&str]| {
        let mut all = vec!["-a", sock.as_str(), "-n", ns.as_str()];
        all.extend_from_slice(args);
        tool("ctr", &all, &[])
    };
    // The image keeps its own name: the hosts.toml of its registry sends the pull here.
    let pulled = ctr(&["images", "pull", "--hosts-dir", hosts.to_str().unwrap(), WEB]);
    let direct = format!("{}/{MULTI}", served.addr);
    let plain = ctr(&["images", "pull", "--plain-http", "--all-platforms", &direct]);
    let listed = ctr(&["images", "ls"]);
    ctr(&["images", "rm", "--sync", WEB, &direct]);
    tool("ctr", &["-a", &sock, "namespaces", "rm", &ns], &[]);
    pulled.ok();
    plain.ok();
    for (name, img) in [(WEB, WEB), (direct.as_str(), MULTI)] {
        let line = listed
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in\n{}", listed.stdout));
        assert!(line.contains(&digest_of(&index, img)), "{line}");
    }
    let log = served.stop().stdout;
    assert!(log.contains("/v2/example.com/team/web/manifests/1.4?ns=example.com"), "containerd came with ?ns=:\n{log}");
}

/// The OCI distribution-spec conformance suite, read-only: its pull, tag listing and referrers
/// tests against a served bundle, with the bundle's own tags, manifest and blobs as the
/// pre-existing content. Its verdict is the summary it prints: this build of the suite then
/// panics writing results.yaml in read-only mode (a nil test-data entry for the skipped blob-push
/// tests, conformance/run.go ReportResultsYAML), which is tolerated only there.
#[test]
fn the_oci_conformance_suite_passes_its_read_only_pull_tests() {
    if skip_without(&[Peer::Conformance]) {
        return;
    }
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let web = image(&index, WEB);
    let manifest = web["digest"].as_str().unwrap();
    let blobs: Vec<&str> =
        web["blobs"].as_array().unwrap().iter().filter_map(Value::as_str).filter(|b| *b != manifest).collect();
    let results = env.path("results");
    let vars = [
        ("OCI_REGISTRY", served.addr.as_str()),
        ("OCI_TLS", "disabled"),
        ("OCI_REPO1", "example.com/team/web"),
        ("OCI_REPO2", "example.com/team/base"),
        ("OCI_API_PUSH", "false"),
        ("OCI_API_BLOBS_DELETE", "false"),
        ("OCI_API_MANIFESTS_DELETE", "false"),
        ("OCI_API_TAGS_DELETE", "false"),
        ("OCI_RO_DATA_TAGS", "1.4 latest"),
        ("OCI_RO_DATA_MANIFESTS", manifest),
        ("OCI_RO_DATA_BLOBS", &blobs.join(" ")),
        ("OCI_RO_DATA_REFERRERS", manifest),
        ("OCI_RESULTS_DIR", results.to_str().unwrap()),
    ];
    let run = tool("distribution-conformance.test", &[], &vars);
    let summary = |label: &str| {
        let line = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in\n{}", run.stdout));
        line.rsplit(':').next().unwrap().trim().to_owned()
    };
    assert!(run.stdout.contains("OCI Conformance Test: Pass"), "{}", run.stdout);
    assert_eq!(summary("FAIL."), "0", "{}", run.stdout);
    assert_eq!(summary("Error."), "0", "{}", run.stdout);
    for api in [
        "Ping",
        "Tag listing",
        "Blob get.",
        "Blob head",
        "Manifest get by digest",
        "Manifest get by tag",
        "Manifest head by digest",
        "Manifest head by tag",
        "Referrers",
    ] {
        assert_eq!(summary(api), "Pass", "{api}\n{}", run.stdout);
    }
    assert_eq!(summary("Read Only Inputs"), "Pass", "{}", run.stdout);
    assert!(
        run.code == 0 || run.stderr.contains("ReportResultsYAML"),
        "the suite failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let log = served.stop().stdout;
    let statuses: Vec<u16> = log.lines().filter_map(|l| l.split(' ').nth(4)?.parse().ok()).collect();
    assert!(!statuses.is_empty() && statuses.iter().all(|s| *s < 500), "a server error:\n{log}");
}

#[test]
fn a_delta_is_served_with_its_base_and_refused_without_it() {
    if skip_without(&[Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    sequenced(&env, "full.tar", "base", "1");
    let web = format!("oci:{}:web-1.4=example.com/sync/web:1", crate::common::fixture_str("oci-layout"));
    let src = format!("oci:{}:base=example.com/sync/app:1", crate::common::fixture_str("oci-layout"));
    let args = ["create", "-k", "ops.key", "-o", "delta.tar", "--created", "2026-01-02T00:00:00Z", "--sequence", "2"];
    env.run(&[&args[..], &["--base", "full.tar", &src, &web]].concat()).ok();
    let delta = signed_index(&env, "delta.tar");
    let absent: Vec<&Value> =
        delta["blobs"].as_array().unwrap().iter().filter(|b| b.get("carriedBy").is_some()).collect();
    assert!(!absent.is_empty(), "the delta carries every blob: no test");
    env.run(&["serve", "-p", "ops.pub", "--listen", "127.0.0.1:0", "delta.tar"]).fails(
        crate::common::EXIT_BAD_INPUT,
        &["delta.tar", "carried by its base bundle", "sequence 1", "together with its bases"],
    );
    let served = Served::start(&env, &["-p", "ops.pub", "delta.tar", "full.tar"]);
    for name in ["example.com/sync/web:1", "example.com/sync/app:1"] {
        let dest = format!("oci:{}:x", env.path(&name.replace(['/', ':'], "_")).display());
        tool("skopeo", &["copy", "--src-tls-verify=false", &format!("docker://{}/{name}", served.addr), &dest], &[])
            .ok();
        let raw = tool("skopeo", &["inspect", "--raw", &dest], &[]).ok();
        assert_eq!(format!("sha256:{}", sha256_hex(raw.stdout.as_bytes())), digest_of(&delta, name));
    }
    let log = served.stop().ok().stdout;
    assert!(!log.contains("CUT"), "{log}");
}

#[test]
fn a_split_bundle_is_served_from_its_parts_and_restarts_on_the_record() {
    if skip_without(&[Peer::Skopeo]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    let (legacy, multi) =
        (crate::common::fixture_str("legacy-save.tar"), crate::common::fixture_str("multiarch.oci.tar"));
    let sources = [format!("docker-archive:{legacy}"), format!("oci-archive:{multi}")];
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", "--volume-size", "300K", &sources[0], &sources[1]]).ok();
    assert!(env.path("b.tar.003").exists() && !env.path("b.tar").exists(), "{:?}", env.listing());
    let index = signed_index(&env, "b.tar.001");
    let served = Served::start(&env, &["-p", "ops.pub", "b.tar.001"]);
    let dest = format!("oci:{}:x", env.path("out").display());
    tool(
        "skopeo",
        &["copy", "--all", "--src-tls-verify=false", &format!("docker://{}/{MULTI}", served.addr), &dest],
        &[],
    )
    .ok();
    let raw = tool("skopeo", &["inspect", "--raw", &dest], &[]).ok();
    assert_eq!(format!("sha256:{}", sha256_hex(raw.stdout.as_bytes())), digest_of(&index, MULTI));
    served.stop().ok();
    let again = Served::start(&env, &["-p", "ops.pub", "b.tar.001"]).stop().ok();
    assert!(again.stderr.contains("every blob verified at"), "{}", again.stderr);
}

#[test]
fn sigterm_lets_a_download_in_flight_finish_and_takes_no_new_connection() {
    let env = Env::new();
    let (served, index) = standard(&env, &[]);
    let (repo, digest, size) = largest_blob(&index);
    let mut s = TcpStream::connect(&served.addr).unwrap();
    let req = format!("GET /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    let pid = served.child.as_ref().unwrap().id().to_string();
    tool("kill", &["-TERM", &pid], &[]).ok();
    // The listener closes once the signal is handled: within a deadline, not a fixed pause (a
    // loaded machine took longer than 300 ms), and while the download is still in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&served.addr).is_ok() {
        assert!(Instant::now() < deadline, "new connections were still taken 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let whole = [&first[..], &rest].concat();
    let body = &whole[whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!((body.len() as u64, format!("sha256:{}", sha256_hex(body))), (size, digest));
    let run = served.wait().ok();
    assert!(
        run.stderr.contains("stopping: no new connections") && run.stderr.contains("0 abandoned"),
        "{}",
        run.stderr
    );
}

#[test]
fn cosign_verifies_and_oras_discovers_the_attachments_serve_carries() {
    if skip_without(&[Peer::Registry, Peer::Cosign, Peer::Oras]) {
        return;
    }
    let env = Env::new();
    let s = crate::attachments::signed_registry(&env);
    crate::attachments::create_from(&env, &s, &[]).ok();
    let served = Served::start(&env, &["-p", "ops.pub", "b.tar"]);
    // The original registry's port becomes `_PORT`: a path component holds no `:`.
    let host = s.reg.host.replace(':', "_");
    drop(s.reg);
    let busybox = format!("{}/{host}/src/busybox:1.36", served.addr);
    let verify = ["verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry"];
    let out = crate::attachments::peer(&env, "cosign", &[&verify[..], &[busybox.as_str()]].concat()).ok();
    assert!(out.stdout.contains(&s.busybox), "cosign verify names another digest:\n{}", out.stdout);
    let attest = ["verify-attestation", "--key", "cosign.pub", "--type", "spdxjson", "--insecure-ignore-tlog=true"];
    crate::attachments::peer(&env, "cosign", &[&attest[..], &["--allow-http-registry", &busybox]].concat()).ok();
    let multi = format!("{}/{host}/src/multi@{}", served.addr, s.multi);
    let found = crate::attachments::peer(&env, "oras", &["discover", "--plain-http", "--format", "json", &multi]).ok();
    let found: Value = serde_json::from_str(&found.stdout).unwrap();
    let mut types: Vec<&str> =
        found["referrers"].as_array().unwrap().iter().map(|r| r["artifactType"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["application/vnd.dev.cosign.artifact.sig.v1+json", "application/vnd.example.note"]);
    let path = format!("/v2/{host}/src/multi/referrers/{}?artifactType=application/vnd.example.note", s.multi);
    let filtered = http(&served.addr, "GET", &path, &[]);
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"].as_array().unwrap().len(), 1);
}

#[test]
fn oras_finds_the_referrers_by_their_fallback_tag_and_crane_lists_and_resolves_it() {
    if skip_without(&[Peer::Registry, Peer::Cosign, Peer::Oras, Peer::Crane]) {
        return;
    }
    let env = Env::new();
    let s = crate::attachments::signed_registry(&env);
    crate::attachments::create_from(&env, &s, &[]).ok();
    let served = Served::start(&env, &["-p", "ops.pub", "b.tar"]);
    let repo = format!("{}/src/multi", s.reg.host.replace(':', "_"));
    drop(s.reg);
    let multi = format!("{}/{repo}@{}", served.addr, s.multi);
    let discover = |spec: &str| {
        let args = ["discover", "--plain-http", "--distribution-spec", spec, "--format", "json", &multi];
        let found: Value = serde_json::from_str(&crate::attachments::peer(&env, "oras", &args).ok().stdout).unwrap();
        let mut types: Vec<String> = found["referrers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r["artifactType"].as_str().unwrap(), r["digest"].as_str().unwrap()))
            .collect();
        types.sort();
        types
    };
    let by_tag = discover("v1.1-referrers-tag");
    assert_eq!(by_tag.len(), 2, "{by_tag:?}");
    assert_eq!(by_tag, discover("v1.1-referrers-api"));

    let tag = format!("sha256-{}", s.multi.trim_start_matches("sha256:"));
    let listed = tool("crane", &["ls", "--insecure", &format!("{}/{repo}", served.addr)], &[]).ok();
    assert!(listed.stdout.lines().any(|t| t == tag), "crane ls:\n{}", listed.stdout);
    let resolved = tool("crane", &["digest", "--insecure", &format!("{}/{repo}:{tag}", served.addr)], &[]).ok();
    let index = http(&served.addr, "GET", &format!("/v2/{repo}/manifests/{tag}"), &[]);
    assert_eq!(index.header("content-type"), Some("application/vnd.oci.image.index.v1+json"));
    assert_eq!(resolved.stdout.trim(), format!("sha256:{}", sha256_hex(&index.body)));
    assert_eq!(index.header("docker-content-digest"), Some(resolved.stdout.trim()));
    let by_digest = http(&served.addr, "HEAD", &format!("/v2/{repo}/manifests/{}", resolved.stdout.trim()), &[]);
    assert_eq!((by_digest.status, by_digest.header("content-length")), (200, Some(&*index.body.len().to_string())));
}
