//! `--cache DIR`: a content-addressed store of registry blobs (`DIR/blobs/sha256/<hex>`) so an
//! interrupted `create` resumes and a repeated one fetches nothing again.
//!
//! Blobs are fetched several at once into `<hex>.partial` files and renamed when their digest and
//! size check out; a partial file left by an interrupted run is resumed with an HTTP Range request.
//! A cached blob is re-hashed before it is reused (and again when the bundle is written); one that
//! does not match is fetched anew.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::source::registry::read_error;
use crate::source::{Collection, Origin};

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        fs_err::create_dir_all(&blobs).at(|| blobs.display().to_string())?;
        Ok(Cache { dir: dir.to_owned() })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.blob_path())
    }

    /// Fetches every registry blob of the collection into the cache, `jobs` at a time, and points
    /// the collection at the cached copies.
    pub fn fill(&self, coll: &mut Collection, jobs: usize) -> Result<()> {
        let todo: Vec<(Digest, u64, Origin)> = coll
            .blobs
            .values()
            .filter(|b| matches!(b.origin, Origin::Registry { .. }))
            .map(|b| (b.descriptor.digest.clone(), b.descriptor.size, b.origin.clone()))
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .build()
            .map_err(|e| Error::bad("--jobs", e.to_string()))?;
        pool.install(|| todo.par_iter().try_for_each(|(d, size, origin)| self.ensure(d, *size, origin)))?;
        for (d, _, _) in todo {
            let blob = coll.blobs.get_mut(&d).expect("collected");
            blob.origin = Origin::Cached(self.path(&d));
        }
        Ok(())
    }

    /// Makes sure the cache holds a verified copy of one blob.
    fn ensure(&self, digest: &Digest, size: u64, origin: &Origin) -> Result<()> {
        let path = self.path(digest);
        if path.exists() {
            if hash_file(&path)? == (digest.clone(), size) {
                return Ok(());
            }
            fs_err::remove_file(&path).at(|| path.display().to_string())?; // corrupt: fetch again
        }
        let Origin::Registry { client, repo } = origin else { return Ok(()) };
        let partial = path.with_extension("partial");
        let mut have = fs_err::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > size {
            have = 0;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(have == 0)
            .open(&partial)
            .map_err(|e| Error::io(partial.display().to_string(), e))?;
        if have > 0 {
            io::Seek::seek(&mut file, io::SeekFrom::End(0)).at(|| partial.display().to_string())?;
        }
        let place = format!("{}/{repo}@{digest}", client.registry());
        let mut body = client.get_blob(repo, digest, have)?.take(size - have);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(&place, e)),
            };
            file.write_all(&buf[..n]).at(|| partial.display().to_string())?;
        }
        file.flush().at(|| partial.display().to_string())?;
        file.sync_all().at(|| partial.display().to_string())?;
        let (found, len) = hash_file(&partial)?;
        if (&found, len) != (digest, size) {
            let _ = fs_err::remove_file(&partial);
            let msg = format!("fetched {len} bytes with {found}, expected {size} bytes with {digest}");
            return Err(Error::integrity(place, msg));
        }
        fs_err::rename(&partial, &path).at(|| path.display().to_string())?;
        Ok(())
    }
}

fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let f = fs_err::File::open(path).at(|| path.display().to_string())?;
    let mut r = HashingReader::new(io::BufReader::with_capacity(1 << 20, f));
    io::copy(&mut r, &mut io::sink()).at(|| path.display().to_string())?;
    Ok(r.finish())
}
