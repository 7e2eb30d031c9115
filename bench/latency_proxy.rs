//! A TCP proxy that adds a fixed one-way delay, for bench/run.sh's WAN rows: the registry is on
//! loopback, and this makes every round trip cost `2 × DELAY_MS` as a distant registry would,
//! without capping bandwidth. Each chunk read from one side is written to the other `DELAY_MS`
//! after it was read, so chunks in flight overlap (the link is a pipe of that length, not a
//! turnstile). A half-close travels the same way, delayed too.
//!
//! Usage: `latency_proxy LISTEN_PORT TARGET_PORT DELAY_MS` — listens on 127.0.0.1:LISTEN_PORT
//! (0: any free port) and forwards to 127.0.0.1:TARGET_PORT; prints the port it listens on.
//! bench/wan.sh builds it with plain `rustc -O` (std only); Cargo.toml lists it as an example so
//! that fmt and clippy check it. It is no part of airlock.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

/// Chunks in flight per direction: 1024 × 64 KiB bounds memory far above the bytes a 25 ms link
/// carries at loopback speed, so it never throttles.
const IN_FLIGHT: usize = 1024;
const CHUNK: usize = 64 << 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, delay] = args.as_slice() else {
        eprintln!("usage: latency_proxy LISTEN_PORT TARGET_PORT DELAY_MS");
        std::process::exit(2);
    };
    let parse = |what: &str, v: &str| -> u64 {
        v.parse().unwrap_or_else(|_| {
            eprintln!("latency_proxy: {what} must be a whole number, got `{v}`");
            std::process::exit(2)
        })
    };
    let (listen, target) = (parse("LISTEN_PORT", listen), parse("TARGET_PORT", target));
    let delay = Duration::from_millis(parse("DELAY_MS", delay));
    let listener = TcpListener::bind(("127.0.0.1", listen as u16)).unwrap_or_else(|e| {
        eprintln!("latency_proxy: cannot listen on 127.0.0.1:{listen}: {e}");
        std::process::exit(1)
    });
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    println!("{port}");
    let _ = std::io::stdout().flush();
    for (n, client) in listener.incoming().flatten().enumerate() {
        // One line per connection: how well a client reuses its connections shows in the log.
        eprintln!("latency_proxy: connection {}", n + 1);
        thread::spawn(move || {
            if let Err(e) = serve(client, target as u16, delay) {
                eprintln!("latency_proxy: {e}");
            }
        });
    }
}

/// Connects to the target (after the delay a SYN would take) and pipes both ways.
fn serve(client: TcpStream, target: u16, delay: Duration) -> std::io::Result<()> {
    // The handshake costs one round trip; the client saw its SYN-ACK at once from us.
    thread::sleep(delay * 2);
    let server = TcpStream::connect(("127.0.0.1", target))?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
    }
    let up = pipe(client.try_clone()?, server.try_clone()?, delay);
    let down = pipe(server, client, delay);
    let _ = up.join();
    let _ = down.join();
    Ok(())
}

/// Copies `from` → `to`, each chunk released `delay` after it was read.
fn pipe(from: TcpStream, to: TcpStream, delay: Duration) -> thread::JoinHandle<()> {
    let (tx, rx) = sync_channel::<(Instant, Option<Vec<u8>>)>(IN_FLIGHT);
    let reader = thread::spawn(move || read_side(from, tx));
    thread::spawn(move || {
        write_side(to, rx, delay);
        let _ = reader.join();
    })
}

fn read_side(mut from: TcpStream, tx: SyncSender<(Instant, Option<Vec<u8>>)>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now(), Some(buf[..n].to_vec()))).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send((Instant::now(), None));
}

fn write_side(mut to: TcpStream, rx: Receiver<(Instant, Option<Vec<u8>>)>, delay: Duration) {
    while let Ok((at, chunk)) = rx.recv() {
        let due = at + delay;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        match chunk {
            Some(bytes) if to.write_all(&bytes).is_ok() => {}
            _ => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
