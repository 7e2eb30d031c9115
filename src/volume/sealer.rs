//! Digests and parity of a split bundle while its parts are written, with no second pass over the
//! data. The bundle writer fills the archive out of order (blobs land in their planned slots from
//! several workers at once), so [`Sealer`] keeps track of which bytes are final (`Filled`) and
//! a thread follows the first gap: every byte before it is read once, while still in the page
//! cache, to hash its part and to fold it into the parity parts.
//!
//! Parity byte `o` combines byte `o` of every data part, and those are written far apart (one
//! volume size), so the partial parity lives in the parity files themselves: the first part's
//! chunk is multiplied into them, each later part's chunk is multiplied and added (XOR) into what
//! they hold, and the last part's pass hashes them. The code is linear, so the result is the
//! batch encoding of [`super::parity`], byte for byte. Memory: one stripe of data and one of
//! each parity part.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::volume::output::write_error;
use crate::volume::parity::{self, Coefficients};

/// Bytes read and folded at a time.
const STRIPE: usize = 256 << 10;

/// One part file the sealer reads or writes: a handle of its own, and its name for messages.
pub struct PartFile {
    pub file: File,
    pub name: String,
}

/// What the sealer found: each data part's digest, then each parity part's.
pub struct Sealed {
    pub data: Vec<Digest>,
    pub parity: Vec<Digest>,
}

/// The ranges of the archive written so far; `front` is the end of the written prefix.
#[derive(Default)]
struct Filled {
    front: u64,
    /// Written ranges past `front`, start → end.
    ahead: BTreeMap<u64, u64>,
    /// No more writes will come (commit, or the writer gave up).
    closed: bool,
    failed: Option<Error>,
}

impl Filled {
    /// Records `at..end` as final; moves `front` over every range it now touches.
    fn add(&mut self, at: u64, end: u64) {
        if at > self.front {
            match self.ahead.range_mut(..at).next_back() {
                Some((_, e)) if *e == at => *e = end,
                _ => {
                    let e = self.ahead.entry(at).or_insert(end);
                    *e = (*e).max(end);
                }
            }
            return;
        }
        self.front = self.front.max(end);
        while let Some((&a, &e)) = self.ahead.first_key_value() {
            if a > self.front {
                break;
            }
            self.ahead.pop_first();
            self.front = self.front.max(e);
        }
    }
}

struct Shared {
    filled: Mutex<Filled>,
    moved: Condvar,
    /// The writer gave up: stop without sealing what is left.
    abandoned: AtomicBool,
}

/// The thread that hashes and folds a split bundle's bytes as they become final.
pub struct Sealer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<Sealed>>>,
}

impl Sealer {
    /// Starts following an archive of `len` bytes split into `data` parts of `volume` bytes, with
    /// `parity` parity parts as long as the first data part.
    pub fn start(len: u64, volume: u64, data: Vec<PartFile>, parity: Vec<PartFile>) -> Result<Self> {
        let code = if parity.is_empty() { None } else { Some(parity::coefficients(data.len(), parity.len())?) };
        let shared = Arc::new(Shared {
            filled: Mutex::new(Filled::default()),
            moved: Condvar::new(),
            abandoned: AtomicBool::new(false),
        });
        let follower = Follower { shared: shared.clone(), len, volume, data, parity, code };
        let thread = std::thread::Builder::new()
            .name("airlock-sealer".into())
            .spawn(move || follower.run())
            .map_err(|e| Error::io("the parity thread", e))?;
        Ok(Sealer { shared, thread: Some(thread) })
    }

    /// Bytes `at..at + n` of the archive are final (written, or zeros left as a hole).
    pub fn filled(&self, at: u64, n: u64) -> Result<()> {
        let mut f = self.shared.filled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = f.failed.take() {
            f.closed = true;
            return Err(e);
        }
        let before = f.front;
        f.add(at, at + n);
        if f.front != before {
            self.shared.moved.notify_one();
        }
        Ok(())
    }

    /// Waits for the thread to seal every byte written; the digests, or why it could not.
    pub fn finish(mut self) -> Result<Sealed> {
        self.close();
        let thread = self.thread.take().expect("joined once");
        let result = thread.join().unwrap_or_else(|_| Err(Error::bad("parity", "the parity thread panicked")));
        match self.shared.filled.lock().unwrap_or_else(|e| e.into_inner()).failed.take() {
            Some(e) => Err(e),
            None => result,
        }
    }

    fn close(&self) {
        self.shared.filled.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.shared.moved.notify_one();
    }
}

impl Drop for Sealer {
    /// A writer that gave up stops the thread before its files are removed.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.abandoned.store(true, Ordering::Relaxed);
            self.close();
            let _ = t.join();
        }
    }
}

/// The sealer thread's state.
struct Follower {
    shared: Arc<Shared>,
    len: u64,
    volume: u64,
    data: Vec<PartFile>,
    parity: Vec<PartFile>,
    code: Option<Coefficients>,
}

impl Follower {
    /// Follows the writes; a failure is left for whoever asks first, a writer or the commit.
    fn run(self) -> Result<Sealed> {
        self.follow().map_err(|e| {
            self.shared.filled.lock().unwrap_or_else(|e| e.into_inner()).failed = Some(e);
            Error::bad(self.data[0].name.clone(), "the parity thread stopped after an error")
        })
    }

    fn follow(&self) -> Result<Sealed> {
        let mut sums = vec![Hasher::default(); self.data.len()];
        let mut parity_sums = vec![Hasher::default(); self.parity.len()];
        let mut buf = vec![0u8; STRIPE];
        let mut folded = vec![vec![0u8; STRIPE]; self.parity.len()];
        let mut sealed = 0;
        while let Some(front) = self.wait_past(sealed) {
            while sealed < front {
                if self.shared.abandoned.load(Ordering::Relaxed) {
                    return Err(Error::bad(self.data[0].name.clone(), "abandoned"));
                }
                let (part, off) = ((sealed / self.volume) as usize, sealed % self.volume);
                let n = (STRIPE as u64).min(front - sealed).min(self.volume - off) as usize;
                let data = &mut buf[..n];
                let f = &self.data[part];
                f.file.read_exact_at(data, off).map_err(|e| Error::io(&f.name, e))?;
                let data = &*data;
                // The hash and the parity of a chunk on two cores.
                let ((), folding) = rayon::join(
                    || sums[part].update(data),
                    || self.fold(part, off, data, &mut folded, &mut parity_sums),
                );
                folding?;
                sealed += n as u64;
            }
        }
        if sealed != self.len {
            let msg = format!("bytes {sealed}..{} were never written", self.len);
            return Err(Error::bad(self.data[0].name.clone(), msg));
        }
        self.hash_parity_tail(&mut parity_sums)?;
        let done = |v: Vec<Hasher>| v.into_iter().map(|h| h.finish().0).collect();
        Ok(Sealed { data: done(sums), parity: done(parity_sums) })
    }

    /// Waits until the written prefix reaches past `sealed`; `None` once writes are over and it
    /// will not.
    fn wait_past(&self, sealed: u64) -> Option<u64> {
        let mut f = self.shared.filled.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if f.front > sealed {
                return Some(f.front);
            }
            if f.closed {
                return None;
            }
            f = self.shared.moved.wait(f).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Folds `data`, bytes `off..` of data part `part`, into every parity part; the last data
    /// part's pass hashes the parity bytes it completes.
    fn fold(&self, part: usize, off: u64, data: &[u8], folded: &mut [Vec<u8>], sums: &mut [Hasher]) -> Result<()> {
        let Some(code) = &self.code else { return Ok(()) };
        let last = part + 1 == self.data.len();
        let zeros = data.iter().all(|&b| b == 0);
        for (j, p) in self.parity.iter().enumerate() {
            let out = &mut folded[j][..data.len()];
            if part == 0 {
                code.mul(j, part, data, out);
            } else if zeros && !last {
                continue;
            } else {
                p.file.read_exact_at(out, off).map_err(|e| Error::io(&p.name, e))?;
                code.mul_xor(j, part, data, out);
            }
            // Zeros change nothing: the parity file holds (or, new, reads as) the right bytes.
            if !zeros {
                p.file.write_all_at(out, off).map_err(|e| write_error(&p.name, e))?;
            }
            if last {
                sums[j].update(out);
            }
        }
        Ok(())
    }

    /// Hashes the parity bytes past the last data part's end: no later part completes them, so
    /// they are read once here.
    fn hash_parity_tail(&self, sums: &mut [Hasher]) -> Result<()> {
        let parts = self.data.len() as u64;
        let (last_len, first_len) = (self.len - (parts - 1) * self.volume, self.volume.min(self.len));
        let mut buf = vec![0u8; STRIPE];
        for (p, sum) in self.parity.iter().zip(sums) {
            let mut at = if parts == 1 { first_len } else { last_len };
            while at < first_len {
                let n = (STRIPE as u64).min(first_len - at) as usize;
                p.file.read_exact_at(&mut buf[..n], at).map_err(|e| Error::io(&p.name, e))?;
                sum.update(&buf[..n]);
                at += n as u64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(bytes: &[u8]) -> PartFile {
        let file = tempfile::tempfile().unwrap();
        file.set_len(bytes.len() as u64).unwrap();
        PartFile { file, name: "x".into() }
    }

    #[test]
    fn the_written_prefix_moves_over_ranges_written_out_of_order() {
        let mut f = Filled::default();
        f.add(10, 20);
        f.add(20, 30);
        f.add(40, 50);
        assert_eq!(f.front, 0);
        f.add(0, 10);
        assert_eq!(f.front, 30);
        f.add(30, 40);
        assert_eq!((f.front, f.ahead.len()), (50, 0));
    }

    #[test]
    fn parity_folded_while_writing_out_of_order_is_the_batch_encoding() {
        let volume = (STRIPE + 1000) as u64;
        let len = 2 * volume + 777;
        let bundle: Vec<u8> = (0..len).map(|i| if (i / 5000) % 3 == 0 { 0 } else { (i * 131 + i / 7) as u8 }).collect();
        let pieces: Vec<&[u8]> = bundle.chunks(volume as usize).collect();
        let data: Vec<PartFile> = pieces.iter().map(|p| part(p)).collect();
        let parity: Vec<PartFile> = (0..2).map(|_| part(pieces[0])).collect();
        let handles: Vec<File> = data.iter().chain(&parity).map(|p| p.file.try_clone().unwrap()).collect();
        let sealer = Sealer::start(len, volume, data, parity).unwrap();
        // Written back to front in uneven pieces, zeros left as holes.
        let cuts: Vec<u64> = (0..len).step_by(70_001).chain([len]).collect();
        for w in cuts.windows(2).rev() {
            let (at, end) = (w[0], w[1]);
            for (i, chunk) in bundle[at as usize..end as usize].chunks(1 << 16).enumerate() {
                let pos = at + (i << 16) as u64;
                let (p, off) = ((pos / volume) as usize, pos % volume);
                let split = chunk.len().min((volume - off) as usize);
                if chunk.iter().any(|&b| b != 0) {
                    handles[p].write_all_at(&chunk[..split], off).unwrap();
                    if let Some(next) = handles.get(p + 1) {
                        next.write_all_at(&chunk[split..], 0).unwrap();
                    }
                }
                sealer.filled(pos, chunk.len() as u64).unwrap();
            }
        }
        let sealed = sealer.finish().unwrap();
        let want = parity::encode_whole(&pieces, 2);
        for (j, w) in want.iter().enumerate() {
            let mut got = vec![0u8; w.len()];
            handles[pieces.len() + j].read_exact_at(&mut got, 0).unwrap();
            assert!(&got == w, "parity part {j} differs from the batch encoding");
            assert_eq!(sealed.parity[j], Digest::of_bytes(w));
        }
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(sealed.data[i], Digest::of_bytes(p));
        }
    }

    #[test]
    fn bytes_never_written_are_an_error_not_a_hang() {
        let data = vec![part(&[0; 100])];
        let sealer = Sealer::start(100, 100, data, Vec::new()).unwrap();
        sealer.filled(0, 60).unwrap();
        let e = sealer.finish().err().unwrap();
        assert!(e.to_string().contains("60..100 were never written"), "{e}");
    }
}
