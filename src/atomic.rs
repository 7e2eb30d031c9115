//! Output files that appear whole or not at all: written under a temporary name in the target's
//! directory, fsynced, then renamed over the target. Dropped before [`AtomicFile::commit`], the
//! temporary file is removed, so a failed or interrupted run leaves nothing at the output path.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::cleanup::{self, Registered};
use crate::error::{Error, IoContext, Result};

pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    /// After `tmp`, so it is forgotten only once the file is gone.
    _registered: Registered,
}

/// The directory a path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The directory an output goes in, which must be there: one that is not is named as the
/// output's fault (otherwise the message names the temporary file made in it).
pub fn output_dir(dest: &Path) -> Result<&Path> {
    let dir = parent_dir(dest);
    let why = match fs_err::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(dir),
        Ok(_) => std::io::Error::other(format!("{} is not a directory", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::io::Error::new(e.kind(), format!("its directory {} does not exist", dir.display()))
        }
        Err(e) => e,
    };
    Err(Error::io(dest.display().to_string(), why))
}

/// Refuses an output that is one of the files being read (`export -o bundle.tar bundle.tar`):
/// renamed into place, it would replace the only copy of what it is made from.
pub fn refuse_input_as_output<'a>(dest: &Path, inputs: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out) = std::fs::metadata(dest) else { return Ok(()) };
    for input in inputs {
        if std::fs::metadata(input).is_ok_and(|m| m.dev() == out.dev() && m.ino() == out.ino()) {
            let msg = format!("is {}, which is being read: give another output", input.display());
            return Err(Error::bad(format!("-o {}", dest.display()), msg));
        }
    }
    Ok(())
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = output_dir(dest)?;
        let tmp = tempfile::Builder::new()
            .prefix(".airlock-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .at(|| dir.display().to_string())?;
        let _registered = cleanup::register(tmp.path());
        Ok(AtomicFile { tmp, dest: dest.to_owned(), _registered })
    }

    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// The temporary file's path, to read back what was written before it is committed.
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn place(&self) -> String {
        self.dest.display().to_string()
    }

    /// Gives the file mode `mode`, fsyncs it, renames it into place and fsyncs the directory.
    /// Returns the file's size.
    pub fn commit(self, mode: u32) -> Result<u64> {
        use std::os::unix::fs::PermissionsExt;
        let place = || self.dest.display().to_string();
        let file = self.tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(mode)).at(place)?;
        file.sync_all().at(place)?;
        let size = file.metadata().at(place)?.len();
        let dest = self.dest.clone();
        self.tmp.persist(&dest).map_err(|e| Error::io(dest.display().to_string(), e.error))?;
        sync_dir(parent_dir(&dest));
        Ok(size)
    }
}

/// Best effort: makes renames inside `dir` durable (not every filesystem allows it).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
