//! Registry sources (`docker://REF`, or a bare reference such as `nginx:1.27`): manifests and
//! indexes are fetched byte-for-byte and walked like any OCI layout; layers are not fetched here
//! but streamed by the bundle writer straight from the registry into the bundle, hashed on the
//! way ([`Client::open_blob`] resumes a download that breaks).

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::image::{self, Descriptor};
use crate::json;
use crate::reference::Reference;
use crate::registry::{Client, ClientOptions};
use crate::source::attachments::{self, Repository};
use crate::source::lookups::Lookups;
use crate::source::oci::{self, Fetch};
use crate::source::{Found, Origin, ReadOptions, SourceSpec};

/// One client per registry host, shared by every source of a run.
pub struct Registries {
    opts: ClientOptions,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    /// What attachment discovery learnt of them, for every image to share.
    lookups: Lookups,
}

impl Registries {
    pub fn new(opts: ClientOptions) -> Self {
        Registries { opts, clients: Mutex::new(HashMap::new()), lookups: Lookups::default() }
    }

    pub fn client(&self, registry: &str) -> Result<Arc<Client>> {
        let mut clients = self.clients.lock().expect("lock");
        if let Some(c) = clients.get(registry) {
            return Ok(c.clone());
        }
        let c = Arc::new(Client::new(registry, &self.opts)?);
        clients.insert(registry.to_owned(), c.clone());
        Ok(c)
    }
}

pub fn read(spec: &SourceSpec, reference: &Reference, opts: &ReadOptions, out: &mut dyn Found) -> Result<()> {
    let client = opts.registries.client(reference.registry())?;
    let repo = reference.repository().to_owned();
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    let (bytes, media_type) = client.get_manifest(&repo, &wanted)?;
    let root = Descriptor::new(&media_type, Digest::of_bytes(&bytes), bytes.len() as u64);
    let fetch = RegistryFetch {
        client: client.clone(),
        repo: repo.clone(),
        cache: Mutex::new(HashMap::from([(root.digest.clone(), Ok(bytes))])),
    };
    let name = spec.name().unwrap_or(reference).clone();
    let (mut image, manifests) = oci::walk(&fetch, &root, name.clone(), spec.to_string(), opts, out)?;
    let at = Repository { client, repo, lookups: &opts.registries.lookups };
    image.attachments = attachments::discover(&at, &name, &manifests, &opts.attachments, out)?;
    out.add_image(image)
}

struct RegistryFetch {
    client: Arc<Client>,
    repo: String,
    /// Blobs fetched ahead (the root, an index's children and their configs), or why not: each
    /// is taken once by `read_small`.
    cache: Mutex<HashMap<Digest, Result<Vec<u8>>>>,
}

impl RegistryFetch {
    fn fetch(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size > json::MAX_JSON_BYTES {
            return Err(Error::bad(
                self.place(&desc.digest),
                format!("{} bytes is too large for a manifest or config", desc.size),
            ));
        }
        if image::is_manifest_type(&desc.media_type) || image::is_index_type(&desc.media_type) {
            // By digest: the client checks the bytes against it.
            let (bytes, _) = self.client.get_manifest(&self.repo, desc.digest.as_str())?;
            return Ok(bytes);
        }
        let r = self.client.open_blob(&self.repo, &desc.digest, desc.size, 0)?;
        let mut buf = Vec::new();
        VerifyingReader::new(r, desc.digest.clone(), desc.size)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(self.place(&desc.digest), e))?;
        Ok(buf)
    }
}

impl Fetch for RegistryFetch {
    fn place(&self, digest: &Digest) -> String {
        format!("{}/{}@{digest}", self.client.registry(), self.repo)
    }

    fn read_small(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let cached = self.cache.lock().unwrap_or_else(PoisonError::into_inner).remove(&desc.digest);
        cached.unwrap_or_else(|| self.fetch(desc))
    }

    fn prefetch(&self, descs: &[&Descriptor]) {
        let todo: Vec<&Descriptor> = {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let mut seen = std::collections::HashSet::new();
            descs.iter().copied().filter(|d| !cache.contains_key(&d.digest) && seen.insert(&d.digest)).collect()
        };
        let got = crate::transfer::map_within(&todo, |d| self.fetch(d));
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        for (d, r) in todo.into_iter().zip(got) {
            cache.insert(d.digest.clone(), r);
        }
    }

    fn layer(&self, _desc: &Descriptor) -> Result<Origin> {
        Ok(Origin::Registry { client: self.client.clone(), repo: self.repo.clone() })
    }
}

/// An error reading a registry blob's body: a mismatch is the content's fault, anything else the
/// connection's.
pub fn read_error(place: &str, e: io::Error) -> Error {
    if crate::digest::Mismatch::from_io(&e).is_some() {
        return Error::io(place, e);
    }
    Error::registry_caused(place, "the download broke off", e)
}
