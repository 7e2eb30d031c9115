//! The plan of a bundle: every image to carry and every blob they use, each blob once, with
//! where its bytes are. Reading the sources fills a [`Collection`]; the bundle writer lays it out
//! and copies each [`Blob`] from its origin. Knowing the whole plan before the first blob byte
//! moves is what lets the writer place every blob at once.
//!
//! The sources fill the plan through [`source::Found`], so they know nothing of this layer;
//! the `--cache` directory ([`cache`]) re-points registry blobs at verified local copies.

pub mod cache;

use std::collections::{BTreeMap, HashMap};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Descriptor;
use crate::reference::Reference;
use crate::source::stage::Stager;
use crate::source::{self, ReadOptions, SourceSpec, Transport};
use crate::transfer::Pool;

pub use crate::source::{Blob, FileStamp, Found, Image, Opened, Origin};

/// Every image and blob read so far; each blob is held once.
#[derive(Default)]
pub struct Collection {
    pub images: Vec<Image>,
    pub blobs: BTreeMap<Digest, Blob>,
    /// Layers seen in sources that carry them compressed, by uncompressed digest (`diff_id`), so a
    /// legacy `docker save` of the same layer can reuse them instead of compressing it again.
    pub by_diff_id: HashMap<Digest, Blob>,
    /// What a user should know about what was read, though nothing failed (platforms left out).
    pub notices: Vec<String>,
    /// Where each name is in `images`: a source may name thousands of images, and looking each
    /// new one up in the list made reading them quadratic.
    named: HashMap<Reference, usize>,
}

impl Found for Collection {
    fn add_blob(&mut self, descriptor: Descriptor, origin: Origin) {
        if self.blobs.contains_key(&descriptor.digest) {
            return;
        }
        let d = Descriptor::new(&descriptor.media_type, descriptor.digest.clone(), descriptor.size);
        self.blobs.insert(descriptor.digest, Blob { descriptor: d, origin });
    }

    fn add_image(&mut self, image: Image) -> Result<()> {
        // A digest pin is a promise about content: it must be the image's digest (or, for an index
        // that --platform filtered, the original index's).
        if let Some(pin) = image.name.digest()
            && *pin != image.root.digest
            && image.filtered_from.as_ref() != Some(pin)
        {
            let msg = format!("is pinned to {pin}, but the image's digest is {}", image.root.digest);
            return Err(Error::bad(format!("image {}", image.name), msg));
        }
        if let Some(prev) = self.named.get(&image.name).map(|&i| &self.images[i]) {
            if prev.root.digest != image.root.digest {
                return Err(Error::bad(
                    format!("image {}", image.name),
                    format!(
                        "named twice with different content: {} from {} and {} from {}",
                        prev.root.digest, prev.source, image.root.digest, image.source
                    ),
                ));
            }
            return Ok(());
        }
        self.named.insert(image.name.clone(), self.images.len());
        self.images.push(image);
        Ok(())
    }

    fn notice(&mut self, msg: String) {
        self.notices.push(msg);
    }

    fn compressed_layers(&mut self) -> &mut HashMap<Digest, Blob> {
        &mut self.by_diff_id
    }
}

impl Collection {
    /// Adds what another collection read; what this one holds already wins.
    pub fn merge(&mut self, other: Collection) -> Result<()> {
        for (_, blob) in other.blobs {
            self.add_blob(blob.descriptor, blob.origin);
        }
        for (diff_id, blob) in other.by_diff_id {
            self.by_diff_id.entry(diff_id).or_insert(blob);
        }
        other.images.into_iter().try_for_each(|image| self.add_image(image))
    }
}

/// Reads every source into one collection. Registry sources are resolved at once on the pool
/// (each into a collection of its own, merged in the order given, so the result does not depend
/// on which answered first); sources that carry compressed layers come before legacy
/// `docker save` archives, so these can reuse those layers.
pub fn read_all(specs: &[SourceSpec], opts: &ReadOptions, stager: &Stager, pool: &Pool) -> Result<Collection> {
    let remote: Vec<&SourceSpec> = specs.iter().filter(|s| s.transport() == Transport::Registry).collect();
    let mut resolved = pool
        .try_map(&remote, |spec| {
            let mut own = Collection::default();
            source::read(spec, opts, stager, &mut own)?;
            Ok(own)
        })?
        .into_iter();
    let (legacy, compressed): (Vec<&SourceSpec>, Vec<&SourceSpec>) =
        specs.iter().partition(|s| s.transport() == Transport::DockerArchive);
    let mut coll = Collection::default();
    for spec in compressed.into_iter().chain(legacy) {
        match spec.transport() {
            Transport::Registry => coll.merge(resolved.next().expect("one collection per registry source"))?,
            _ => source::read(spec, opts, stager, &mut coll)?,
        }
    }
    Ok(coll)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, digest: &Digest) -> Image {
        Image {
            name: Reference::parse(name).unwrap(),
            root: Descriptor::new(crate::image::OCI_MANIFEST, digest.clone(), 2),
            platforms: Vec::new(),
            filtered_from: None,
            blobs: Vec::new(),
            source: "test".into(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_name_is_taken_once_and_tens_of_thousands_of_names_in_linear_time() {
        let (a, b) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"));
        let mut coll = Collection::default();
        coll.add_image(image("example.com/t/a:0", &a)).unwrap();
        coll.add_image(image("example.com/t/a:0", &a)).unwrap();
        let e = coll.add_image(image("example.com/t/a:0", &b)).unwrap_err();
        assert!(e.to_string().contains("named twice with different content"), "{e}");
        // One index.json of 4 MiB names about 17 000 images; several sources, more. Looked up in a
        // list, 50 000 names took 90 s in a debug build; by hash, a fraction of a second.
        let names: Vec<Image> = (0..50_000).map(|i| image(&format!("example.com/t/a:{i}"), &a)).collect();
        let start = std::time::Instant::now();
        names.into_iter().try_for_each(|i| coll.add_image(i)).unwrap();
        assert_eq!(coll.images.len(), 50_000);
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "took {:?}", start.elapsed());
    }
}
