//! Lines for the terminal that outlive their reader. `airlock inspect b.tar | head` closes the
//! pipe after a few lines, and `println!` turns the next write into a panic. Every line of the
//! binary goes through [`say!`] (stdout) or [`tell!`] (stderr) instead: what a closed pipe can no
//! longer take is dropped, and the run keeps its own exit code (a verification that held is still
//! exit 0); any other failure to write (a full disk under `> audit.json`) is remembered, and
//! [`checked`] turns it into exit 6 naming the stream once the command is done.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Mutex;

use airlock::error::Error;

/// The first failure to write a line that was not a closed pipe: (stream, error).
static FAILED: Mutex<Option<(&'static str, io::Error)>> = Mutex::new(None);

/// One line on stdout, as `println!` would print it.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::line(&mut std::io::stdout().lock(), "<stdout>", format_args!($($arg)*), "\n")
    };
}

/// One line on stderr, as `eprintln!` would print it.
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::cli::out::line(&mut std::io::stderr().lock(), "<stderr>", format_args!($($arg)*), "\n")
    };
}

/// Writes `args` and `end` to `w`, named `stream` should it fail.
pub fn line(w: &mut dyn Write, stream: &'static str, args: std::fmt::Arguments<'_>, end: &str) {
    let written = w.write_fmt(args).and_then(|()| w.write_all(end.as_bytes())).and_then(|()| w.flush());
    if let Err(e) = written {
        remember(stream, e);
    }
}

/// Notes a failure to write `stream`, unless it is a reader that went away.
pub fn remember(stream: &'static str, e: io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return;
    }
    let mut failed = FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    failed.get_or_insert((stream, e));
}

/// `code`, unless writing a line failed (not for a closed pipe): then that failure.
pub fn checked(code: ExitCode) -> anyhow::Result<ExitCode> {
    let failed = FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    match failed {
        Some((stream, e)) => Err(Error::io(stream, e).into()),
        None => Ok(code),
    }
}
