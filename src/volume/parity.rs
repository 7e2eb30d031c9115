//! Reed–Solomon parity over the parts of a split bundle, stripe by stripe: stripe `s` is bytes
//! `s·STRIPE ..` of every part, a data part past its end reading as zeros, so each parity part is
//! as long as the first data part and byte `o` of parity part `j` depends only on byte `o` of each
//! data part. Memory is one stripe of every part, never a part.
//!
//! The code is Reed–Solomon over GF(2^8) with the systematic Vandermonde matrix that Backblaze's
//! JavaReedSolomon and Go's klauspost/reedsolomon use (crate `reed-solomon-erasure`, which is
//! compatible with both), so another implementation can rebuild a part from the format document
//! alone. At most [`MAX_SHARDS`] parts in all.
//!
//! `create` makes parity while the parts are written, one data part at a time, with the matrix's
//! [`Coefficients`] ([`crate::volume::sealer`]); [`rebuild`] decodes stripe by stripe.

use std::fs::File;
use std::os::unix::fs::FileExt;

use rayon::prelude::*;
use reed_solomon_erasure::galois_8::{self, ReedSolomon};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// The most parts, data and parity together, that GF(2^8) Reed–Solomon can code.
pub const MAX_SHARDS: usize = 256;
/// Bytes of each part held at once.
const STRIPE: usize = 256 << 10;

/// One part file: its handle, its real length (shorter data parts are padded with zeros) and its
/// name for messages.
#[derive(Clone)]
pub struct Shard<'a> {
    pub file: &'a File,
    pub len: u64,
    pub name: String,
}

/// The code for `data` data parts and `parity` parity parts.
pub fn code(data: usize, parity: usize) -> Result<ReedSolomon> {
    ReedSolomon::new(data, parity).map_err(|e| {
        Error::bad(
            "--parity",
            format!("{parity} parity parts for {data} data parts: {e:?} (at most {MAX_SHARDS} in all)"),
        )
    })
}

/// Row `j` of the code's parity matrix, one coefficient per data part: parity part `j` is the sum
/// (XOR) over data parts `i` of `c[j][i]·part[i]`, bytewise in GF(2^8). Streaming encoders
/// ([`crate::volume::sealer`]) fold parts in one at a time with it.
pub struct Coefficients {
    rows: Vec<Vec<u8>>,
}

/// The coefficients of the code for `data` data parts and `parity` parity parts, read off the
/// crate's encoder by encoding each unit vector, so they are its matrix by construction.
pub fn coefficients(data: usize, parity: usize) -> Result<Coefficients> {
    let rs = code(data, parity)?;
    let mut rows = vec![vec![0u8; data]; parity];
    for i in 0..data {
        let unit: Vec<[u8; 1]> = (0..data).map(|k| [u8::from(k == i)]).collect();
        let mut out = vec![[0u8; 1]; parity];
        rs.encode_sep(&unit, &mut out).map_err(|e| Error::bad("parity", format!("{e:?}")))?;
        out.iter().zip(&mut rows).for_each(|(o, row)| row[i] = o[0]);
    }
    Ok(Coefficients { rows })
}

impl Coefficients {
    /// `out = c[j][i]·input`.
    pub fn mul(&self, j: usize, i: usize, input: &[u8], out: &mut [u8]) {
        galois_8::mul_slice(self.rows[j][i], input, out);
    }

    /// `out += c[j][i]·input`.
    pub fn mul_xor(&self, j: usize, i: usize, input: &[u8], out: &mut [u8]) {
        galois_8::mul_slice_xor(self.rows[j][i], input, out);
    }
}

/// How many of a stripe's `chunk` bytes at `at` are the shard's own (the rest is padding).
fn real(s: &Shard<'_>, at: u64, chunk: usize) -> usize {
    s.len.saturating_sub(at).min(chunk as u64) as usize
}

/// Reads bytes `at..at+chunk` of every shard into `bufs`, zeros past a shard's end, all shards
/// at once.
fn read_stripe(shards: &[Shard<'_>], bufs: &mut [Vec<u8>], at: u64, chunk: usize) -> Result<()> {
    shards.par_iter().zip(bufs.par_iter_mut()).try_for_each(|(s, buf)| {
        buf.clear();
        buf.resize(chunk, 0);
        let n = real(s, at, chunk);
        s.file.read_exact_at(&mut buf[..n], at).map_err(|e| Error::io(&s.name, e))
    })
}

/// Writes each shard's piece of a stripe at `at`, cut to the shard's real length, hashing it.
fn write_stripe(shards: &[Shard<'_>], bufs: &[Vec<u8>], sums: &mut [Hasher], at: u64) -> Result<()> {
    for ((s, buf), sum) in shards.iter().zip(bufs).zip(sums.iter_mut()) {
        let n = real(s, at, buf.len());
        s.file.write_all_at(&buf[..n], at).map_err(|e| crate::volume::output::write_error(&s.name, e))?;
        sum.update(&buf[..n]);
    }
    Ok(())
}

/// Rebuilds the parts `lost` names (by their place among `shards`) from the others, stripe by
/// stripe, writing each to the file given with it; `shards` holds every part, data then parity,
/// `None` where lost. Returns the digests of the rebuilt parts.
pub fn rebuild(data: usize, shards: &[Option<Shard<'_>>], lost: &[(usize, Shard<'_>)]) -> Result<Vec<Digest>> {
    let rs = code(data, shards.len() - data)?;
    let shard_len = shards.first().and_then(|s| s.as_ref()).map_or(0, |s| s.len);
    let shard_len = shard_len.max(lost.iter().map(|(_, s)| s.len).max().unwrap_or(0));
    let present: Vec<Shard<'_>> = shards.iter().flatten().cloned().collect();
    let targets: Vec<Shard<'_>> = lost.iter().map(|(_, s)| s.clone()).collect();
    let mut bufs = vec![Vec::new(); present.len()];
    let mut sums = vec![Hasher::default(); lost.len()];
    for at in (0..shard_len).step_by(STRIPE) {
        let chunk = STRIPE.min((shard_len - at) as usize);
        read_stripe(&present, &mut bufs, at, chunk)?;
        let mut read = std::mem::take(&mut bufs).into_iter();
        let mut work: Vec<Option<Vec<u8>>> = shards.iter().map(|s| s.as_ref().and_then(|_| read.next())).collect();
        rs.reconstruct(&mut work).map_err(|e| Error::integrity("repair", format!("{e:?}")))?;
        let pieces: Vec<Vec<u8>> = lost.iter().map(|(i, _)| work[*i].take().unwrap_or_default()).collect();
        write_stripe(&targets, &pieces, &mut sums, at)?;
        bufs = work.into_iter().zip(shards).filter_map(|(w, s)| s.as_ref().and(w)).collect();
    }
    Ok(sums.into_iter().map(|h| h.finish().0).collect())
}

/// Encodes `mib` MiB of data held in `data` parts into `parity` parts, one data stripe at a time
/// as [`crate::volume::sealer`] folds them in, for bench/parity_speed.rs to time; returns the
/// data bytes encoded.
pub fn encode_for_bench(data: usize, parity: usize, mib: usize) -> Result<u64> {
    let code = coefficients(data, parity)?;
    let bufs: Vec<Vec<u8>> = (0..data).map(|i| (0..STRIPE).map(|j| (i * 31 + j * 7) as u8).collect()).collect();
    let mut out = vec![vec![0u8; STRIPE]; parity];
    let rounds = ((mib << 20) / (STRIPE * data)).max(1);
    for _ in 0..rounds {
        for (i, b) in bufs.iter().enumerate() {
            for (j, o) in out.iter_mut().enumerate() {
                if i == 0 { code.mul(j, i, b, o) } else { code.mul_xor(j, i, b, o) }
            }
        }
    }
    Ok((rounds * STRIPE * data) as u64)
}

/// The batch encoding of whole parts (shorter ones padded with zeros), for tests to compare with.
#[cfg(test)]
pub(crate) fn encode_whole(parts: &[&[u8]], parity: usize) -> Vec<Vec<u8>> {
    let len = parts[0].len();
    let padded: Vec<Vec<u8>> = parts.iter().map(|p| [*p, &vec![0; len - p.len()]].concat()).collect();
    let mut out = vec![vec![0u8; len]; parity];
    code(parts.len(), parity).unwrap().encode_sep(&padded, &mut out).unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> File {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f
    }

    fn shard(file: &File, len: usize) -> Shard<'_> {
        Shard { file, len: len as u64, name: "x".into() }
    }

    #[test]
    fn lost_parts_come_back_from_parity_byte_for_byte() {
        let sizes = [STRIPE + 100, STRIPE + 100, 77];
        let parts: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (j * 13 + i) as u8).collect()).collect();
        let files: Vec<File> = parts.iter().map(|p| file(p)).collect();
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let parity_files: Vec<File> = encode_whole(&slices, 2).iter().map(|p| file(p)).collect();

        // Data parts 1 and 2 lost: rebuilt from part 0 and the two parity parts.
        let rebuilt = [tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap()];
        let shards = vec![
            Some(shard(&files[0], sizes[0])),
            None,
            None,
            Some(shard(&parity_files[0], sizes[0])),
            Some(shard(&parity_files[1], sizes[0])),
        ];
        let lost = vec![(1, shard(&rebuilt[0], sizes[1])), (2, shard(&rebuilt[1], sizes[2]))];
        let got = rebuild(3, &shards, &lost).unwrap();
        assert_eq!(got, vec![Digest::of_bytes(&parts[1]), Digest::of_bytes(&parts[2])]);
    }
}
