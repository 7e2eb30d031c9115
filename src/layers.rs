//! Layer content (`create --check-layers`, `verify --check-layers`): every layer of every image in
//! a bundle is decompressed and its sha256 compared with its config's `diff_id`.
//!
//! A bundle's signature proves each blob is the one that was signed, not that a layer unpacks to
//! what its image says; an engine finds that out only when it pulls the image, on the isolated
//! side. This check decompresses gzip (multi-member too) and zstd (window at most 128 MiB) as a
//! stream, hashing as it goes (memory flat in layer size), refuses bytes after the compressed
//! data, and stops a decompression bomb as soon as it expands past [`MAX_RATIO`] times its
//! compressed size (at least [`FLOOR`]). This module checks one layer; the bundle's side
//! (`bundle::layers`) finds every layer of a bundle and checks them in parallel.

use std::io::{self, Read};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::image::Descriptor;

/// A layer may expand to this many times its compressed size (deflate cannot pass ~1032×).
pub const MAX_RATIO: u64 = 1100;
/// ... but always to this much, so a small, highly compressible layer is not mistaken for a bomb.
pub const FLOOR: u64 = 256 << 20;
/// The largest zstd window accepted, as a power of two (128 MiB, zstd's own default limit).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Decompresses one layer (already verified against its digest by `raw`) and checks that it
/// hashes to `diff_id`. Returns its uncompressed size.
pub fn check_layer(raw: impl Read, desc: &Descriptor, diff_id: &Digest, at: &str) -> Result<u64> {
    let limit = desc.size.saturating_mul(MAX_RATIO).max(FLOOR);
    let bad = |what: &str, e: io::Error| match crate::digest::Mismatch::from_io(&e) {
        Some(_) => Error::io(at, e),
        None => Error::integrity(at, format!("not valid {what}: {e}")),
    };
    let (what, decoded): (&str, Box<dyn Read>) = match compression_of(&desc.media_type) {
        Some(Codec::Gzip) => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(raw))),
        Some(Codec::Zstd) => {
            let mut d = zstd::stream::read::Decoder::new(raw).map_err(|e| bad("zstd", e))?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| bad("zstd", e))?;
            ("zstd", Box::new(d))
        }
        Some(Codec::None) => ("tar", Box::new(raw)),
        None => {
            let msg = format!("cannot decompress media type `{}`", desc.media_type.escape_debug());
            return Err(Error::bad(at, msg));
        }
    };
    let mut hashed = HashingReader::new(decoded.take(limit + 1));
    io::copy(&mut hashed, &mut io::sink()).map_err(|e| bad(what, e))?;
    let (found, size) = hashed.finish();
    if size > limit {
        let msg = format!(
            "expands past {limit} bytes ({MAX_RATIO} times its {} compressed bytes): refused as a decompression bomb",
            desc.size
        );
        return Err(Error::integrity(at, msg));
    }
    if found != *diff_id {
        return Err(Error::integrity(at, format!("decompresses to {found}, not to its diff_id {diff_id}")));
    }
    Ok(size)
}

enum Codec {
    Gzip,
    Zstd,
    None,
}

/// How a layer media type is compressed; `None` for a compression airlock cannot read.
fn compression_of(media_type: &str) -> Option<Codec> {
    match media_type {
        t if t.ends_with("+gzip") || t.ends_with(".tar.gzip") => Some(Codec::Gzip),
        t if t.ends_with("+zstd") => Some(Codec::Zstd),
        t if t.ends_with(".tar") || t.ends_with("diff.tar") => Some(Codec::None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::image::{OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn check(blob: &[u8], media_type: &str, content: &[u8]) -> Result<u64> {
        let desc = Descriptor::new(media_type, Digest::of_bytes(blob), blob.len() as u64);
        check_layer(blob, &desc, &Digest::of_bytes(content), "layer")
    }

    #[test]
    fn gzip_zstd_and_plain_layers_match_their_diff_ids() {
        let content = b"a tar, as far as this check cares".repeat(100);
        assert_eq!(check(&gzip(&content), OCI_LAYER_GZIP, &content).unwrap(), content.len() as u64);
        let zst = zstd::encode_all(&content[..], 3).unwrap();
        assert!(check(&zst, OCI_LAYER_ZSTD, &content).is_ok());
        assert!(check(&content, OCI_LAYER, &content).is_ok());
        let two = [gzip(&content[..1000]), gzip(&content[1000..])].concat();
        assert!(check(&two, "application/vnd.docker.image.rootfs.diff.tar.gzip", &content).is_ok(), "multi-member");
        let e = check(&gzip(&content), OCI_LAYER_GZIP, b"other").unwrap_err().to_string();
        assert!(e.contains("not to its diff_id"), "{e}");
    }

    #[test]
    fn bytes_after_the_compressed_stream_are_refused() {
        let content = b"layer".repeat(100);
        for tail in [&b"garbage"[..], &[0u8; 512][..]] {
            let blob = [gzip(&content), tail.to_vec()].concat();
            let e = check(&blob, OCI_LAYER_GZIP, &content).unwrap_err();
            assert!(e.to_string().contains("not valid gzip"), "{e}");
            let blob = [zstd::encode_all(&content[..], 3).unwrap(), tail.to_vec()].concat();
            let e = check(&blob, OCI_LAYER_ZSTD, &content).unwrap_err();
            assert!(e.to_string().contains("not valid zstd"), "{e}");
        }
    }

    #[test]
    fn a_decompression_bomb_is_stopped_at_the_cap() {
        let start = std::time::Instant::now();
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(FLOOR >> 20) + 64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        let err = check(&bomb, OCI_LAYER_ZSTD, b"").unwrap_err().to_string();
        assert!(err.contains("decompression bomb"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn a_zstd_window_over_128_mib_is_refused() {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(30)).unwrap();
        e.write_all(b"small").unwrap();
        let blob = e.finish().unwrap();
        let err = check(&blob, OCI_LAYER_ZSTD, b"small").unwrap_err().to_string();
        assert!(err.contains("not valid zstd"), "{err}");
    }

    #[test]
    fn an_unknown_compression_is_bad_input() {
        let e = check(b"x", "application/vnd.oci.image.layer.v1.tar+bzip2", b"x").unwrap_err();
        assert!(e.to_string().contains("cannot decompress"), "{e}");
    }
}
