//! The listening side: accepts connections (plain or TLS), runs HTTP/1.1 on each with hyper, hands
//! every request to the [`Api`], and reports each one to a [`Log`] once its body has ended. A
//! [`Stop`] (SIGTERM) stops accepting, lets requests in flight finish for up to the drain time,
//! then returns the [`Summary`].
//!
//! Everything is bounded: connections (a fixed number at once, the next waiting in the kernel's
//! backlog, and a share per client address, past which a connection is closed at once: see
//! [`crate::serve::limits`]), the time a client may take to send its headers or finish a TLS handshake, the time it
//! may read nothing of a response, and the read buffers (see [`crate::serve::body`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::serve::api::Api;
use crate::serve::body::{Body, Outcome};
use crate::serve::chunks::Pressure;
use crate::serve::limits::{Limits, Slot, Slots};
use crate::serve::stall::Stalling;

/// Time a client has to send a request's headers, and to finish a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client may read nothing of a response before its connection is closed (a much shorter
/// time while others wait for read buffers: see [`crate::serve::stall`]).
const WRITE_STALL: Duration = Duration::from_secs(60);
/// hyper's buffer per connection, for a request's head and for what a response has queued: a
/// client that sends a huge head or stops reading keeps at most this and one blob chunk (see
/// [`crate::serve::chunks`]).
const CONNECTION_BUFFER: usize = 64 << 10;

/// One request, as the log shows it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub time: SystemTime,
    pub peer: SocketAddr,
    pub method: String,
    pub target: String,
    pub status: u16,
    /// Body bytes handed to the connection.
    pub bytes: u64,
    pub elapsed: Duration,
    pub outcome: Outcome,
}

/// Where request lines go (the CLI prints them).
pub trait Log: Send + Sync {
    fn request(&self, r: &Logged);
    /// A connection that failed before any request (a TLS handshake).
    fn connection_failed(&self, peer: SocketAddr, why: &str);
}

/// What the server did, for the line printed on exit.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub connections: u64,
    pub requests: u64,
    pub bytes: u64,
    /// Responses of status 400 and above.
    pub errors: u64,
    /// Bodies cut by the server: bytes changed on disk, or unreadable.
    pub cut: u64,
    /// Requests still running when the drain time ran out.
    pub abandoned: u64,
    /// Connections closed at once: their address held its share.
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    cut: AtomicU64,
    refused: AtomicU64,
}

/// Tells a running server to stop accepting and drain; callable from any thread.
#[derive(Clone)]
pub struct Stop(Arc<watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(watch::channel(false).0))
    }
}

impl Stop {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    async fn wait(mut rx: watch::Receiver<bool>) {
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

pub struct Settings {
    pub tls: Option<Arc<ServerConfig>>,
    /// How long requests in flight may take to finish once stopped.
    pub drain: Duration,
    pub limits: Limits,
}

struct Shared {
    api: Api,
    log: Arc<dyn Log>,
    counters: Counters,
    tls: Option<TlsAcceptor>,
}

/// Serves on `listener` until `stop`; the runtime is this function's own (a worker per core, and
/// blocking threads for the file reads).
pub fn run(
    listener: std::net::TcpListener,
    api: Api,
    settings: Settings,
    log: Arc<dyn Log>,
    stop: &Stop,
) -> std::io::Result<Summary> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    let shared =
        Arc::new(Shared { api, log, counters: Counters::default(), tls: settings.tls.clone().map(TlsAcceptor::from) });
    let stopped = stop.0.subscribe();
    let abandoned = runtime.block_on(async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok::<_, std::io::Error>(accept(listener, Arc::clone(&shared), stopped, &settings).await)
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let c = &shared.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(Summary {
        connections: get(&c.connections),
        requests: get(&c.requests),
        bytes: get(&c.bytes),
        errors: get(&c.errors),
        cut: get(&c.cut),
        abandoned,
        refused: get(&c.refused),
    })
}

/// Accepts until stopped, then waits up to the drain time for the connections; returns how many
/// were still open.
async fn accept(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
    settings: &Settings,
) -> u64 {
    let limit = Arc::new(Semaphore::new(settings.limits.total));
    let slots = Slots::new(settings.limits.per_address);
    let mut tasks = JoinSet::new();
    let stop = Stop::wait(stopped.clone());
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => p,
            () = &mut stop => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        match accepted {
            Ok((stream, peer)) => match slots.take(peer.ip()) {
                Some(slot) => {
                    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let held = (permit, slot);
                    tasks.spawn(connection(stream, peer, Arc::clone(&shared), stopped.clone(), held));
                }
                None => {
                    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let why = format!("refused: {} connections from this address already", settings.limits.per_address);
                    shared.log.connection_failed(peer, &why);
                }
            },
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let open = tasks.len() as u64;
    let drained = tokio::time::timeout(settings.drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_ok() { 0 } else { open.min(tasks.len() as u64) }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
    _held: (OwnedSemaphorePermit, Slot),
) {
    let _ = stream.set_nodelay(true);
    let pressure: Arc<dyn Pressure> = Arc::clone(&shared.api.chunks) as _;
    let stream = Stalling::new(stream, WRITE_STALL, pressure);
    match &shared.tls {
        None => http(TokioIo::new(stream), peer, shared, stopped).await,
        Some(acceptor) => match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => http(TokioIo::new(tls), peer, Arc::clone(&shared), stopped).await,
            Ok(Err(e)) => shared.log.connection_failed(peer, &format!("TLS handshake failed: {e}")),
            Err(_) => shared.log.connection_failed(peer, "TLS handshake timed out"),
        },
    }
}

async fn http<I>(io: TokioIo<I>, peer: SocketAddr, shared: Arc<Shared>, stopped: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, &req, peer)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(CONNECTION_BUFFER)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let stop = Stop::wait(stopped);
    tokio::pin!(stop);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = &mut stop => {
            // Finishes the request in flight, then closes.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn handle(shared: &Arc<Shared>, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let (time, start) = (SystemTime::now(), Instant::now());
    let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let mut response = shared.api.respond(req.method(), &target, req.headers());
    let status = response.status().as_u16();
    let method = req.method().as_str().to_owned();
    let shared = Arc::clone(shared);
    response.body_mut().on_end(Box::new(move |bytes, outcome| {
        let c = &shared.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        if status >= 400 {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(outcome, Outcome::Cut(_)) {
            c.cut.fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = start.elapsed();
        shared.log.request(&Logged { time, peer, method, target, status, bytes, elapsed, outcome });
    }));
    response
}
