//! SIGINT and SIGTERM: remove what the run was staging, say what was and was not written, and exit
//! 130 or 143 (128 + the signal), as a shell reports a process killed by that signal.
//!
//! signal-hook rather than ctrlc: ctrlc runs one handler for SIGINT and (with a feature) SIGTERM
//! without saying which arrived, and the exit code must tell them apart. The signal is handled on
//! signal-hook's own thread, outside signal context, so it may lock, remove files and print; the
//! temporary paths come from [`airlock::cleanup`], where every staging directory and temporary
//! file registers itself.

use std::sync::Mutex;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What an interruption means for the command's output, set by the command.
static OUTCOME: Mutex<String> = Mutex::new(String::new());

/// A command that stops on its own when told (`serve` drains its connections).
type Stopper = Box<dyn Fn(i32) + Send>;
static STOPPER: Mutex<Option<Stopper>> = Mutex::new(None);

/// Installs the handler. Failing to install it only loses the clean-up, so that is not an error.
pub fn install() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else { return };
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(signal) = signals.next() {
            let stopper = STOPPER.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            let Some(stop) = stopper else { handle(signal) };
            stop(signal);
            // A second signal while it stops: stop now.
            if let Some(signal) = signals.next() {
                handle(signal);
            }
        }
    });
}

/// The first SIGINT or SIGTERM calls `stop` (with the signal) instead of ending the process; a
/// second one ends it as usual.
pub fn stop_with(stop: impl Fn(i32) + Send + 'static) {
    *STOPPER.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Box::new(stop));
}

/// Says what an interruption from now on leaves: what was written and what was not.
pub fn set_outcome(text: impl Into<String>) {
    *OUTCOME.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = text.into();
}

/// Once a signal is being handled, the handler ends the process: a run that fails meanwhile (its
/// staging directory removed under it) waits for that instead of reporting its own error.
pub fn wait_if_interrupted() {
    if airlock::cleanup::interrupted() {
        loop {
            std::thread::park();
        }
    }
}

fn handle(signal: i32) -> ! {
    let removed = airlock::cleanup::remove_all();
    let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
    let mut msg = format!("\nerror: interrupted by {name}");
    if !removed.is_empty() {
        // `components` drops the `.` of a temporary made in `./` (`/srv/./.airlock-stage-…`).
        let paths: Vec<String> =
            removed.iter().map(|p| p.components().collect::<std::path::PathBuf>().display().to_string()).collect();
        msg.push_str(&format!("; removed the temporary {}", paths.join(", ")));
    }
    let outcome = OUTCOME.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if !outcome.is_empty() {
        msg.push_str(&format!("\n  {outcome}"));
    }
    tell!("{msg}");
    std::process::exit(128 + signal);
}
