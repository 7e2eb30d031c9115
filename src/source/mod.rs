//! Image sources: where `create` reads images from, named with skopeo's transports.
//!
//! A source spec is `TRANSPORT:PATH[:REF][=NAME]`: `docker-archive:` (a `docker save` tar, legacy
//! or Docker 25+ layout), `oci:` (an OCI image layout directory) or `oci-archive:` (a tar of one).
//! Without `:REF` every image the source holds is taken; `=NAME` names an image whose source gives
//! it no full reference. Reading a source adds its images and blobs to the plan's collection, which
//! stores each blob once however many images use it.
//!
//! A reader hands what it finds to a [`Found`] (the plan's collection), and each blob's [`Origin`]
//! says how to open its bytes again when the bundle is written.

pub mod attachments;
pub mod docker_archive;
pub mod list;
pub mod lookups;
pub mod oci;
pub mod pgzip;
pub mod registry;
pub mod stage;
pub mod store;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attachments::{Attachment, Selection};
use crate::digest::Digest;
use crate::error::{Error, Result, shown};
use crate::image::{Descriptor, Platform};
use crate::reference::{Reference, ReferenceError};
use stage::Stager;
use store::{DirStore, Store, TarStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    DockerArchive,
    Oci,
    OciArchive,
    /// A registry: `docker://REF` or a bare reference.
    Registry,
    /// The Docker Engine at `DOCKER_HOST`: `docker-daemon:REF`.
    Daemon,
}

impl Transport {
    /// Every transport, for messages that list or match them.
    pub const ALL: [Transport; 5] =
        [Transport::Registry, Transport::Daemon, Transport::DockerArchive, Transport::Oci, Transport::OciArchive];

    pub fn prefix(self) -> &'static str {
        match self {
            Transport::DockerArchive => "docker-archive",
            Transport::Oci => "oci",
            Transport::OciArchive => "oci-archive",
            Transport::Registry => "docker",
            Transport::Daemon => "docker-daemon",
        }
    }
}

/// Where a source's images are: a local archive or layout, a registry, or the Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `docker-archive:`, `oci:` or `oci-archive:` at `path`; `selector` (`:REF`) picks one image.
    Local { transport: Transport, path: PathBuf, selector: Option<String> },
    /// `docker://REF`, or a bare reference that names no file.
    Registry(Reference),
    /// `docker-daemon:REF`: the Docker Engine at `DOCKER_HOST`.
    Daemon(Reference),
}

/// One source named on the command line or in an image list, parsed once.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub location: Location,
    /// The name to give the image (`=NAME`).
    pub name: Option<Reference>,
    /// Platforms to keep of this source's multi-platform images (an image list's per-image
    /// platforms); empty: the command line's `--platform`.
    pub platforms: Vec<Platform>,
}

impl SourceSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |msg: String| Error::bad(format!("source `{}`", shown(text)), msg);
        let (body, name) = split_name(text).map_err(|e| bad(e.to_string()))?;
        let spec = |location| SourceSpec { location, name: name.clone(), platforms: Vec::new() };
        let reference = |r: &str| Reference::parse(r).map_err(|e| bad(e.to_string()));
        let (transport, rest) = match body.split_once(':') {
            Some(("docker-archive", rest)) => (Some(Transport::DockerArchive), rest),
            Some(("oci", rest)) => (Some(Transport::Oci), rest),
            Some(("oci-archive", rest)) => (Some(Transport::OciArchive), rest),
            Some(("docker", rest)) => {
                let r = rest
                    .strip_prefix("//")
                    .ok_or_else(|| bad("write registry sources as docker://REFERENCE".into()))?;
                return Ok(spec(Location::Registry(reference(r)?)));
            }
            Some(("docker-daemon", rest)) => return Ok(spec(Location::Daemon(reference(rest)?))),
            _ => (None, body),
        };
        // As in skopeo, the path ends at the first ':'; the rest selects an image.
        let (path, selector) = match rest.split_once(':') {
            Some((p, s)) if !s.is_empty() => (p, Some(s.to_owned())),
            Some((p, _)) => (p, None),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(bad("no path given".into()));
        }
        let path = PathBuf::from(path);
        let transport = match transport {
            Some(t) => {
                if path.starts_with("//") && !path.exists() {
                    let (t, p) = (t.prefix(), path.display().to_string());
                    let msg = format!("no such file `{p}`: the path follows `{t}:` with no `//` ({t}:{})", &p[2..]);
                    return Err(bad(msg));
                }
                t
            }
            None if !path.exists() && looks_like_reference(body) => {
                return Ok(spec(Location::Registry(reference(body)?)));
            }
            None if !path.exists() => return Err(bad(not_a_source(body))),
            None => detect(&path).map_err(bad)?,
        };
        Ok(spec(Location::Local { transport, path, selector }))
    }

    /// The source's transport.
    pub fn transport(&self) -> Transport {
        match &self.location {
            Location::Local { transport, .. } => *transport,
            Location::Registry(_) => Transport::Registry,
            Location::Daemon(_) => Transport::Daemon,
        }
    }

    /// Which image of an archive to take (`:REF`); the daemon's image by its tag, if it has one.
    pub fn selector(&self) -> Option<String> {
        match &self.location {
            Location::Local { selector, .. } => selector.clone(),
            Location::Daemon(r) => r.tag().map(|_| r.to_string()),
            Location::Registry(_) => None,
        }
    }

    /// The name given with `=NAME`; a daemon's image is named by its reference otherwise.
    pub fn name(&self) -> Option<&Reference> {
        match &self.location {
            Location::Daemon(r) => self.name.as_ref().or(Some(r)),
            _ => self.name.as_ref(),
        }
    }
}

/// Splits off an `=NAME` suffix, unless the whole text names a file that exists and the text
/// before `=` does not (`docker-archive:a=b.tar` is a file).
fn split_name(text: &str) -> std::result::Result<(&str, Option<Reference>), ReferenceError> {
    let Some((body, name)) = text.rsplit_once('=') else { return Ok((text, None)) };
    let path_of = |t: &str| {
        let rest = ["docker-archive:", "oci-archive:", "oci:"].iter().find_map(|p| t.strip_prefix(p)).unwrap_or(t);
        PathBuf::from(rest.split(':').next().unwrap_or(rest))
    };
    if path_of(text).exists() && !path_of(body).exists() {
        return Ok((text, None));
    }
    Ok((body, Some(Reference::parse(name)?)))
}

/// A bare source that is no file is a registry reference, unless it looks like a file name or
/// starts with one of skopeo's other transports (`containers-storage:nginx`).
fn looks_like_reference(text: &str) -> bool {
    let file_like = [".tar", ".tgz", ".tar.gz", ".json"].iter().any(|ext| text.ends_with(ext));
    let skopeo = text.split_once(':').is_some_and(|(w, _)| skopeo_only(w).is_some());
    !text.starts_with(['.', '/', '~']) && !file_like && !skopeo && Reference::parse(text).is_ok()
}

/// The sources airlock reads, for messages.
const SOURCES: &str =
    "sources are docker://REF (or a bare REF), docker-daemon:REF, docker-archive:FILE, oci:DIR or oci-archive:FILE";

/// Why `text`, which names no file and is no image reference, is no source, with what was
/// probably meant: a transport misspelt, or one of skopeo's that airlock does not read.
fn not_a_source(text: &str) -> String {
    let word = text
        .split_once(':')
        .map(|(w, _)| w)
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
    let Some(word) = word else {
        // `NAME:TAG` was meant as an image reference; say why it is none.
        let meant_ref = text.contains(':') && !text.starts_with(['.', '/', '~']);
        let why = Reference::parse(text).err().filter(|_| meant_ref);
        let why = why.map(|e| format!(", and not an image reference: {}", e.why));
        return format!("no such file or directory{}; {SOURCES}", why.unwrap_or_default());
    };
    if let Some(instead) = skopeo_only(word) {
        return format!("airlock does not read skopeo's `{word}:` transport ({instead}); {SOURCES}");
    }
    let nearest = Transport::ALL.iter().map(|t| (strsim::levenshtein(word, t.prefix()), *t)).min_by_key(|&(d, _)| d);
    match nearest.filter(|&(d, _)| d <= 2).map(|(_, t)| t) {
        Some(Transport::Registry) => format!("unknown transport `{word}:` (did you mean `docker://`?); {SOURCES}"),
        Some(t) => format!("unknown transport `{word}:` (did you mean `{}:`?); {SOURCES}", t.prefix()),
        None => format!("no such file or directory, and `{word}:` is no transport; {SOURCES}"),
    }
}

/// What to do instead for a transport skopeo knows and airlock does not.
fn skopeo_only(word: &str) -> Option<&'static str> {
    Some(match word {
        "containers-storage" => "write the image out with `podman save --format oci-archive -o FILE IMAGE`",
        "dir" | "ostree" | "sif" | "tarball" => "copy it into a layout first: `skopeo copy ... oci:DIR:TAG`",
        _ => return None,
    })
}

/// Guesses the transport of a path given without one.
fn detect(path: &Path) -> std::result::Result<Transport, String> {
    if path.is_dir() {
        return Ok(Transport::Oci);
    }
    if !path.is_file() {
        return Err(format!("is neither a file nor a directory; {SOURCES}"));
    }
    let store = TarStore::open(path).map_err(|e| e.to_string())?;
    if store.contains("manifest.json") {
        Ok(Transport::DockerArchive)
    } else if store.contains("index.json") {
        Ok(Transport::OciArchive)
    } else {
        Err("neither a docker-archive (no manifest.json) nor an OCI archive (no index.json)".into())
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Registry(r) => write!(f, "docker://{r}"),
            Location::Daemon(r) => write!(f, "docker-daemon:{r}"),
            Location::Local { transport, path, selector } => {
                write!(f, "{}:{}", transport.prefix(), shown(&path.display().to_string()))?;
                if let Some(s) = selector {
                    write!(f, ":{}", shown(s))?;
                }
                Ok(())
            }
        }
    }
}

/// Where the bytes of a blob come from when the bundle is written.
#[derive(Clone)]
pub enum Origin {
    /// A file in a source store, copied verbatim and verified against its digest while copied.
    Store { store: Arc<dyn Store>, path: String },
    /// Bytes already read and verified (manifests, configs) or written by airlock (new manifests).
    Bytes(Arc<[u8]>),
    /// A layer airlock compressed into its staging directory.
    Staged(PathBuf),
    /// A blob in a registry repository, streamed into the bundle when it is written.
    Registry { client: Arc<crate::registry::Client>, repo: String },
    /// A copy in the `--cache` directory that this run hashed against the blob's digest (as it
    /// fetched it, or before reusing it), as `stamp` found it then: the bundle takes it with an
    /// in-kernel copy ([`Origin::verified_file`]), not hashed again.
    Cached { path: PathBuf, stamp: FileStamp },
}

/// What tells a file changed since it was hashed, without reading it: its inode, length and
/// modification time. A copy whose stamp moved is not taken on trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp { dev: meta.dev(), ino: meta.ino(), len: meta.len(), modified: meta.modified().ok() }
    }
}

/// A blob opened for copying, and whom to blame when reading it fails.
pub struct Opened<'a> {
    pub reader: Box<dyn Read + Send + 'a>,
    pub blame: Blame,
}

/// Where a blob is read from, for the error of a failed read or a mismatch.
pub struct Blame {
    place: String,
    registry: bool,
}

impl Blame {
    pub fn error(&self, e: io::Error) -> Error {
        if self.registry { registry::read_error(&self.place, e) } else { Error::io(&self.place, e) }
    }
}

impl Origin {
    /// A local file this run has already checked against the blob's digest, to be copied as it
    /// is if it still has the stamp it had then; `None` for every origin whose bytes must be
    /// verified as they are read.
    pub fn verified_file(&self) -> Option<(&Path, &FileStamp)> {
        match self {
            Origin::Cached { path, stamp } => Some((path, stamp)),
            _ => None,
        }
    }

    /// Opens the blob's bytes from their start (not verified here: wrap them in a
    /// [`crate::digest::VerifyingReader`]).
    pub fn open(&self, digest: &Digest, size: u64) -> Result<Opened<'_>> {
        let local = |place: String| Blame { place, registry: false };
        let file = |path: &PathBuf| -> Result<Opened<'_>> {
            let f = fs_err::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
            Ok(Opened { reader: Box::new(f), blame: local(path.display().to_string()) })
        };
        match self {
            Origin::Bytes(bytes) => {
                Ok(Opened { reader: Box::new(io::Cursor::new(bytes.clone())), blame: local(digest.to_string()) })
            }
            Origin::Staged(path) | Origin::Cached { path, .. } => file(path),
            Origin::Store { store, path } => {
                let (reader, _) = store.open(path)?;
                Ok(Opened { reader, blame: local(store.place(path)) })
            }
            Origin::Registry { client, repo } => {
                let reader = client.open_blob(repo, digest, size, 0)?;
                let place = format!("{}/{repo}@{digest}", client.registry());
                Ok(Opened { reader, blame: Blame { place, registry: true } })
            }
        }
    }
}

/// A blob and where its bytes are.
#[derive(Clone)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub origin: Origin,
}

impl Blob {
    /// Opens the blob's bytes from their start (not verified here: wrap them in a
    /// [`crate::digest::VerifyingReader`]).
    pub fn open(&self) -> Result<Opened<'_>> {
        self.origin.open(&self.descriptor.digest, self.descriptor.size)
    }

    /// The blob's bytes, if they are already in memory (manifests, configs).
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.origin {
            Origin::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }
}

/// Where reading a source puts what it finds: the plan's collection, which the source layer does
/// not otherwise know.
pub trait Found {
    /// A blob an image uses, and where its bytes are; a digest already held keeps its origin.
    fn add_blob(&mut self, descriptor: Descriptor, origin: Origin);
    /// A named image, once its blobs are added.
    fn add_image(&mut self, image: Image) -> Result<()>;
    /// Something a user should know about what was read, though nothing failed.
    fn notice(&mut self, msg: String);
    /// Layers held compressed, by their uncompressed digest (`diff_id`), so that a legacy
    /// `docker save` of the same layer can reuse them instead of compressing it again.
    fn compressed_layers(&mut self) -> &mut HashMap<Digest, Blob>;
}

/// One named image to put in the bundle.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: Reference,
    /// The manifest or index the name points at.
    pub root: Descriptor,
    pub platforms: Vec<Platform>,
    /// The index digest before `--platform` filtering, when it was filtered.
    pub filtered_from: Option<Digest>,
    /// Every blob the image uses (manifests, configs, layers), each once, in walk order.
    pub blobs: Vec<Digest>,
    /// The source it came from, for messages.
    pub source: String,
    /// Signatures, SBOMs and referrers found attached to its digests, parents before children.
    pub attachments: Vec<Attachment>,
}

/// What `create` reads sources with.
#[derive(Clone)]
pub struct ReadOptions {
    /// Keep only these platforms of multi-platform images (empty: keep all).
    pub platforms: Vec<Platform>,
    /// Take the requested platforms an image has instead of failing on one it lacks.
    pub skip_missing_platforms: bool,
    pub registries: Arc<registry::Registries>,
    /// Which attachments to carry.
    pub attachments: Selection,
}

/// Reads one source, handing what it finds to `out`.
pub fn read(spec: &SourceSpec, opts: &ReadOptions, stager: &Stager, out: &mut dyn Found) -> Result<()> {
    let own;
    let opts = if spec.platforms.is_empty() {
        opts
    } else {
        own = ReadOptions { platforms: spec.platforms.clone(), ..opts.clone() };
        &own
    };
    match &spec.location {
        Location::Local { transport, path, .. } => match transport {
            Transport::Oci => oci::read(spec, Arc::new(DirStore::open(path)?), opts, out),
            Transport::OciArchive => oci::read(spec, Arc::new(TarStore::open(path)?), opts, out),
            _ => docker_archive::read(spec, Arc::new(TarStore::open(path)?), opts, stager, out),
        },
        Location::Registry(r) => registry::read(spec, r, opts, out),
        Location::Daemon(r) => read_daemon(spec, r, opts, stager, out),
    }
}

/// `docker-daemon:REF`: the daemon's `docker save` of the image, streamed to a temporary file
/// in the staging directory, then read like any docker-archive (by the spec's [`SourceSpec::name`]
/// and [`SourceSpec::selector`], which name the daemon's image).
fn read_daemon(
    spec: &SourceSpec,
    r: &Reference,
    opts: &ReadOptions,
    stager: &Stager,
    out: &mut dyn Found,
) -> Result<()> {
    let host = crate::daemon::DockerHost::from_env()?;
    let mut file = stager.temp_file()?;
    let name = if r.digest().is_some() { r.to_string() } else { r.familiar() };
    crate::daemon::save(&host, std::slice::from_ref(&name), file.as_file_mut())?;
    // Blobs kept byte-for-byte are read from the file when the bundle is written, so it must
    // outlive this function: it stays in the staging directory and goes with it.
    let (_, path) = file.keep().map_err(|e| Error::io(spec.to_string(), e.error))?;
    // Messages name the daemon's image, not the temporary file.
    let store: Arc<dyn Store> = Arc::new(TarStore::open_as(&path, spec.to_string())?);
    docker_archive::read(spec, store, opts, stager, out)
}

/// A nameless image needs `=NAME`; this says so with the exact syntax.
pub(crate) fn needs_name(spec: &SourceSpec, what: &str) -> Error {
    Error::bad(
        spec.to_string(),
        format!("{what} has no image name; name it on the command line as `{spec}=REGISTRY/REPOSITORY:TAG`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse_like_skopeo() {
        let s = SourceSpec::parse("oci:./layout:web-1.4").unwrap();
        let want =
            Location::Local { transport: Transport::Oci, path: "./layout".into(), selector: Some("web-1.4".into()) };
        assert_eq!(s.location, want);
        let s = SourceSpec::parse("oci-archive:t.tar:registry.example:5000/a/b:1=reg.io/x:2").unwrap();
        assert_eq!(s.selector().as_deref(), Some("registry.example:5000/a/b:1"));
        assert_eq!(s.name.unwrap().to_string(), "reg.io/x:2");
        let s = SourceSpec::parse("docker://nginx").unwrap();
        assert_eq!(s.location, Location::Registry(Reference::parse("docker.io/library/nginx:latest").unwrap()));
        let s = SourceSpec::parse("registry.example:5000/team/api:1.4").unwrap();
        assert_eq!(s.transport(), Transport::Registry, "a bare reference that is no file is a registry source");
        let s = SourceSpec::parse("docker-daemon:busybox:1.36").unwrap();
        assert_eq!(s.name().map(ToString::to_string).as_deref(), Some("docker.io/library/busybox:1.36"));
        assert_eq!(s.to_string(), "docker-daemon:docker.io/library/busybox:1.36");
        assert!(SourceSpec::parse("docker:nginx").is_err());
        assert!(SourceSpec::parse("missing-file.tar").is_err(), "a file name is not taken for a reference");
    }

    #[test]
    fn a_misspelt_transport_is_named_with_the_one_meant() {
        let why = |text: &str| SourceSpec::parse(text).unwrap_err().to_string();
        assert!(why("dockr://nginx:1.27").contains("did you mean `docker://`?"), "{}", why("dockr://nginx:1.27"));
        assert!(why("oci-archvie:t.tar").contains("did you mean `oci-archive:`?"));
        assert!(why("docker-archiv:t.tar").contains("did you mean `docker-archive:`?"));
        assert!(why("containers-storage:nginx").contains("podman save"), "not a registry reference");
        assert!(why("NGINX:1.27").contains("not an image reference"));
        assert!(why("docker-archive://nowhere.tar").contains("docker-archive:nowhere.tar"));
    }
}
