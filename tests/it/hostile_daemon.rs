//! A Docker daemon that lies: fake engines at `DOCKER_HOST=tcp://…` answering `docker save` and
//! `docker load` with heads that never end, chunk sizes that never end, and messages that would
//! move the terminal's cursor. airlock must stop in bounded memory with the daemon named, and
//! show the daemon's words escaped and cut.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use crate::common::{EXIT_BAD_INPUT, EXIT_IO, Env, Peer, Run, skip_without};
use crate::hostile::peak_rss_with;

/// A daemon at `tcp://127.0.0.1:PORT` that reads each request (a chunked `POST` body to its end)
/// and hands the connection to `answer`.
fn fake_daemon(answer: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                if read_request(&mut conn).is_some() {
                    answer(&mut conn);
                }
            });
        }
    });
    format!("tcp://127.0.0.1:{port}")
}

/// Reads a request head and, when it says chunked, its body up to the last chunk.
fn read_request(conn: &mut TcpStream) -> Option<()> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        (conn.read(&mut byte).ok()? == 1).then_some(())?;
        seen.push(byte[0]);
    }
    if String::from_utf8_lossy(&seen).to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut buf = vec![0u8; 1 << 16];
        let mut tail = Vec::new();
        while !tail.ends_with(b"\r\n0\r\n\r\n") {
            let n = conn.read(&mut buf).ok().filter(|n| *n > 0)?;
            tail.extend_from_slice(&buf[..n]);
            tail.drain(..tail.len().saturating_sub(16));
        }
    }
    Some(())
}

/// Writes `head`, then `fill` repeated up to `total` bytes (the daemon goes on while airlock reads).
fn endless(conn: &mut TcpStream, head: &str, fill: u8, total: usize) {
    let _ = conn.write_all(head.as_bytes());
    let block = vec![fill; 1 << 20];
    for _ in 0..total / block.len() {
        if conn.write_all(&block).is_err() {
            return;
        }
    }
}

const MIB: usize = 1 << 20;

#[test]
fn a_daemon_whose_answer_never_ends_its_head_or_a_chunk_size_is_refused_in_bounded_memory() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let cases = [
        ("HTTP/1.1 200 OK\r\nX-Filler: ", b'a', "the response head is longer than"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b'0', "a chunk-size line is longer than"),
    ];
    for (head, fill, needle) in cases {
        let host = fake_daemon(move |conn| endless(conn, head, fill, 512 * MIB));
        let env = Env::new();
        env.keygen("ops");
        let args = ["create", "-k", "ops.key", "-o", "b.tar", "docker-daemon:example.com/team/web:1"];
        let (code, rss_kib, stderr) = peak_rss_with(&env, &args, &[("DOCKER_HOST", host.as_str())]);
        assert_eq!(code, i64::from(EXIT_BAD_INPUT), "{stderr}");
        assert!(stderr.contains(&format!("docker daemon at {host}")) && stderr.contains(needle), "{stderr}");
        assert!(rss_kib < 128 * 1024, "create peaked at {rss_kib} KiB reading a {head:?} answer");
        assert!(!env.path("b.tar").exists(), "{:?}", env.listing());
    }
}

#[test]
fn a_daemons_refusal_and_loaded_lines_are_shown_escaped_and_cut() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let refusal = format!("{{\"message\":\"\\u001b[2J\\u001b[31mgone {}\"}}\n", "x".repeat(100_000));
    let len = refusal.len();
    let host = fake_daemon(move |conn| {
        let head = format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {len}\r\n\r\n");
        let _ = conn.write_all(format!("{head}{refusal}").as_bytes());
    });
    let run = env.cmd().args(["load", "-p", "ops.pub", "b.tar"]).env("DOCKER_HOST", &host).output().unwrap();
    let run = Run::from_output(run).fails(EXIT_IO, &["load refused (HTTP 500)", "\\u{1b}[2J", "more characters"]);
    assert!(!run.stderr.contains('\x1b') && run.stderr.len() < 4096, "{}", run.stderr);

    let loaded = "{\"stream\":\"Loaded image: \\u001b]0;owned\\u0007example.com/x:1\\n\"}\n".to_owned();
    let host = fake_daemon(move |conn| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", loaded.len());
        let _ = conn.write_all(format!("{head}{loaded}").as_bytes());
    });
    let run = env.cmd().args(["load", "-p", "ops.pub", "b.tar"]).env("DOCKER_HOST", &host).output().unwrap();
    let run = Run::from_output(run).ok();
    assert!(run.stdout.contains("Loaded image: \\u{1b}]0;owned\\u{7}example.com/x:1"), "{}", run.stdout);
    assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
}
