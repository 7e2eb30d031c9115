//! The registry client against the real CNCF distribution registry (`scripts/peers.sh
//! start-registry`): blob pushes (whole and chunked, resumed after a cut connection), mounts,
//! manifests as skopeo sees them, htpasswd and docker-config credentials, TLS with and without the
//! CA, an unreachable registry, and credentials kept from a redirect's other host.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::digest::{Digest, VerifyingReader};
use airlock::error::{Class, Error};
use airlock::registry::{Client, ClientOptions};
use base64::Engine as _;
use serde_json::json;

use crate::common::{ClosedPort, Peer, Registry, skip_without, tool};
use crate::fakes::{CuttingProxy, fake_server, header_value, reply, silent_server, threaded_server, tls_fake_server};

const USER: &str = "porter";
const PASSWORD: &str = "s3cret-Pa55";

/// Options that keep tests fast and away from the user's docker config.
fn options(dir: &Path) -> ClientOptions {
    ClientOptions { max_retries: 1, docker_config: Some(dir.join("no-config.json")), ..ClientOptions::default() }
}

/// Incompressible bytes, the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An `open` for `push_blob` that counts its calls and verifies what it streams.
fn opener(data: &[u8], calls: &AtomicUsize) -> impl FnMut() -> airlock::error::Result<Box<dyn Read + Send>> {
    let data = data.to_vec();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        let (digest, size) = (Digest::of_bytes(&data), data.len() as u64);
        Ok(Box::new(VerifyingReader::new(std::io::Cursor::new(data.clone()), digest, size)))
    }
}

fn push(client: &Client, repo: &str, data: &[u8]) -> airlock::error::Result<Digest> {
    let digest = Digest::of_bytes(data);
    let calls = AtomicUsize::new(0);
    client.push_blob(repo, &digest, data.len() as u64, &mut opener(data, &calls))?;
    Ok(digest)
}

/// The error and its causes, as `main` would print them.
fn chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        text.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    text
}

/// A one-layer OCI image: (config bytes, layer bytes, manifest bytes).
fn image(layer_len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut tar = tar::Builder::new(Vec::new());
    let content = noise(layer_len, 7);
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "data.bin", &content[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let layer_digest = Digest::of_bytes(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::of_bytes(&config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    (config, layer, manifest)
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn pushes_an_image_that_skopeo_reads_back_and_mounts_its_blobs() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let reg = Registry::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // The layer goes in 64 KiB chunks, the config whole.
    let client = reg.client(ClientOptions { chunk_threshold: 100 << 10, chunk_size: 64 << 10, ..options(tmp.path()) });
    client.ping().unwrap();
    let (config, layer, manifest) = image(300 << 10);
    assert!(layer.len() > 4 * (64 << 10), "the layer needs several chunks");

    let layer_digest = Digest::of_bytes(&layer);
    assert_eq!(client.blob_size("team/app", &layer_digest).unwrap(), None);
    let calls = AtomicUsize::new(0);
    client.push_blob("team/app", &layer_digest, layer.len() as u64, &mut opener(&layer, &calls)).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let config_digest = push(&client, "team/app", &config).unwrap();
    assert_eq!(client.blob_size("team/app", &layer_digest).unwrap(), Some(layer.len() as u64));
    assert_eq!(client.blob_size("team/app", &config_digest).unwrap(), Some(config.len() as u64));

    let digest = client.put_manifest("team/app", "1.0", OCI_MANIFEST, &manifest, &mut || Ok(())).unwrap();
    assert_eq!(digest, Digest::of_bytes(&manifest));
    let url = format!("docker://{}/team/app:1.0", reg.host);
    let seen = tool("skopeo", &["inspect", "--tls-verify=false", &url], &[]).ok();
    let seen: serde_json::Value = serde_json::from_str(&seen.stdout).unwrap();
    assert_eq!(seen["Digest"], digest.to_string());
    assert_eq!(seen["Layers"][0], layer_digest.to_string());

    assert_eq!(client.manifest_digest("team/app", "1.0").unwrap(), Some((digest.clone(), OCI_MANIFEST.to_owned())));
    assert_eq!(client.manifest_digest("team/app", "2.0").unwrap(), None);
    assert_eq!(client.get_manifest("team/app", digest.as_str()).unwrap(), (manifest.clone(), OCI_MANIFEST.to_owned()));

    let mut whole = Vec::new();
    client.get_blob("team/app", &layer_digest, 0).unwrap().read_to_end(&mut whole).unwrap();
    assert!(whole == layer, "downloaded layer differs");
    let mut tail = Vec::new();
    client.get_blob("team/app", &layer_digest, 1000).unwrap().read_to_end(&mut tail).unwrap();
    assert!(tail == layer[1000..], "ranged download differs");

    assert!(client.mount_blob("other/app", "team/app", &layer_digest).unwrap());
    assert_eq!(client.blob_size("other/app", &layer_digest).unwrap(), Some(layer.len() as u64));
    let absent = Digest::of_bytes(b"never pushed");
    assert!(!client.mount_blob("other/app", "team/app", &absent).unwrap());
    assert_eq!(client.blob_size("other/app", &absent).unwrap(), None);
}

#[test]
fn a_source_that_fails_verification_stops_the_upload_before_it_commits() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let reg = Registry::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let client = reg.client(ClientOptions { chunk_threshold: 100 << 10, chunk_size: 64 << 10, ..options(tmp.path()) });
    for len in [1000, 200 << 10] {
        let (good, mut bad) = (noise(len, 1), noise(len, 1));
        bad[len / 2] ^= 1;
        let digest = Digest::of_bytes(&good);
        let mut open = || -> airlock::error::Result<Box<dyn Read + Send>> {
            Ok(Box::new(VerifyingReader::new(std::io::Cursor::new(bad.clone()), digest.clone(), len as u64)))
        };
        let err = client.push_blob("team/app", &digest, len as u64, &mut open).unwrap_err();
        assert_eq!(err.class(), Class::Integrity, "{}", chain(&err));
        assert!(err.to_string().contains(&format!("{}/team/app@{digest}", reg.host)), "{err}");
        assert_eq!(client.blob_size("team/app", &digest).unwrap(), None);
    }
}

#[test]
fn htpasswd_auth_takes_the_right_credentials_and_names_the_rejected_ones() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let reg = Registry::start(&["--htpasswd", &format!("{USER}:{PASSWORD}")]);
    let tmp = tempfile::tempdir().unwrap();
    let given = |user: &str, password: &str| {
        reg.client(ClientOptions {
            username: Some(user.into()),
            password: Some(password.into()),
            ..options(tmp.path())
        })
    };
    let client = given(USER, PASSWORD);
    client.ping().unwrap();
    push(&client, "team/app", b"behind a password").unwrap();

    let err = given(USER, "wrong-Pa55").ping().unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&reg.host) && text.contains("rejected the credentials"), "{text}");
    assert!(!text.contains("wrong-Pa55") && !text.contains(PASSWORD), "{text}");

    let err = reg.client(options(tmp.path())).blob_size("team/app", &Digest::of_bytes(b"x")).unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&format!("{}/team/app@", reg.host)) && text.contains("requires authentication"), "{text}");

    // `docker login` leaves credentials in config.json; the client finds them there.
    let config = tmp.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(&config, json!({"auths": {reg.host.as_str(): {"auth": auth}}}).to_string()).unwrap();
    let client = reg.client(ClientOptions { docker_config: Some(config), ..options(tmp.path()) });
    assert_eq!(client.blob_size("team/app", &Digest::of_bytes(b"behind a password")).unwrap(), Some(17));
}

#[test]
fn a_tls_registry_is_trusted_through_its_ca_file_only() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let reg = Registry::start(&["--tls"]);
    let tmp = tempfile::tempdir().unwrap();
    let client = reg.client(ClientOptions { ca_cert: Some(reg.ca()), ..options(tmp.path()) });
    client.ping().unwrap();
    let digest = push(&client, "team/app", b"over tls").unwrap();
    assert_eq!(client.blob_size("team/app", &digest).unwrap(), Some(8));

    let err = reg.client(options(tmp.path())).ping().unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&reg.host) && text.contains("TLS"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[test]
fn an_unreachable_registry_fails_fast_naming_its_host() {
    let tmp = tempfile::tempdir().unwrap();
    let closed = ClosedPort::new();
    let host = format!("127.0.0.1:{}", closed.port);
    let client = Client::new(&host, &ClientOptions { max_retries: 2, ..options(tmp.path()) }).unwrap();
    let start = Instant::now();
    let err = client.blob_size("team/app", &Digest::of_bytes(b"x")).unwrap_err();
    let text = chain(&err);
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(text.starts_with(&format!("{host}/team/app@sha256:")), "{text}");
    assert!(text.contains("cannot reach the registry") && text.contains("3 attempts"), "{text}");
}

#[test]
fn a_blob_trickling_under_the_minimum_rate_is_cut_off() {
    let port = threaded_server(|mut conn, _| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        // One byte a second: never silent long enough for the idle timeout.
        while conn.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&format!("127.0.0.1:{port}"), &options(tmp.path())).unwrap();
    let start = Instant::now();
    let mut body = client.get_blob("team/app", &Digest::of_bytes(b"x"), 0).map_err(|e| chain(&e)).unwrap();
    let err = body.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(40), "took {:?}", start.elapsed());
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("1 KiB/s for 30 s"), "{err}");
}

#[test]
fn a_registry_that_never_answers_is_given_up_within_the_timeout() {
    let port = silent_server();
    let tmp = tempfile::tempdir().unwrap();
    let opts = ClientOptions { max_retries: 5, timeout: Duration::from_secs(6), ..options(tmp.path()) };
    let client = Client::new(&format!("127.0.0.1:{port}"), &opts).unwrap();
    let start = Instant::now();
    let err = client.get_manifest("team/app", "1.0").unwrap_err();
    let text = chain(&err);
    assert!(start.elapsed() <= Duration::from_secs(7), "took {:?}", start.elapsed());
    assert!(text.contains("did not answer") && text.contains("--timeout 6"), "{text}");
}

#[test]
fn the_put_completing_an_upload_may_take_the_whole_timeout_to_answer() {
    let (port, _) = fake_server(|head| match head.split(' ').next() {
        Some("get") if head.starts_with("get /v2/ ") => reply("200 OK", "", ""),
        Some("post") => reply("202 Accepted", "Location: /v2/team/app/blobs/uploads/u1\r\n", ""),
        Some("put") => {
            // Checking and moving a large blob: longer than a quarter of --timeout.
            std::thread::sleep(Duration::from_millis(2500));
            reply("201 Created", "", "")
        }
        _ => reply("404 Not Found", "", ""),
    });
    let tmp = tempfile::tempdir().unwrap();
    let opts = ClientOptions { max_retries: 0, timeout: Duration::from_secs(4), ..options(tmp.path()) };
    let client = Client::new(&format!("127.0.0.1:{port}"), &opts).unwrap();
    push(&client, "team/app", b"a blob the registry takes a while to commit").map_err(|e| chain(&e)).unwrap();
}

#[test]
fn a_manifest_the_registry_finds_blobs_missing_for_is_repaired_once() {
    if skip_without(&[Peer::Registry, Peer::Skopeo]) {
        return;
    }
    let reg = Registry::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let client = reg.client(options(tmp.path()));
    let (config, layer, manifest) = image(1000);
    let repairs = AtomicUsize::new(0);
    let mut give_up = || {
        repairs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    let err = client.put_manifest("team/app", "1.0", OCI_MANIFEST, &manifest, &mut give_up).unwrap_err();
    assert!(chain(&err).contains("MANIFEST_BLOB_UNKNOWN"), "{}", chain(&err));
    assert_eq!(repairs.load(Ordering::SeqCst), 1, "one repair, one retry");

    let mut upload = || {
        repairs.fetch_add(1, Ordering::SeqCst);
        push(&client, "team/app", &config)?;
        push(&client, "team/app", &layer).map(drop)
    };
    let digest = client.put_manifest("team/app", "1.0", OCI_MANIFEST, &manifest, &mut upload).unwrap();
    assert_eq!(repairs.load(Ordering::SeqCst), 2);
    let url = format!("docker://{}/team/app:1.0", reg.host);
    let seen: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", "--tls-verify=false", &url], &[]).ok().stdout).unwrap();
    assert_eq!(seen["Digest"], digest.to_string());
}

#[test]
fn a_close_delimited_blob_that_ends_early_is_resumed_with_a_range() {
    let data: String = (0..50_000u32).map(|i| char::from_digit(i % 36, 36).unwrap()).collect();
    let digest = Digest::of_bytes(data.as_bytes());
    let served = data.clone();
    let (port, seen) = fake_server(move |head| {
        if head.starts_with("get /v2/ ") {
            return reply("200 OK", "", "");
        }
        // No Content-Length: the body ends when the connection closes, here at half the blob.
        match header_value(head, "range").and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')) {
            None => format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}", &served[..20_000]),
            Some(from) => {
                let from: usize = from.parse().unwrap();
                let range = format!("Content-Range: bytes {from}-{}/{}", served.len() - 1, served.len());
                format!("HTTP/1.1 206 Partial Content\r\n{range}\r\nConnection: close\r\n\r\n{}", &served[from..])
            }
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let client = Arc::new(Client::new(&format!("127.0.0.1:{port}"), &options(tmp.path())).unwrap());
    let mut got = String::new();
    let opened = client.open_blob("team/app", &digest, data.len() as u64, 0).map_err(|e| chain(&e));
    opened.unwrap().read_to_string(&mut got).unwrap();
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    assert!(seen.lock().unwrap().iter().any(|h| h.contains("range: bytes=20000-")), "no range request");
}

/// distribution keeps the bytes of a broken `PATCH` and then refuses to resume the session ("upload
/// resumed at wrong offset"), so the retry starts a new upload; a registry that resumes would let it
/// continue. Either way the blob arrives whole.
#[test]
fn a_chunked_upload_cut_off_midway_is_retried_to_completion() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let reg = Registry::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let blob = noise(512 << 10, 3);
    let proxy = CuttingProxy::start(reg.host.clone(), 300 << 10);
    let opts = ClientOptions { chunk_threshold: 0, chunk_size: 128 << 10, max_retries: 3, ..options(tmp.path()) };
    let client = Client::new(&format!("127.0.0.1:{}", proxy.port), &opts).unwrap();
    let digest = Digest::of_bytes(&blob);
    let calls = AtomicUsize::new(0);
    client.push_blob("team/app", &digest, blob.len() as u64, &mut opener(&blob, &calls)).unwrap();
    assert!(proxy.cut.load(Ordering::SeqCst), "the proxy never cut the upload");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one cut, one retry");
    assert_eq!(reg.client(options(tmp.path())).blob_size("team/app", &digest).unwrap(), Some(blob.len() as u64));
}

#[test]
fn a_redirect_to_another_host_does_not_carry_credentials() {
    let body = "blob bytes from storage";
    let (storage, storage_seen) = fake_server(move |_| {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    });
    let digest = Digest::of_bytes(body.as_bytes());
    // localhost and 127.0.0.1 are different hosts to the client, as a storage bucket would be.
    let location = format!("http://localhost:{storage}/bucket/blob");
    let (registry, registry_seen) = fake_server(move |head| {
        let status = if head.starts_with("get /v2/ ") {
            "200 OK\r\n".to_owned()
        } else if !head.contains("authorization: basic") {
            "401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"fake\"\r\n".to_owned()
        } else {
            format!("307 Temporary Redirect\r\nLocation: {location}\r\n")
        };
        format!("HTTP/1.1 {status}Content-Length: 0\r\nConnection: close\r\n\r\n")
    });
    let tmp = tempfile::tempdir().unwrap();
    let opts = ClientOptions { username: Some(USER.into()), password: Some(PASSWORD.into()), ..options(tmp.path()) };
    let client = Client::new(&format!("127.0.0.1:{registry}"), &opts).unwrap();
    let mut got = String::new();
    client.get_blob("team/app", &digest, 0).unwrap().read_to_string(&mut got).unwrap();
    assert_eq!(got, body);
    let registry_seen = registry_seen.lock().unwrap();
    assert!(registry_seen.iter().any(|h| h.contains("authorization: basic")), "{registry_seen:?}");
    let storage_seen = storage_seen.lock().unwrap();
    assert_eq!(storage_seen.len(), 1, "{storage_seen:?}");
    assert!(!storage_seen[0].contains("authorization"), "{}", storage_seen[0]);
}

/// A plain-http registry on loopback that wants a bearer token from its own `/token` realm, which
/// answers `token_body` to requests carrying basic credentials. Counts the tokens issued.
fn bearer_registry(token_body: &'static str) -> (u16, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    let tokens = Arc::new(AtomicUsize::new(0));
    let issued = tokens.clone();
    let port = Arc::new(Mutex::new(0u16));
    let realm_port = port.clone();
    let (registry, seen) = fake_server(move |head| {
        let realm = format!("http://127.0.0.1:{}/token", realm_port.lock().unwrap());
        if head.starts_with("get /token?") {
            issued.fetch_add(1, Ordering::SeqCst);
            reply("200 OK", "", if head.contains("authorization: basic") { token_body } else { "" })
        } else if head.contains("authorization: bearer t0k3n") || head.starts_with("get /v2/ ") {
            reply("200 OK", "Content-Type: text/plain\r\n", "hello")
        } else {
            reply("401 Unauthorized", &format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n"), "")
        }
    });
    *port.lock().unwrap() = registry;
    (registry, seen, tokens)
}

fn with_credentials(dir: &Path) -> ClientOptions {
    ClientOptions { username: Some(USER.into()), password: Some(PASSWORD.into()), ..options(dir) }
}

#[test]
fn bearer_tokens_are_fetched_with_the_credentials_once_per_scope() {
    let (registry, seen, tokens) = bearer_registry(r#"{"token":"t0k3n","expires_in":300}"#);
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&format!("127.0.0.1:{registry}"), &with_credentials(tmp.path())).unwrap();
    let digest = Digest::of_bytes(b"hello");
    assert_eq!(client.blob_size("team/app", &digest).unwrap(), Some(5));
    assert_eq!(client.blob_size("team/app", &digest).unwrap(), Some(5));
    assert_eq!(tokens.load(Ordering::SeqCst), 1, "the token is cached for its scope");
    let seen = seen.lock().unwrap();
    let token_request = seen.iter().find(|h| h.starts_with("get /token?")).unwrap();
    assert!(token_request.contains("scope=repository%3ateam%2fapp%3apull"), "{token_request}");
    assert!(token_request.contains("service=fake"), "{token_request}");
}

#[test]
fn short_lived_and_endless_tokens_are_used_as_given() {
    let tmp = tempfile::tempdir().unwrap();
    for token in [
        r#"{"token":"t0k3n","expires_in":3}"#,
        r#"{"token":"t0k3n","expires_in":0}"#,
        r#"{"token":"t0k3n","expires_in":18446744073709551615}"#,
        r#"{"token":"t0k3n","expires_in":12.5}"#,
        r#"{"token":"t0k3n","expires_in":-5}"#,
    ] {
        let (registry, _, tokens) = bearer_registry(token);
        let client = Client::new(&format!("127.0.0.1:{registry}"), &with_credentials(tmp.path())).unwrap();
        let digest = Digest::of_bytes(b"hello");
        for _ in 0..2 {
            let got = client.blob_size("team/app", &digest).map_err(|e| chain(&e));
            assert_eq!(got, Ok(Some(5)), "{token}");
        }
        assert!(tokens.load(Ordering::SeqCst) >= 1);
    }
}

#[test]
fn a_tls_registry_never_sends_credentials_to_a_plain_http_token_realm() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let identity = Registry::start(&["--tls"]);
    let (realm, realm_seen) = fake_server(|_| reply("200 OK", "", r#"{"token":"t0k3n"}"#));
    let challenge = format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{realm}/token\",service=\"x\"\r\n");
    let (registry, _) = tls_fake_server(&identity, move |_| reply("401 Unauthorized", &challenge, ""));
    let tmp = tempfile::tempdir().unwrap();
    let opts = ClientOptions { ca_cert: Some(identity.ca()), insecure: true, ..with_credentials(tmp.path()) };
    let err = Client::new(&format!("127.0.0.1:{registry}"), &opts).unwrap().ping().unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&format!("https://127.0.0.1:{registry}/v2/")), "{text}");
    assert!(text.contains(&format!("http://127.0.0.1:{realm}/token")), "{text}");
    assert!(realm_seen.lock().unwrap().is_empty(), "the realm was contacted");
}

#[test]
fn an_https_registry_is_never_followed_down_to_plain_http() {
    if skip_without(&[Peer::Registry]) {
        return;
    }
    let identity = Registry::start(&["--tls"]);
    let (storage, storage_seen) = fake_server(|_| reply("200 OK", "", "blob"));
    let (registry, _) = tls_fake_server(&identity, move |head| {
        let to = format!("http://127.0.0.1:{storage}/bucket?sig=s3cr3t");
        match head.split(' ').next() {
            Some("get") if head.starts_with("get /v2/ ") => reply("200 OK", "", ""),
            Some("get") => reply("307 Temporary Redirect", &format!("Location: {to}\r\n"), ""),
            Some("post") => reply("202 Accepted", &format!("Location: {to}\r\n"), ""),
            _ => reply("404 Not Found", "", ""),
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let opts = ClientOptions { ca_cert: Some(identity.ca()), insecure: true, ..with_credentials(tmp.path()) };
    let client = Client::new(&format!("127.0.0.1:{registry}"), &opts).unwrap();
    let digest = Digest::of_bytes(b"blob");
    let errors = [
        client.get_blob("team/app", &digest, 0).err().expect("a redirect to http is refused"),
        push(&client, "team/app", b"blob").unwrap_err(),
    ];
    for err in errors {
        let text = chain(&err);
        assert_eq!(err.class(), Class::Registry, "{text}");
        assert!(text.contains(&format!("from https://127.0.0.1:{registry}")), "{text}");
        assert!(text.contains(&format!("http://127.0.0.1:{storage}/bucket")) && !text.contains("s3cr3t"), "{text}");
    }
    assert!(storage_seen.lock().unwrap().is_empty(), "plain http was contacted");
}

#[test]
fn a_401_from_a_redirect_target_says_it_was_sent_no_credentials() {
    let (storage, _) = fake_server(|_| reply("401 Unauthorized", "", ""));
    let (registry, _) = fake_server(move |head| {
        if head.starts_with("get /v2/ ") || !head.contains("authorization: basic") {
            return reply("401 Unauthorized", "WWW-Authenticate: Basic realm=\"fake\"\r\n", "");
        }
        reply("307 Temporary Redirect", &format!("Location: http://localhost:{storage}/bucket\r\n"), "")
    });
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&format!("127.0.0.1:{registry}"), &with_credentials(tmp.path())).unwrap();
    let err = client.get_blob("team/app", &Digest::of_bytes(b"x"), 0).err().unwrap();
    let text = chain(&err);
    assert!(!text.contains("rejected the credentials"), "{text}");
    assert!(text.contains(&format!("http://localhost:{storage}/bucket")) && text.contains("no credentials"), "{text}");
}

#[test]
fn a_429_holds_back_every_request_to_that_registry_until_retry_after() {
    let start = Instant::now();
    let refused_at = Arc::new(Mutex::new(None::<Duration>));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let (refused, log) = (refused_at.clone(), arrivals.clone());
    let (port, _) = fake_server(move |head| {
        if head.starts_with("get /v2/ ") {
            return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned();
        }
        log.lock().unwrap().push(start.elapsed());
        let mut refused = refused.lock().unwrap();
        if refused.is_none() {
            *refused = Some(start.elapsed());
            return "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_owned();
        }
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".to_owned()
    });
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&format!("127.0.0.1:{port}"), &options(tmp.path())).unwrap();
    let digest = Digest::of_bytes(b"hello");
    std::thread::scope(|s| {
        let first = s.spawn(|| client.blob_size("team/app", &digest).unwrap());
        while refused_at.lock().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The server has sent the 429; give the client time to read it (on a loaded machine the
        // first thread may not have run yet: 500 ms of a 2 s Retry-After was a thin margin), then
        // another request, to another repository, must wait out the same Retry-After.
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(client.blob_size("team/other", &digest).unwrap(), Some(5));
        assert_eq!(first.join().unwrap(), Some(5));
    });
    let refused = refused_at.lock().unwrap().unwrap();
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 3, "{arrivals:?}");
    for later in &arrivals[1..] {
        assert!(*later >= refused + Duration::from_millis(2900), "a request came {:?} after the 429", *later - refused);
    }
}

#[test]
fn a_registry_refusing_mount_requests_still_gets_the_blob_uploaded() {
    let (port, seen) = fake_server(|head| match head.split(' ').next() {
        Some("get") if head.starts_with("get /v2/ ") => reply("200 OK", "", ""),
        Some("post") if head.contains("mount=") => reply("404 Not Found", "", ""),
        Some("post") => reply("202 Accepted", "Location: /v2/team/app/blobs/uploads/u1\r\n", ""),
        Some("put") => reply("201 Created", "", ""),
        _ => reply("404 Not Found", "", ""),
    });
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&format!("127.0.0.1:{port}"), &options(tmp.path())).unwrap();
    let data = b"a blob offered as a mount first";
    let (digest, calls) = (Digest::of_bytes(data), AtomicUsize::new(0));
    let landed = client
        .mount_or_push_blob("team/app", "team/app", &digest, data.len() as u64, &mut opener(data, &calls))
        .map_err(|e| chain(&e))
        .unwrap();
    assert_eq!(landed, airlock::registry::Landed::Uploaded);
    let puts = seen.lock().unwrap().iter().filter(|h| h.starts_with("put ")).count();
    assert_eq!((puts, calls.load(Ordering::SeqCst)), (1, 1), "one upload after the refused mount");
}

/// A registry that takes an upload's body at `rate` bytes a second (0: not at all) and never
/// answers it.
fn draining_server(rate: usize) -> u16 {
    threaded_server(move |mut conn, head| {
        let answer = match head.split(' ').next() {
            Some("POST") => reply("202 Accepted", "Location: /v2/team/app/blobs/uploads/u1\r\n", ""),
            Some("PUT") => loop {
                let mut sip = vec![0u8; rate / 10];
                if rate > 0 && conn.read_exact(&mut sip).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            },
            _ => reply("404 Not Found", "", ""),
        };
        let _ = conn.write_all(answer.as_bytes());
    })
}

#[test]
fn an_upload_the_registry_stops_taking_or_takes_too_slowly_is_cut_off_like_a_download() {
    // Stopped, and draining 200 B/s: either is cut after the 30 s a trickling download gets, once
    // the socket buffers are full (ureq's own writes took 92 s and 60 s).
    let cut = |rate: usize| {
        std::thread::spawn(move || {
            let port = draining_server(rate);
            let tmp = tempfile::tempdir().unwrap();
            let opts = ClientOptions { max_retries: 0, ..options(tmp.path()) };
            let client = Client::new(&format!("127.0.0.1:{port}"), &opts).unwrap();
            let start = Instant::now();
            let err = push(&client, "team/app", &noise(16 << 20, 1)).unwrap_err();
            (start.elapsed(), chain(&err))
        })
    };
    for (rate, run) in [(0, cut(0)), (200, cut(200))] {
        let (took, err) = run.join().unwrap();
        assert!(took < Duration::from_secs(40), "{rate} B/s: took {took:?}: {err}");
        assert!(err.contains("stopped taking what was sent") && err.contains("1 KiB/s for 30 s"), "{err}");
    }
}
