//! Where the bundle writer puts its bytes: one file, or volumes of a fixed size. The writer plans
//! the whole archive first and writes every piece at its offset ([`Output::write_all_at`]); here an
//! archive offset becomes a part and an offset in it. Every part is an [`AtomicFile`]: a failure
//! anywhere drops them all, so no partial part is left behind. A split bundle's digests and parity
//! are made while it is written ([`Sealer`], told of every byte that is final, written or left as
//! zeros); it is committed by renaming the data and parity parts into place and writing the
//! signed part list last.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicFile;
use crate::bundle::sign::SecretKey;
use crate::error::{Error, IoContext, Result};
use crate::volume::input::Volumes;
use crate::volume::list::{self, Parity, Part, PartList};
use crate::volume::parity;
use crate::volume::sealer::{PartFile, Sealed, Sealer};
use crate::volume::{MAX_PARITY, MAX_PARTS, Names, human, preflight};

/// `--volume-size` and `--parity`.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub volume_size: u64,
    pub parity: usize,
}

/// The bundle's files while they are written.
pub struct Output {
    /// Hashes the parts and folds them into parity as their bytes become final (split only).
    /// First, so a failed write stops it before the files below are removed.
    sealer: Option<Sealer>,
    dest: PathBuf,
    /// Data parts in order (one, holding everything, when not split).
    parts: Vec<AtomicFile>,
    parity: Vec<AtomicFile>,
    split: Option<Split>,
    len: u64,
}

/// How many data parts an archive of `len` bytes needs in volumes of `volume_size`.
pub fn part_count(len: u64, volume_size: u64) -> u64 {
    len.div_ceil(volume_size).max(1)
}

impl Output {
    /// Creates the temporary files of an archive of `len` bytes at `dest`, each at its final
    /// length and reading as zeros until written (so padding, and zeros, need no write).
    /// Checks the output filesystem first ([`preflight`]).
    pub fn create(dest: &Path, len: u64, split: Option<Split>) -> Result<Self> {
        if let Some(s) = split {
            check_counts(dest, len, s)?;
        }
        preflight::check(dest, preflight::needed(len, split), split)?;
        let Some(s) = split else {
            let file = AtomicFile::create(dest)?;
            file.file().set_len(len).map_err(|e| write_error(&dest.display().to_string(), e))?;
            let parts = vec![file];
            return Ok(Output { dest: dest.to_owned(), parts, parity: Vec::new(), split, len, sealer: None });
        };
        let names = Names::new(dest);
        let count = part_count(len, s.volume_size) as usize;
        let sized = |path: PathBuf, size: u64| -> Result<AtomicFile> {
            let file = AtomicFile::create(&path)?;
            file.file().set_len(size).map_err(|e| write_error(&path.display().to_string(), e))?;
            Ok(file)
        };
        let last = len - (count as u64 - 1) * s.volume_size;
        let sizes = (0..count).map(|i| if i + 1 == count { last } else { s.volume_size });
        let parts = sizes.enumerate().map(|(i, n)| sized(names.part(i), n)).collect::<Result<Vec<_>>>()?;
        let first = s.volume_size.min(len);
        let parity = (0..s.parity).map(|j| sized(names.parity(j), first)).collect::<Result<Vec<_>>>()?;
        let handles = |files: &[AtomicFile]| -> Result<Vec<PartFile>> {
            let dup = |f: &AtomicFile| f.file().try_clone().map(|file| PartFile { file, name: f.place() });
            files.iter().map(|f| dup(f).map_err(|e| Error::io(f.place(), e))).collect()
        };
        let sealer = Sealer::start(len, s.volume_size, handles(&parts)?, handles(&parity)?)?;
        Ok(Output { dest: dest.to_owned(), parts, parity, split, len, sealer: Some(sealer) })
    }

    /// Writes `buf` at archive offset `at`, across parts as needed. Each byte is written once.
    pub fn write_all_at(&self, buf: &[u8], at: u64) -> Result<()> {
        self.write_parts(buf, at)?;
        self.zeros(at, buf.len() as u64)
    }

    /// Bytes `at..at + n` stay zeros (padding, a hole): they are final as they are.
    pub fn zeros(&self, at: u64, n: u64) -> Result<()> {
        self.sealer.as_ref().map_or(Ok(()), |s| s.filled(at, n))
    }

    fn write_parts(&self, mut buf: &[u8], mut at: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let volume = self.split.map_or(u64::MAX, |s| s.volume_size);
        while !buf.is_empty() {
            let (i, off) = ((at / volume) as usize, at % volume);
            let n = buf.len().min((volume - off).min(usize::MAX as u64) as usize);
            let part = self.parts.get(i).ok_or_else(|| Error::bad(self.place(), "a write past the planned end"))?;
            part.file().write_all_at(&buf[..n], off).map_err(|e| write_error(&part.place(), e))?;
            buf = &buf[n..];
            at += n as u64;
        }
        Ok(())
    }

    /// How messages name the output.
    pub fn place(&self) -> String {
        self.dest.display().to_string()
    }

    /// What has been written so far, readable as the finished bundle will be.
    pub fn written(&self) -> Result<Volumes> {
        let paths: Vec<PathBuf> = self.parts.iter().map(|p| p.temp_path().to_owned()).collect();
        Volumes::files(&paths, self.place())
    }

    /// Puts the first `len` bytes of `src` (named `src_place`) at archive offset `at`, telling
    /// `moved` of them as they land: in the kernel (`copy_file_range`, which shares extents where
    /// the filesystem can) into a single-file bundle; through [`Output::write_all_at`] into
    /// volumes, whose sealer must see every byte, and wherever the kernel cannot copy between
    /// these files.
    pub fn copy_file_at(&self, src: &File, src_place: &str, len: u64, at: u64, moved: &dyn Fn(u64)) -> Result<()> {
        let mut done = 0;
        if self.sealer.is_none() {
            done = copy_in_kernel(src, src_place, &self.parts[0], len, at, moved)?;
        }
        let mut buf = vec![0u8; COPY_BUFFER.min(len.saturating_sub(done)) as usize];
        while done < len {
            let n = buf.len().min((len - done) as usize);
            std::os::unix::fs::FileExt::read_exact_at(src, &mut buf[..n], done).map_err(|e| Error::io(src_place, e))?;
            self.write_all_at(&buf[..n], at + done)?;
            done += n as u64;
            moved(n as u64);
        }
        Ok(())
    }

    /// Puts everything in place; a split bundle gets its digests, its parity and its signed part
    /// list (last). Returns the bundle's length, and the part list.
    pub fn commit(mut self, bundle_id: &str, key: &SecretKey, created: u64) -> Result<(u64, Option<PartList>)> {
        let Some(split) = self.split else {
            return Ok((self.parts.remove(0).commit(0o644)?, None));
        };
        let list = self.seal(bundle_id, split)?;
        let names = Names::new(&self.dest);
        let (bytes, sig) = list.sign(key, created);
        let (sig, list_file) =
            (written_whole(&names.signature(), sig.as_bytes())?, written_whole(&names.list(), &bytes)?);
        // An earlier part list at this name would vouch for none of the new parts: it goes first,
        // so a run stopped among the renames leaves parts without a list, never a wrong list.
        let _ = fs_err::remove_file(names.list());
        let parts = self.parts.into_iter().enumerate().map(|(i, f)| (f, names.part(i)));
        let parity = self.parity.into_iter().enumerate().map(|(j, f)| (f, names.parity(j)));
        let small = [(sig, names.signature()), (list_file, names.list())];
        let mut placed = Vec::new();
        for (file, path) in parts.chain(parity).chain(small) {
            if let Err(e) = file.commit(0o644) {
                // No part of a bundle whose part list did not make it stays behind.
                for p in &placed {
                    let _ = fs_err::remove_file(p);
                }
                return Err(e);
            }
            placed.push(path);
        }
        remove_stale(&names, list.parts.len(), split.parity);
        Ok((self.len, Some(list)))
    }

    /// Waits for the sealer to finish: the part list of what was written.
    fn seal(&mut self, bundle_id: &str, split: Split) -> Result<PartList> {
        let Sealed { data, parity } = self.sealer.take().expect("a split output has a sealer").finish()?;
        let entries = |files: &[AtomicFile], sums: Vec<_>| -> Result<Vec<Part>> {
            let size = |f: &AtomicFile| f.file().metadata().at(|| f.place()).map(|m| m.len());
            files.iter().zip(sums).map(|(f, digest)| Ok(Part { size: size(f)?, digest })).collect()
        };
        let parity = match split.parity {
            0 => None,
            _ => Some(Parity { scheme: list::PARITY_SCHEME.into(), parts: entries(&self.parity, parity)? }),
        };
        Ok(PartList {
            media_type: list::MEDIA_TYPE.into(),
            bundle_id: bundle_id.to_owned(),
            bundle_bytes: self.len,
            volume_size: split.volume_size,
            parts: entries(&self.parts, data)?,
            parity,
        })
    }
}

/// A split into more parts than names or the parity code allow is refused before a byte is written.
fn check_counts(dest: &Path, len: u64, s: Split) -> Result<()> {
    let count = part_count(len, s.volume_size);
    let place = dest.display().to_string();
    if count > MAX_PARTS as u64 {
        let msg = format!(
            "{} in volumes of {} is {count} parts, more than {MAX_PARTS}: use a larger --volume-size",
            human(len),
            human(s.volume_size)
        );
        return Err(Error::bad(place, msg));
    }
    if s.parity > MAX_PARITY || (s.parity > 0 && count as usize + s.parity > parity::MAX_SHARDS) {
        let most = parity::MAX_SHARDS;
        let msg = format!(
            "{count} data parts and {} parity parts: at most {MAX_PARITY} parity parts and {most} parts in all",
            s.parity
        );
        return Err(Error::bad("--parity", msg));
    }
    Ok(())
}

/// Bytes a copy through user space moves at a time.
const COPY_BUFFER: u64 = 256 << 10;

/// Copies what it can of `src[..len]` to `dst` at `at` with `copy_file_range`; returns how much
/// (0 where the kernel or filesystem cannot, so the caller copies the rest itself).
fn copy_in_kernel(
    src: &File,
    src_place: &str,
    dst: &AtomicFile,
    len: u64,
    at: u64,
    moved: &dyn Fn(u64),
) -> Result<u64> {
    use rustix::io::Errno;
    let (mut from, mut to) = (0u64, at);
    while from < len {
        let want = (len - from).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut from), dst.file(), Some(&mut to), want) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, format!("ends at byte {from}, expected {len}"));
                return Err(Error::io(src_place, e));
            }
            Ok(n) => moved(n as u64),
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if from == 0 => return Ok(0),
            Err(e @ (Errno::NOSPC | Errno::FBIG)) => return Err(write_error(&dst.place(), e.into())),
            Err(e) => return Err(Error::io(src_place, e.into())),
        }
    }
    Ok(from)
}

/// A small file written whole under a temporary name, for [`AtomicFile::commit`] to put in place.
fn written_whole(path: &Path, bytes: &[u8]) -> Result<AtomicFile> {
    use std::io::Write;
    let file = AtomicFile::create(path)?;
    file.file().write_all(bytes).map_err(|e| write_error(&file.place(), e))?;
    Ok(file)
}

/// Parts of an earlier, longer split of the same name would be taken for this one's by `cat
/// OUT.0*`: they go.
fn remove_stale(names: &Names, parts: usize, parity: usize) {
    for i in parts..MAX_PARTS {
        if fs_err::remove_file(names.part(i)).is_err() {
            break;
        }
    }
    for j in parity..MAX_PARITY {
        if fs_err::remove_file(names.parity(j)).is_err() {
            break;
        }
    }
}

/// A failed write, saying which limit a full disk (ENOSPC) or a file-size cap (EFBIG: FAT32's
/// 4 GiB − 1, or `ulimit -f`) is.
pub fn write_error(place: &str, e: io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::EFBIG) => {
            "the file-size limit was hit (EFBIG: FAT32 stops at 4 GiB − 1; `ulimit -f` also caps files); split the bundle with --volume-size (e.g. fat32)"
        }
        Some(libc::ENOSPC) => "the output filesystem is full (ENOSPC)",
        _ => return Error::io(place, e),
    };
    Error::io(format!("{place}: {hint}; every part written so far was removed"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive as the temporary parts hold it.
    fn bytes(out: &Output) -> Vec<u8> {
        out.parts.iter().flat_map(|p| std::fs::read(p.temp_path()).unwrap()).collect()
    }

    #[test]
    fn a_file_copied_in_puts_the_same_bytes_as_a_write_in_one_file_and_across_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let src_path = dir.path().join("blob");
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        for split in [None, Some(Split { volume_size: 262_144, parity: 0 })] {
            let len = 1 << 20;
            let (copied, written) = (dir.path().join("copied.tar"), dir.path().join("written.tar"));
            let (a, b) = (Output::create(&copied, len, split).unwrap(), Output::create(&written, len, split).unwrap());
            let moved = std::cell::Cell::new(0);
            let count = |n: u64| moved.set(moved.get() + n);
            a.copy_file_at(&src, "blob", data.len() as u64, 1536, &count).unwrap();
            b.write_all_at(&data, 1536).unwrap();
            assert!(bytes(&a) == bytes(&b), "{split:?}: the copy differs from the write");
            assert_eq!(moved.get(), data.len() as u64, "{split:?}");
            let short = a.copy_file_at(&src, "blob", data.len() as u64 + 1, 1536, &count).unwrap_err();
            assert!(short.to_string().starts_with("blob"), "{split:?}: {short}");
        }
    }
}
