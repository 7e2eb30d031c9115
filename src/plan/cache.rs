//! `--cache DIR`: a content-addressed store of registry blobs (`DIR/blobs/sha256/<hex>`) so an
//! interrupted `create` resumes and a repeated one fetches nothing again.
//!
//! Blobs are fetched several at once into `<hex>.partial` files and renamed when their digest and
//! size check out; a partial file left by an interrupted run is resumed with an HTTP Range request,
//! and one that turns out corrupt is discarded and fetched again whole. Within a run, a download
//! that breaks resumes through [`Client::open_blob`], as it does without a cache.
//! Each blob is hashed once per run: a download as it is written (never read back to be
//! checked), a cached blob before it is reused (one that does not match is fetched anew). The
//! bundle then takes the verified copy with an in-kernel copy ([`Origin::Cached`]), so a blob is
//! neither written through user space nor hashed a second time. A completed download is not
//! fsynced: a copy torn by a crash fails its hash on the next run and is fetched again.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::{Digest, Hasher, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::plan::{Collection, FileStamp, Origin};
use crate::progress::{self, Moving, Observer, Phase};
use crate::registry::Client;
use crate::source::registry::read_error;
use crate::transfer::Pool;

pub struct Cache {
    dir: PathBuf,
    /// Told the bytes of every blob as it is fetched.
    observer: Arc<dyn Observer>,
}

impl Cache {
    pub fn open(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        fs_err::create_dir_all(&blobs).at(|| blobs.display().to_string())?;
        Ok(Cache { dir: dir.to_owned(), observer: progress::silent() })
    }

    /// Reports the bytes of every blob fetched to `observer`.
    pub fn observed(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.blob_path())
    }

    /// Fetches every registry blob of the collection that `wanted` names into the cache on the
    /// transfer pool, and points the collection at the cached copies (a delta's bundle wants only
    /// the blobs it carries).
    pub fn fill(&self, coll: &mut Collection, pool: &Pool, wanted: &dyn Fn(&Digest) -> bool) -> Result<()> {
        let todo: Vec<(Digest, u64, Origin)> = coll
            .blobs
            .values()
            .filter(|b| matches!(b.origin, Origin::Registry { .. }) && wanted(&b.descriptor.digest))
            .map(|b| (b.descriptor.digest.clone(), b.descriptor.size, b.origin.clone()))
            .collect();
        let stamps = pool.try_map(&todo, |(d, size, origin)| self.ensure(d, *size, origin))?;
        for ((d, _, _), stamp) in todo.into_iter().zip(stamps) {
            let blob = coll.blobs.get_mut(&d).expect("collected");
            blob.origin = Origin::Cached { path: self.path(&d), stamp };
        }
        Ok(())
    }

    /// Makes sure the cache holds a verified copy of one blob; returns what identifies that copy.
    fn ensure(&self, digest: &Digest, size: u64, origin: &Origin) -> Result<FileStamp> {
        let path = self.path(digest);
        let at = || path.display().to_string();
        if path.exists() {
            let (found, stamp) = hash_file(&path)?;
            if found == (digest.clone(), size) {
                return Ok(stamp);
            }
            fs_err::remove_file(&path).at(at)?; // corrupt: fetch again
        }
        let Origin::Registry { client, repo } = origin else {
            return Err(Error::bad(at(), "only registry blobs are cached"));
        };
        let partial = path.with_extension("partial");
        let have = usable_partial(&partial, size)?;
        let observer = &*self.observer;
        match fetch(client, repo, digest, size, &partial, have, observer) {
            // What an earlier run left is the suspect, not the registry: start over from nothing.
            Err(Error::Integrity { .. }) if have > 0 => fetch(client, repo, digest, size, &partial, 0, observer)?,
            other => other?,
        }
        fs_err::rename(&partial, &path).at(at)?;
        Ok(FileStamp::of(&fs_err::metadata(&path).at(at)?))
    }
}

/// How many bytes of an earlier run's `.partial` to resume from: none when it is absent or too
/// long. A symlink is removed (a download never writes through one); a directory or other
/// non-file is an error naming it.
fn usable_partial(partial: &Path, size: u64) -> Result<u64> {
    let at = || partial.display().to_string();
    match std::fs::symlink_metadata(partial) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(at(), e)),
        Ok(m) if m.file_type().is_symlink() => fs_err::remove_file(partial).at(at).map(|()| 0),
        Ok(m) if !m.is_file() => Err(Error::bad(at(), "a partial download in the cache that is not a file; remove it")),
        Ok(m) if m.len() > size => Ok(0),
        Ok(m) => Ok(m.len()),
    }
}

/// Completes `partial` from byte `have` on (starting it afresh when `have` is 0), hashing what it
/// writes as it goes (an earlier run's bytes are hashed first, read back once), so the file is
/// never read again to be checked. A mismatch removes it; a read failure is the registry's, a
/// write failure the cache's.
fn fetch(
    client: &Arc<Client>,
    repo: &str,
    digest: &Digest,
    size: u64,
    partial: &Path,
    have: u64,
    observer: &dyn Observer,
) -> Result<()> {
    let at = || partial.display().to_string();
    let place = format!("{}/{repo}@{digest}", client.registry());
    let mut file = OpenOptions::new().create(true).read(true).write(true).truncate(have == 0).open(partial).at(at)?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    if have > 0 {
        let mut earlier = (&mut file).take(have);
        copy_hashed(&mut earlier, &mut io::sink(), &mut hasher, &mut buf).map_err(|e| e.at(at(), at()))?;
    }
    if have < size {
        io::Seek::seek(&mut file, io::SeekFrom::Start(have)).at(at)?;
        let body = client.open_blob(repo, digest, size, have)?.take(size - have);
        let mut body = Moving::begin(body, observer, Phase::Fetch, &place, size - have);
        copy_hashed(&mut body, &mut file, &mut hasher, &mut buf).map_err(|e| match e {
            Failed::Read(e) => read_error(&place, e),
            Failed::Write(e) => Error::io(at(), e),
        })?;
    }
    let (found, len) = hasher.finish();
    if (&found, len) != (digest, size) {
        let _ = fs_err::remove_file(partial);
        // Resumed, the earlier run's bytes are the suspect (and the caller starts over).
        let source = if have > 0 { at() } else { place };
        let msg = format!("fetched {len} bytes with {found}, expected {size} bytes with {digest}");
        return Err(Error::integrity(source, msg));
    }
    Ok(())
}

/// Which side of a copy failed.
enum Failed {
    Read(io::Error),
    Write(io::Error),
}

impl Failed {
    fn at(self, read: String, write: String) -> Error {
        match self {
            Failed::Read(e) => Error::io(read, e),
            Failed::Write(e) => Error::io(write, e),
        }
    }
}

/// Copies `src` to `dst` through `buf`, hashing every byte.
fn copy_hashed(src: &mut dyn Read, dst: &mut dyn Write, hasher: &mut Hasher, buf: &mut [u8]) -> Result<(), Failed> {
    loop {
        let n = match src.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failed::Read(e)),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(Failed::Write)?;
    }
}

/// The digest and length of a file's bytes, and its stamp as it was hashed.
fn hash_file(path: &Path) -> Result<((Digest, u64), FileStamp)> {
    let at = || path.display().to_string();
    let f = fs_err::File::open(path).at(at)?;
    let mut r = HashingReader::new(io::BufReader::with_capacity(1 << 20, &f));
    io::copy(&mut r, &mut io::sink()).at(at)?;
    let found = r.finish();
    Ok((found, FileStamp::of(&f.metadata().at(at)?)))
}
