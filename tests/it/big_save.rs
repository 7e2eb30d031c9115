//! Generated legacy `docker save` archives big enough to take a while to compress: for tests that
//! interrupt a create or fill its disk. The layer is pseudo-random (incompressible), made on the
//! fly so no fixture of hundreds of MiB is committed.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Pseudo-random bytes, `left` of them.
struct Noise {
    x: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize) / 8 * 8;
        let n = if n == 0 { buf.len().min(self.left as usize) } else { n };
        for chunk in buf[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            chunk.copy_from_slice(&self.x.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes `path`: a legacy docker save of `example.com/big/app:1`, one layer holding a file of
/// `bytes` incompressible bytes.
pub fn legacy_save(path: &Path, bytes: u64) {
    let dir = path.parent().unwrap();
    let layer = dir.join("layer.tar.tmp");
    let mut b = tar::Builder::new(std::fs::File::create(&layer).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_path("data.bin").unwrap();
    h.set_size(bytes);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, Noise { x: 0x9e37_79b9_7f4a_7c15, left: bytes }).unwrap();
    b.into_inner().unwrap().flush().unwrap();
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(&layer).unwrap();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let diff_id: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]}})
    .to_string();
    let config_id: String = Sha256::digest(config.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let manifest = serde_json::json!([{"Config": format!("{config_id}.json"),
        "RepoTags": ["example.com/big/app:1"], "Layers": [format!("{diff_id}/layer.tar")]}])
    .to_string();
    let mut save = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut put = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        save.append(&h, data).unwrap();
    };
    put(&format!("{config_id}.json"), config.as_bytes());
    put("manifest.json", manifest.as_bytes());
    save.append_path_with_name(&layer, format!("{diff_id}/layer.tar")).unwrap();
    save.into_inner().unwrap().flush().unwrap();
    std::fs::remove_file(layer).unwrap();
}
