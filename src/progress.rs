//! How long operations say what they are doing, without printing.
//!
//! The library never writes to the terminal: every phase that moves bytes (compressing a layer,
//! fetching, writing the bundle, uploading, verifying) tells an [`Observer`] when a task begins,
//! each time bytes move, and when it ends. The binary turns that into progress bars on a terminal
//! and plain log lines elsewhere; [`Silent`] ignores it. [`Moving`] reports the bytes read
//! through it, in batches, so a reader in a hot loop costs nothing measurable.

use std::io::{self, Read};
use std::sync::Arc;

/// What kind of work a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Compress,
    Fetch,
    Write,
    Upload,
    Verify,
}

impl Phase {
    /// The verb a log line starts with.
    pub fn verb(self) -> &'static str {
        match self {
            Phase::Compress => "compressing",
            Phase::Fetch => "fetching",
            Phase::Write => "writing",
            Phase::Upload => "uploading",
            Phase::Verify => "verifying",
        }
    }
}

/// Names one task between [`Observer::begin`] and [`Observer::end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Task(pub u64);

/// Told about work as it happens; every method may be called from any thread.
pub trait Observer: Send + Sync {
    /// A task of `phase` on `what` (a layer, a bundle, an image) begins; `total` bytes will
    /// move (0 if not known).
    fn begin(&self, phase: Phase, what: &str, total: u64) -> Task;
    /// `bytes` more bytes of `task` moved.
    fn moved(&self, task: Task, bytes: u64);
    /// The task is over (done, or abandoned on an error).
    fn end(&self, task: Task);
}

/// An observer that ignores everything (library callers that show no progress).
pub struct Silent;

impl Observer for Silent {
    fn begin(&self, _: Phase, _: &str, _: u64) -> Task {
        Task(0)
    }
    fn moved(&self, _: Task, _: u64) {}
    fn end(&self, _: Task) {}
}

/// A shared silent observer.
pub fn silent() -> Arc<dyn Observer> {
    Arc::new(Silent)
}

/// Reports bytes moved at most every this many bytes.
const BATCH: u64 = 256 << 10;

/// Reports every byte read through it as moved for one task, and ends the task when dropped.
pub struct Moving<'o, R> {
    inner: R,
    observer: &'o dyn Observer,
    task: Task,
    unreported: u64,
}

impl<'o, R> Moving<'o, R> {
    /// Begins a task of `phase` on `what` with `total` bytes, read through the result.
    pub fn begin(inner: R, observer: &'o dyn Observer, phase: Phase, what: &str, total: u64) -> Self {
        let task = observer.begin(phase, what, total);
        Moving { inner, observer, task, unreported: 0 }
    }

    /// Reports bytes moved at once, from any thread (no batching).
    pub fn observer_moved(&self, bytes: u64) {
        self.observer.moved(self.task, bytes);
    }

    /// Reports bytes moved some other way (a write the caller counted).
    pub fn add(&mut self, bytes: u64) {
        self.unreported += bytes;
        if self.unreported >= BATCH {
            self.observer.moved(self.task, std::mem::take(&mut self.unreported));
        }
    }
}

impl<'o, S> Moving<'o, S> {
    /// Reads through `inner`, counting what it reads as moved for this task (one task over
    /// many readers: the entries of one bundle).
    pub fn through<R: Read>(&mut self, inner: R) -> Through<'_, 'o, R, S> {
        Through { inner, moving: self }
    }
}

/// See [`Moving::through`].
pub struct Through<'m, 'o, R, S> {
    inner: R,
    moving: &'m mut Moving<'o, S>,
}

impl<R: Read, S> Read for Through<'_, '_, R, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.moving.add(n as u64);
        Ok(n)
    }
}

impl<R: Read> Read for Moving<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.add(n as u64);
        Ok(n)
    }
}

impl<R> Drop for Moving<'_, R> {
    fn drop(&mut self) {
        if self.unreported > 0 {
            self.observer.moved(self.task, self.unreported);
        }
        self.observer.end(self.task);
    }
}

/// Reports the bytes read through it for a task someone else begins and ends (a reader that must
/// own everything it holds, such as an upload body that may be opened again for a retry).
pub struct Ticking<R> {
    inner: R,
    observer: Arc<dyn Observer>,
    task: Task,
    unreported: u64,
}

impl<R> Ticking<R> {
    pub fn new(inner: R, observer: Arc<dyn Observer>, task: Task) -> Self {
        Ticking { inner, observer, task, unreported: 0 }
    }
}

impl<R: Read> Read for Ticking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.unreported += n as u64;
        if self.unreported >= BATCH {
            self.observer.moved(self.task, std::mem::take(&mut self.unreported));
        }
        Ok(n)
    }
}

impl<R> Drop for Ticking<R> {
    fn drop(&mut self) {
        if self.unreported > 0 {
            self.observer.moved(self.task, self.unreported);
        }
    }
}
