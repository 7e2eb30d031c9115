//! Checks made on the output filesystem before a byte of a bundle is written: enough free space
//! for everything planned (statvfs), and no file larger than the filesystem can hold (FAT32, by
//! its statfs type), so a long `create` does not fail at the end of the stick.

use std::io;
use std::path::Path;

use crate::atomic::parent_dir;
use crate::error::{Error, Result};
use crate::volume::human;
use crate::volume::output::Split;
use crate::volume::size::FAT32_MAX;

/// `statfs` type of FAT12/16/32 (`MSDOS_SUPER_MAGIC`).
const MSDOS_SUPER_MAGIC: u64 = 0x4d44;

/// The filesystem holding `out` can take `needed` bytes, split as `split` says.
pub fn check(out: &Path, needed: u64, split: Option<Split>) -> Result<()> {
    let dir = parent_dir(out);
    let place = dir.display().to_string();
    let vfs = rustix::fs::statvfs(dir).map_err(|e| Error::io(&place, e.into()))?;
    let kind = rustix::fs::statfs(dir).map(|s| s.f_type as u64).map_err(|e| Error::io(&place, e.into()))?;
    let name = fs_name(kind);
    if kind == MSDOS_SUPER_MAGIC {
        let out_place = out.display().to_string();
        match split {
            None => {
                let msg = format!(
                    "{place} is on {name}, whose files stop at 4 GiB − 1: write volumes with --volume-size fat32 (or format the stick exFAT)"
                );
                return Err(Error::bad(out_place, msg));
            }
            Some(s) if s.volume_size > FAT32_MAX => {
                let msg = format!(
                    "{place} is on {name}, whose files stop at 4 GiB − 1: --volume-size {} is larger; use --volume-size fat32",
                    s.volume_size
                );
                return Err(Error::bad(out_place, msg));
            }
            Some(_) => {}
        }
    }
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    if needed > free {
        let msg = format!(
            "{}: not enough space on the filesystem holding {place} ({name}): needs {}, {} free",
            out.display(),
            human(needed),
            human(free)
        );
        return Err(Error::io(msg, io::Error::from_raw_os_error(libc::ENOSPC)));
    }
    Ok(())
}

/// What people call a filesystem of `statfs` type `kind`.
fn fs_name(kind: u64) -> String {
    let name = match kind {
        MSDOS_SUPER_MAGIC => "FAT (vfat)",
        0x2011_bab0 => "exFAT",
        0x0102_1994 => "tmpfs",
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x794c_7630 => "overlayfs",
        0x6969 => "NFS",
        0x6573_5546 => "FUSE",
        _ => return format!("filesystem type {kind:#x}"),
    };
    name.to_owned()
}

/// The bytes a bundle of `len` bytes takes on disk, parity included.
pub fn needed(len: u64, split: Option<Split>) -> u64 {
    match split {
        None => len,
        Some(s) => len.saturating_add((s.parity as u64).saturating_mul(s.volume_size.min(len))),
    }
}
