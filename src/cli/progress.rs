//! Progress on stderr, from what the library tells an [`Observer`]: on a terminal one bar per task
//! (a layer being compressed, the bundle being written, a blob being uploaded) that moves with the
//! bytes; anywhere else plain log lines, one when a task begins and one when it ends.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use airlock::ops::{Event, Ui};
use airlock::progress::{Observer, Phase, Task};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Off a terminal, tasks smaller than this (known to be, and so over in well under a second)
/// print no lines: a push of many small blobs would print a wall of them.
const QUIET_BELOW: u64 = 8 << 20;

/// Shows tasks on stderr.
pub struct Shown {
    bars: Option<MultiProgress>,
    tasks: Mutex<HashMap<u64, Shown1>>,
    next: AtomicU64,
}

/// One task being shown.
struct Shown1 {
    bar: Option<ProgressBar>,
    /// Off a terminal: whether its lines are printed.
    logged: bool,
    phase: Phase,
    what: String,
    moved: u64,
    started: Instant,
}

/// Bars on a terminal, log lines otherwise; also the [`Ui`] operations report to.
pub fn observer() -> Arc<Shown> {
    let bars = std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    Arc::new(Shown { bars, tasks: Mutex::new(HashMap::new()), next: AtomicU64::new(1) })
}

impl Shown {
    /// Prints a line above the bars (or plainly).
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => tell!("{line}"),
        }
    }

    fn bar(m: &MultiProgress, phase: Phase, what: &str, total: u64) -> ProgressBar {
        let bar = m.add(ProgressBar::new(total).with_style(style(total, false)));
        bar.set_message(format!("{} {}", phase.verb(), short(what)));
        // Redraws keep the rate and ETA current while bytes move between updates.
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Rate and ETA appear once bytes have moved: before that they would read 0 B/s and 0 s.
fn style(total: u64, moving: bool) -> ProgressStyle {
    let template = match (total > 0, moving) {
        (true, true) => "{msg} [{bar:28}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        (true, false) => "{msg} [{bar:28}] {binary_bytes}/{binary_total_bytes}",
        (false, true) => "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}",
        (false, false) => "{spinner} {msg} {binary_bytes}",
    };
    ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ")
}

impl Observer for Shown {
    fn begin(&self, phase: Phase, what: &str, total: u64) -> Task {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let bar = self.bars.as_ref().map(|m| Self::bar(m, phase, what, total));
        let logged = bar.is_none() && (total == 0 || total >= QUIET_BELOW);
        if logged {
            let size = if total > 0 { format!(" ({})", super::bytes(total)) } else { String::new() };
            tell!("{} {what}{size}", phase.verb());
        }
        let task = Shown1 { bar, logged, phase, what: what.to_owned(), moved: 0, started: Instant::now() };
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).insert(id, task);
        Task(id)
    }

    fn moved(&self, task: Task, bytes: u64) {
        if let Some(t) = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&task.0) {
            t.moved += bytes;
            if let Some(bar) = &t.bar {
                if bar.position() == 0 && bytes > 0 {
                    bar.set_style(style(bar.length().unwrap_or(0), true));
                }
                bar.inc(bytes);
            }
        }
    }

    fn end(&self, task: Task) {
        let Some(t) = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(&task.0) else { return };
        match t.bar {
            Some(bar) => bar.finish_and_clear(),
            None if t.logged => {
                let secs = t.started.elapsed().as_secs_f64();
                let rate = if secs > 0.0 {
                    format!(", {}/s", super::bytes((t.moved as f64 / secs) as u64))
                } else {
                    String::new()
                };
                tell!("{} {}: {} in {secs:.1} s{rate}", done(t.phase), t.what, super::bytes(t.moved));
            }
            None => {}
        }
    }
}

fn done(phase: Phase) -> &'static str {
    match phase {
        Phase::Compress => "compressed",
        Phase::Fetch => "fetched",
        Phase::Write => "wrote",
        Phase::Upload => "uploaded",
        Phase::Verify => "hashed", // not "verified": the outcome is the line that follows (OK, or the error)
    }
}

/// Long places (paths, references with digests) keep their end, which tells them apart.
fn short(what: &str) -> String {
    const MAX: usize = 48;
    let chars: Vec<char> = what.chars().collect();
    if chars.len() <= MAX {
        return what.to_owned();
    }
    let tail: String = chars[chars.len() - (MAX - 1)..].iter().collect();
    format!("…{tail}")
}

impl Ui for Shown {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Verified { place, report } => self.println(&super::verified_line(place, report)),
            Event::Note(note) => self.println(&format!("note: {note}")),
            Event::Step(step) => self.println(step),
            Event::WaitingForState(path) => {
                self.println(&format!("waiting for another import to release {}.lock", path.display()));
            }
            Event::Recorded { applied: a, state } => self.println(&format!(
                "series `{}` of key {} is now at sequence {} ({})",
                a.series,
                a.key_id,
                a.sequence,
                state.display()
            )),
            Event::Outcome(text) => super::interrupt::set_outcome(text),
        }
    }
}
