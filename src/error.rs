//! The library's error type: every failure says which file, entry, image or digest is at fault,
//! and falls in one class that the binary maps to an exit code.

use std::io;

use crate::digest::Mismatch;

/// What went wrong, by class. The binary turns each class into a distinct exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Input that is malformed, hostile or not what was asked for.
    BadInput,
    /// Content that does not match its digest, size or the signed index.
    Integrity,
    /// A missing, wrong or unverifiable signature or key.
    Trust,
    /// The operating system refused a read or write.
    Io,
    /// A registry could not be reached or refused a request (after retries).
    Registry,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{place}: {msg}")]
    BadInput { place: String, msg: String },
    #[error("{place}: {msg}")]
    Integrity { place: String, msg: String },
    #[error("{msg}")]
    Trust { msg: String },
    #[error("{place}")]
    Io {
        place: String,
        #[source]
        source: io::Error,
    },
    /// A registry refused a request, answered something unexpected, or could not be reached.
    #[error("{place}: {msg}")]
    Registry {
        place: String,
        msg: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad(place: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::BadInput { place: place.into(), msg: msg.into() }
    }

    pub fn integrity(place: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Integrity { place: place.into(), msg: msg.into() }
    }

    pub fn trust(msg: impl Into<String>) -> Self {
        Error::Trust { msg: msg.into() }
    }

    /// A registry failure at `place` (`host/repository@digest`, `host/repository:tag`, or the host).
    pub fn registry(place: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Registry { place: place.into(), msg: msg.into(), source: None }
    }

    /// A registry failure whose cause (a connection or TLS error) follows in the chain.
    pub fn registry_caused(
        place: impl Into<String>,
        msg: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Registry { place: place.into(), msg: msg.into(), source: Some(source.into()) }
    }

    /// An I/O error while reading or writing `place`. A digest or size mismatch detected by a
    /// [`crate::digest::VerifyingReader`] becomes an integrity error; malformed data a bad-input one.
    pub fn io(place: impl Into<String>, source: io::Error) -> Self {
        let place = place.into();
        match Mismatch::from_io(&source) {
            Some(Mismatch::Size { expected, found }) if found < expected => {
                return Error::integrity(place, format!("truncated: only {found} of its {expected} bytes are there"));
            }
            Some(m) => return Error::integrity(place, m.to_string()),
            None => {}
        }
        // fs-err already names the path; keep only its cause so the chain does not say it twice.
        let source = match source.get_ref().and_then(|inner| inner.source()) {
            Some(cause) if source.to_string().contains(&place) => io::Error::new(source.kind(), cause.to_string()),
            _ => source,
        };
        match source.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Error::bad(place, source.to_string()),
            _ => Error::Io { place, source },
        }
    }

    pub fn class(&self) -> Class {
        match self {
            Error::BadInput { .. } => Class::BadInput,
            Error::Integrity { .. } => Class::Integrity,
            Error::Trust { .. } => Class::Trust,
            Error::Io { .. } => Class::Io,
            // Until the binary maps a class of its own: the network is the program's I/O too.
            Error::Registry { .. } => Class::Registry,
        }
    }

    /// Re-labels a bad-input error as an integrity failure: inside a signed bundle, malformed
    /// content means the bundle is not what was signed.
    pub fn into_integrity(self) -> Self {
        match self {
            Error::BadInput { place, msg } => Error::Integrity { place, msg },
            other => other,
        }
    }
}

/// Adds the place to an `io::Result`, the way `fs-err` does for paths.
pub trait IoContext<T> {
    fn at(self, place: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, place: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(place(), e))
    }
}

/// The longest piece of outside text (an entry name, an image name) a message shows.
pub const SHOWN_CHARS: usize = 200;

/// How outside text appears in a message or on the terminal: control characters, quotes and
/// backslashes escaped (a name cannot move the cursor or fake a line), and at most
/// [`SHOWN_CHARS`] characters of it.
pub fn shown(text: &str) -> String {
    shown_bytes(text.as_bytes())
}

/// [`shown`] for bytes that may not be UTF-8: an invalid byte shows as `\xNN`.
pub fn shown_bytes(bytes: &[u8]) -> String {
    cut(bytes, &|c, o| o.extend(c.escape_debug()))
}

/// A library's message that quotes outside text (serde's `unknown field `…``, which it does not
/// escape, or `string "…"`, which it does): control characters escaped, quotes kept as they are,
/// at most [`SHOWN_CHARS`] characters.
pub fn quoted(message: &str) -> String {
    cut(message.as_bytes(), &|c, o| if c.is_control() { o.extend(c.escape_debug()) } else { o.push(c) })
}

/// At most [`SHOWN_CHARS`] characters of `bytes`, each written by `put_char`, then how many more
/// there were; an invalid byte shows as `\xNN`.
fn cut(bytes: &[u8], put_char: &dyn Fn(char, &mut String)) -> String {
    let mut out = String::new();
    let mut taken = 0usize;
    let mut more = 0usize;
    let mut put = |piece: &dyn Fn(&mut String)| {
        if taken < SHOWN_CHARS {
            piece(&mut out);
            taken += 1;
        } else {
            more += 1;
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            put(&|o: &mut String| put_char(c, o));
        }
        for b in chunk.invalid() {
            put(&|o: &mut String| o.push_str(&format!("\\x{b:02x}")));
        }
    }
    if more > 0 {
        out.push_str(&format!("… ({more} more characters)"));
    }
    out
}

/// A message as the terminal gets it: control characters other than the newline escaped, so
/// outside text that reached a message without going through [`shown`] (a library's error
/// quoting its input) still cannot move the cursor or rewrite a line.
pub fn printable(message: &str) -> std::borrow::Cow<'_, str> {
    let control = |c: char| c.is_control() && c != '\n';
    if !message.contains(control) {
        return message.into();
    }
    let mut out = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        if control(c) { out.extend(c.escape_debug()) } else { out.push(c) }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_escaped_and_cut() {
        assert_eq!(shown("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(shown_bytes(b"n\xffx"), "n\\xffx");
        let long = shown(&"é".repeat(1000));
        assert!(long.starts_with(&"é".repeat(SHOWN_CHARS)) && long.ends_with("… (800 more characters)"));
    }

    #[test]
    fn a_quoting_message_keeps_its_quotes_and_is_cut() {
        assert_eq!(quoted("string \"a\\u{1b}\", field `b\x1bc`"), "string \"a\\u{1b}\", field `b\\u{1b}c`");
        assert!(quoted(&"x".repeat(1000)).ends_with("… (800 more characters)"));
    }

    #[test]
    fn printed_messages_keep_newlines_and_escape_other_controls() {
        assert_eq!(printable("a `b\\c`\nd"), "a `b\\c`\nd");
        assert_eq!(printable("x\x1b[2J\ry\u{9b}"), "x\\u{1b}[2J\\ry\\u{9b}");
    }
}
