//! Hostile and faulty servers for the registry tests, written here so each misbehaviour is
//! explicit: a fake registry answering from a closure (over plain http or TLS), a server that never
//! answers, a proxy that cuts a connection midway, and a proxy that rewrites the real registry's
//! answers (a registry that lies).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::Registry;

/// A server that accepts connections and never answers; it holds them open while it lives.
pub(crate) fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

/// A plain-http registry that gives each connection a thread of its own, so one may be held as
/// long as `handle` likes: TLS probes are dropped, `GET /v2/` answered 200, and every other
/// request handed to `handle` with its head.
pub(crate) fn threaded_server(handle: impl Fn(TcpStream, &str) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || {
                let mut first = [0u8; 1];
                if conn.peek(&mut first).unwrap_or(0) == 0 || !first[0].is_ascii_uppercase() {
                    return; // a TLS probe
                }
                let head = read_head(&mut conn).unwrap_or_default();
                if head.starts_with("GET /v2/ ") {
                    let _ = conn.write_all(reply("200 OK", "", "").as_bytes());
                    return;
                }
                handle(conn, &head);
            });
        }
    });
    port
}

/// Forwards connections to `upstream`; cuts the first one that has carried `cut_after` request
/// bytes (or, from [`CuttingProxy::on_answers`], answer bytes), once.
pub(crate) struct CuttingProxy {
    pub port: u16,
    pub cut: Arc<AtomicBool>,
}

impl CuttingProxy {
    pub(crate) fn start(upstream: String, cut_after: u64) -> CuttingProxy {
        Self::cutting(upstream, cut_after, false)
    }

    /// Cuts the first connection whose answers have carried `cut_after` bytes: a download reset
    /// midway.
    pub(crate) fn on_answers(upstream: String, cut_after: u64) -> CuttingProxy {
        Self::cutting(upstream, cut_after, true)
    }

    fn cutting(upstream: String, cut_after: u64, answers: bool) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else { return };
                let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) =
                    if answers { (None, Some((c.clone(), cut_after))) } else { (Some((c.clone(), cut_after)), None) };
                std::thread::spawn(move || pump(server2, client2, down));
                std::thread::spawn(move || pump(client, server, up));
            }
        });
        CuttingProxy { port, cut }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut: Option<(Arc<AtomicBool>, u64)>) {
    let mut buf = [0u8; 16 << 10];
    let mut carried = 0;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        carried += n as u64;
        if let Some((cut, after)) = &cut
            && carried > *after
            && !cut.swap(true, Ordering::SeqCst)
        {
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// An HTTP proxy in front of `upstream` that passes each response head (status line and headers,
/// without the blank line) through `rewrite`, with the lowercased request head: a registry that
/// lies about what it holds or what it stored.
pub(crate) struct RewritingProxy {
    pub host: String,
}

type Rewrite = dyn Fn(&str, String) -> String + Send + Sync;

impl RewritingProxy {
    pub(crate) fn start(upstream: &str, rewrite: impl Fn(&str, String) -> String + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (upstream, rewrite): (String, Arc<Rewrite>) = (upstream.to_owned(), Arc::new(rewrite));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, rewrite) = (upstream.clone(), rewrite.clone());
                std::thread::spawn(move || while relay(&client, &upstream, &*rewrite).is_some() {});
            }
        });
        RewritingProxy { host }
    }
}

/// Carries one request upstream (on a connection of its own) and its rewritten answer back.
fn relay(mut client: &TcpStream, upstream: &str, rewrite: &Rewrite) -> Option<()> {
    let head = read_head(&mut client)?;
    let lower = head.to_lowercase();
    let len = header_value(&lower, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    client.read_exact(&mut body).ok()?;
    let mut server = TcpStream::connect(upstream).ok()?;
    let kept: Vec<&str> = head.lines().filter(|l| !l.to_lowercase().starts_with("connection:")).collect();
    server.write_all(format!("{}\r\nConnection: close\r\n\r\n", kept.join("\r\n").trim_end()).as_bytes()).ok()?;
    server.write_all(&body).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let resp_head = rewrite(&lower, String::from_utf8_lossy(&answer[..split]).into_owned());
    client.write_all(format!("{resp_head}\r\n\r\n").as_bytes()).ok()?;
    client.write_all(&answer[split + 4..]).ok()?;
    (!resp_head.to_lowercase().contains("connection: close")).then_some(())
}

pub(crate) fn read_head(conn: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        (conn.read(&mut byte).ok()? == 1).then_some(())?;
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head[..head.len() - 4]).into_owned())
}

/// A header's value in a lowercased head.
pub(crate) fn header_value<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

/// A response head with `name` set to `value` (replacing any such header).
pub(crate) fn set_header(head: &str, name: &str, value: &str) -> String {
    let mut lines: Vec<String> = head
        .lines()
        .filter(|l| !l.to_lowercase().starts_with(&format!("{}:", name.to_lowercase())))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{name}: {value}"));
    lines.join("\r\n")
}

/// A tiny HTTP server answering each request with what `respond` returns for its head; it records
/// every request head it receives. Connections that do not open with a method (TLS) are dropped.
pub(crate) fn fake_server(respond: impl Fn(&str) -> String + Send + 'static) -> (u16, Arc<Mutex<Vec<String>>>) {
    serve(None, respond)
}

/// [`fake_server`] over TLS, with the server certificate of `identity` (a `--tls` [`Registry`],
/// whose `ca.crt` the client then trusts).
pub(crate) fn tls_fake_server(
    identity: &Registry,
    respond: impl Fn(&str) -> String + Send + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = identity.dir.path();
    let certs = CertificateDer::pem_file_iter(dir.join("server.crt")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    serve(Some(Arc::new(config)), respond)
}

fn serve(
    tls: Option<Arc<rustls::ServerConfig>>,
    respond: impl Fn(&str) -> String + Send + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            match &tls {
                None => answer(conn, &respond, &log),
                Some(config) => {
                    let Ok(session) = rustls::ServerConnection::new(config.clone()) else { continue };
                    answer(rustls::StreamOwned::new(session, conn), &respond, &log);
                }
            }
        }
    });
    (port, seen)
}

/// Reads one request head from `conn` and writes `respond`'s answer to it.
fn answer(mut conn: impl Read + Write, respond: &impl Fn(&str) -> String, log: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        if head.is_empty() && !byte[0].is_ascii_uppercase() {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    if head.ends_with("\r\n\r\n") {
        // Read the request's body, so closing the connection does not reset it.
        let len = header_value(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let _ = std::io::copy(&mut (&mut conn).take(len), &mut std::io::sink());
        let response = respond(&head);
        // Logged before answering, so a test that has its answer sees the request logged.
        log.lock().unwrap().push(head);
        let _ = conn.write_all(response.as_bytes());
        let _ = conn.flush();
    }
}

/// An HTTP answer with `status` (`"200 OK"`), extra header lines (each ending in CRLF) and a body.
pub(crate) fn reply(status: &str, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// Forwards connections to `upstream` and holds the first answer that has carried `after` bytes
/// until [`PausingProxy::resume`]: a download that stalls midway, so a test can change the world
/// (fill a disk) while a command is in the middle of writing.
pub(crate) struct PausingProxy {
    pub port: u16,
    gate: Arc<(Mutex<(bool, bool)>, std::sync::Condvar)>,
}

impl PausingProxy {
    pub(crate) fn start(upstream: String, after: u64) -> PausingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Arc::new((Mutex::new((false, false)), std::sync::Condvar::new()));
        let g = gate.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else { return };
                let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let g = g.clone();
                std::thread::spawn(move || pump_pausing(server2, client2, after, &g));
                std::thread::spawn(move || pump(client, server, None));
            }
        });
        PausingProxy { port, gate }
    }

    /// Waits up to `limit` for an answer to be held; whether one was.
    pub(crate) fn paused(&self, limit: std::time::Duration) -> bool {
        let (lock, moved) = &*self.gate;
        let held = lock.lock().unwrap();
        moved.wait_timeout_while(held, limit, |(paused, _)| !*paused).unwrap().0.0
    }

    pub(crate) fn resume(&self) {
        let (lock, moved) = &*self.gate;
        lock.lock().unwrap().1 = true;
        moved.notify_all();
    }
}

/// [`pump`] that, once `after` bytes have passed, waits for the gate to open (first pause only).
fn pump_pausing(mut from: TcpStream, mut to: TcpStream, after: u64, gate: &(Mutex<(bool, bool)>, std::sync::Condvar)) {
    let mut buf = [0u8; 16 << 10];
    let mut carried = 0;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        carried += n as u64;
        let (lock, moved) = gate;
        let mut state = lock.lock().unwrap();
        if carried > after && !state.0 {
            state.0 = true;
            moved.notify_all();
            drop(moved.wait_while(state, |(_, open)| !*open).unwrap());
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
