//! The Docker Engine API calls airlock makes, over the unix socket or the TCP address in
//! `DOCKER_HOST` (default `unix:///var/run/docker.sock`): `POST /images/load` (the `load` sink)
//! and `GET /images/get` (the `docker-daemon:` source), which both stream a docker-archive tar, and
//! `GET /_ping` (asked before a load verifies, so that an engine that is not there is told at once).
//!
//! This is the one place airlock speaks HTTP by hand: each call is a single request whose body
//! (or response) is a tar streamed with chunked transfer encoding, and the general HTTP clients
//! in the Rust ecosystem either lack unix-socket transports or bring an async runtime. TLS-protected
//! daemons (`DOCKER_TLS_VERIFY`, `ssh://`) are refused with a clear error.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result, shown};

/// The most a daemon's status line and headers may take together: the engine's are a few hundred
/// bytes, and a head that never ends must not grow without bound.
const MAX_HEAD_BYTES: u64 = 64 << 10;
/// The most one chunk-size line may take (a hex size and perhaps extensions).
const MAX_CHUNK_LINE: u64 = 4 << 10;

#[derive(Debug, Clone)]
pub enum DockerHost {
    Unix(PathBuf),
    Tcp(String),
}

impl DockerHost {
    /// From `DOCKER_HOST`, as the docker CLI reads it.
    pub fn from_env() -> Result<Self> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
            return Err(Error::bad(
                "DOCKER_TLS_VERIFY",
                "TLS-protected Docker daemons are not supported; use a unix socket",
            ));
        }
        Self::parse(&host)
    }

    pub fn parse(host: &str) -> Result<Self> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(DockerHost::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let addr = if addr.contains(':') { addr.to_owned() } else { format!("{addr}:2375") };
            return Ok(DockerHost::Tcp(addr));
        }
        Err(Error::bad(format!("DOCKER_HOST={host}"), "only unix:// and tcp:// daemon addresses are supported"))
    }

    fn place(&self) -> String {
        match self {
            DockerHost::Unix(p) => format!("docker daemon at unix://{}", p.display()),
            DockerHost::Tcp(a) => format!("docker daemon at tcp://{a}"),
        }
    }

    fn connect(&self) -> Result<Box<dyn Stream>> {
        let place = self.place();
        let unreachable = |e: io::Error| {
            let why = format!(
                "cannot connect ({e}): is the Docker Engine running there? DOCKER_HOST gives its address \
                 (unix:///PATH or tcp://HOST:PORT)"
            );
            Error::io(&place, io::Error::new(e.kind(), why))
        };
        let stream: Box<dyn Stream> = match self {
            DockerHost::Unix(p) => Box::new(UnixStream::connect(p).map_err(unreachable)?),
            DockerHost::Tcp(a) => {
                let s = TcpStream::connect(a).map_err(unreachable)?;
                s.set_read_timeout(Some(Duration::from_secs(3600))).map_err(|e| Error::io(&place, e))?;
                Box::new(s)
            }
        };
        Ok(stream)
    }
}

trait Stream: Read + Write + Send {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>>;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Ends the request: the daemon reads the end of its body, and can still answer.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Stream for UnixStream {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Stream for TcpStream {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// `GET /_ping`: whether the engine answers, asked before a long verification, so that a daemon
/// that is not there is told at once rather than after every blob was read.
pub fn ping(host: &DockerHost) -> Result<()> {
    let place = host.place();
    let mut stream = host.connect()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| Error::io(&place, e))?;
    let head = "GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: airlock\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).map_err(|e| Error::io(&place, e))?;
    let (code, _) = read_head(&mut BufReader::new(stream.take(64 << 10)), &place)?;
    if code != 200 {
        let why = format!("answered GET /_ping with HTTP {code}: is DOCKER_HOST a Docker Engine?");
        return Err(Error::io(&place, io::Error::other(why)));
    }
    Ok(())
}

/// Streams a docker-archive tar, written by `body`, into `POST /images/load`; returns the
/// daemon's "Loaded image: …" lines.
pub fn load(host: &DockerHost, body: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<Vec<String>> {
    let place = host.place();
    let stream = host.connect()?;
    let reader = stream.try_clone_box().map_err(|e| Error::io(&place, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, Chunked { inner: stream });
    let head = "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: airlock\r\n\
                Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    w.get_mut().inner.write_all(head.as_bytes()).map_err(|e| Error::io(&place, e))?;
    let sent = body(&mut w).and_then(|()| {
        let mut chunked = w.into_inner().map_err(|e| Error::io(&place, e.into_error()))?;
        chunked.finish().map_err(|e| Error::io(&place, e))
    });
    if sent.is_err() {
        // The engine waits for the rest of a body cut short (a blob that failed its check): end
        // the request so it answers; it loads nothing of an incomplete archive.
        let _ = reader.shutdown_write();
    }
    // If the daemon refused the upload early, its answer says why; prefer it to a broken pipe.
    let answer = read_response(reader, &place);
    match (sent, answer) {
        (Err(e @ (Error::Integrity { .. } | Error::BadInput { .. } | Error::Trust { .. })), _) => Err(e),
        (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(lines)) => Ok(lines),
    }
}

struct Chunked {
    inner: Box<dyn Stream>,
}

impl Chunked {
    fn finish(&mut self) -> io::Result<()> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()
    }
}

impl Write for Chunked {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.inner, "{:x}\r\n", buf.len())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the HTTP response; the body is newline-separated JSON messages.
pub(crate) fn read_response(stream: impl Read, place: &str) -> Result<Vec<String>> {
    let mut r = BufReader::new(stream.take(64 << 20));
    let (code, chunked) = read_head(&mut r, place)?;
    let mut body = Vec::new();
    if chunked {
        ChunkedReader::new(r).read_to_end(&mut body).map_err(|e| Error::io(place, e))?;
    } else {
        r.read_to_end(&mut body).map_err(|e| Error::io(place, e))?;
    }
    let text = String::from_utf8_lossy(&body);
    let mut loaded = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            if code != 200 {
                return Err(daemon_error(place, code, line.trim()));
            }
            continue;
        };
        if let Some(err) = msg.get("error").and_then(Value::as_str) {
            return Err(daemon_error(place, code, err));
        }
        if let Some(m) = msg.get("message").and_then(Value::as_str).filter(|_| code != 200) {
            return Err(daemon_error(place, code, m));
        }
        if let Some(s) = msg.get("stream").and_then(Value::as_str) {
            loaded.push(shown(s.trim()));
        }
    }
    if code != 200 {
        return Err(daemon_error(place, code, text.trim()));
    }
    Ok(loaded)
}

fn daemon_error(place: &str, code: u16, msg: &str) -> Error {
    Error::Io {
        place: place.to_owned(),
        source: io::Error::other(format!("load refused (HTTP {code}): {}", shown(msg))),
    }
}

/// Reads the status line and headers: (status code, whether the body is chunked).
fn read_head(r: &mut impl BufRead, place: &str) -> Result<(u16, bool)> {
    let mut left = MAX_HEAD_BYTES;
    let mut line = || {
        let too_long = || format!("the response head is longer than {MAX_HEAD_BYTES} bytes");
        let line = read_line(r, left, too_long).map_err(|e| Error::io(place, e))?;
        left -= line.len() as u64;
        Ok::<_, Error>(line)
    };
    let status = line()?;
    let code: u16 = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| {
        let msg = format!("not an HTTP response: `{}`", shown(status.trim_end()));
        Error::io(place, io::Error::new(io::ErrorKind::InvalidData, msg))
    })?;
    let mut chunked = false;
    loop {
        let line = line()?;
        if line.trim().is_empty() {
            return Ok((code, chunked));
        }
        let lower = line.to_ascii_lowercase();
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
    }
}

/// One line of at most `cap` bytes (its newline included); a longer one is refused with
/// `too_long` before the rest is read. An empty string means the stream ended.
fn read_line(r: &mut impl BufRead, cap: u64, too_long: impl FnOnce() -> String) -> io::Result<String> {
    let mut line = String::new();
    let n = r.by_ref().take(cap).read_line(&mut line)?;
    if n as u64 == cap && !line.ends_with('\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, too_long()));
    }
    Ok(line)
}

fn chunk_line_too_long() -> String {
    format!("a chunk-size line is longer than {MAX_CHUNK_LINE} bytes")
}

/// Decodes a chunked HTTP body as a stream.
struct ChunkedReader<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    fn new(inner: R) -> Self {
        ChunkedReader { inner, left: 0, done: false }
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = read_line(&mut self.inner, MAX_CHUNK_LINE, chunk_line_too_long)?;
            if size.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "HTTP body ended inside a chunk"));
            }
            if size.trim().is_empty() {
                // The CRLF that ends the previous chunk.
                size = read_line(&mut self.inner, MAX_CHUNK_LINE, chunk_line_too_long)?;
            }
            self.left = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "HTTP body ended inside a chunk"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `GET /images/get?names=…`: streams the daemon's `docker save` of `names` into `out`.
pub fn save(host: &DockerHost, names: &[String], out: &mut dyn Write) -> Result<u64> {
    let place = host.place();
    let mut stream = host.connect()?;
    let query: Vec<String> = names.iter().map(|n| format!("names={}", percent_encode(n))).collect();
    let head = format!(
        "GET /images/get?{} HTTP/1.1\r\nHost: docker\r\nUser-Agent: airlock\r\nConnection: close\r\n\r\n",
        query.join("&")
    );
    stream.write_all(head.as_bytes()).map_err(|e| Error::io(&place, e))?;
    read_saved(stream, &place, names, out)
}

/// The daemon's answer to `GET /images/get`: the archive of `names`, copied into `out`.
pub(crate) fn read_saved(stream: impl Read, place: &str, names: &[String], out: &mut dyn Write) -> Result<u64> {
    let mut r = BufReader::with_capacity(1 << 20, stream);
    let (code, chunked) = read_head(&mut r, place)?;
    let mut body: Box<dyn Read> = if chunked { Box::new(ChunkedReader::new(r)) } else { Box::new(r) };
    if code != 200 {
        let mut text = String::new();
        let _ = body.take(64 << 10).read_to_string(&mut text);
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        return Err(Error::bad(
            place,
            format!("docker save of {} refused (HTTP {code}): {}", names.join(", "), shown(msg.trim())),
        ));
    }
    io::copy(&mut body, out).map_err(|e| Error::io(place, e))
}

/// Query-string escaping for image names (`/`, `:` and `@` are fine; a few others are not).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon that reads the request until the client ends it (or 10 s pass), then answers as
    /// the engine does to a cut archive; returns whether it saw the end.
    fn fake_daemon(listener: std::os::unix::net::UnixListener) -> std::thread::JoinHandle<bool> {
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let ended = io::copy(&mut conn, &mut io::sink()).is_ok();
            let body = r#"{"message":"unexpected EOF"}"#;
            let answer = format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = conn.write_all(answer.as_bytes());
            ended
        })
    }

    #[test]
    fn a_head_or_chunk_size_line_that_never_ends_is_refused_at_its_bound() {
        let endless = |head: &str| [head.as_bytes(), &vec![b'0'; 1 << 20]].concat();
        let e = read_response(&endless("HTTP/1.1 200 OK\r\nX: ")[..], "d").unwrap_err();
        assert_eq!(e.to_string(), format!("d: the response head is longer than {MAX_HEAD_BYTES} bytes"));
        let chunked = endless("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        let e = read_saved(&chunked[..], "d", &[], &mut io::sink()).unwrap_err();
        assert_eq!(e.to_string(), format!("d: a chunk-size line is longer than {MAX_CHUNK_LINE} bytes"));
        let ok = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\nabc\r\n0\r\n\r\n";
        let mut out = Vec::new();
        assert_eq!(read_saved(&ok[..], "d", &[], &mut out).unwrap(), 8);
        assert_eq!(out, b"helloabc");
    }

    #[test]
    fn a_body_that_fails_midway_ends_the_request_and_reports_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let daemon = fake_daemon(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let host = DockerHost::Unix(socket);
        let got = load(&host, |w| {
            w.write_all(&[0u8; 4096]).map_err(|e| Error::io("test", e))?;
            Err(Error::integrity("b.tar: entry blobs/sha256/ab", "digest mismatch"))
        });
        assert!(matches!(got, Err(Error::Integrity { .. })), "{got:?}");
        assert!(daemon.join().unwrap(), "the daemon waited for the rest of the body");
    }
}
