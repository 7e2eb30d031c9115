//! Every layer of a bundle against its `diff_id` (`create --check-layers`, `verify
//! --check-layers`): the distinct layers of every image manifest, each decompressed and hashed by
//! [`crate::layers::check_layer`], in parallel. Artifacts (non-image configs, `artifactType`)
//! carry no `diff_ids` and are left alone.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::Item;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Descriptor, Parsed};
use crate::json;
use crate::layers::check_layer;

/// What a check covered.
#[derive(Debug, Default)]
pub struct Checked {
    pub layers: usize,
    /// Uncompressed bytes hashed.
    pub bytes: u64,
}

/// One layer to check: its descriptor and the `diff_id` its config gives it.
struct Layer {
    desc: Descriptor,
    diff_id: Digest,
    /// The config that names the `diff_id`, for messages.
    config: Digest,
}

/// Checks every image layer of an opened bundle against its `diff_id`, in parallel.
pub fn check_bundle(bundle: &IndexedBundle) -> Result<Checked> {
    let layers = image_layers(bundle)?;
    let sizes = layers
        .par_iter()
        .map(|l| {
            let at = format!("{}: layer {} (of config {})", bundle.place(), l.desc.digest, l.config);
            check_layer(bundle.open_blob(&l.desc.digest)?, &l.desc, &l.diff_id, &at)
        })
        .collect::<Result<Vec<u64>>>()?;
    Ok(Checked { layers: sizes.len(), bytes: sizes.iter().sum() })
}

/// Every distinct layer of every image manifest in the bundle, with its `diff_id`.
fn image_layers(bundle: &IndexedBundle) -> Result<Vec<Layer>> {
    let mut layers: BTreeMap<Digest, Layer> = BTreeMap::new();
    for b in &bundle.index().blobs {
        if !Item::Blob(b).is_manifest() || !image::is_manifest_type(&b.media_type) || b.size > json::MAX_JSON_BYTES {
            continue;
        }
        let at = |d: &Digest| format!("{}: manifest {d}", bundle.place());
        let bytes = bundle.read_small(&b.digest)?;
        let Parsed::Manifest(m) =
            image::parse_manifest(&bytes, &b.media_type).map_err(|e| Error::integrity(at(&b.digest), e))?
        else {
            continue;
        };
        // A delta checks the layers it carries, of the configs it carries; its bases hold the rest.
        if !m.is_image() || !bundle.carries(&m.config.digest) {
            continue;
        }
        let cfg = image::parse_config(&bundle.read_small(&m.config.digest)?)
            .map_err(|e| Error::integrity(format!("{}: config {}", bundle.place(), m.config.digest), e))?;
        if cfg.rootfs.diff_ids.len() != m.layers.len() {
            let msg = format!("{} layers, but its config has {} diff_ids", m.layers.len(), cfg.rootfs.diff_ids.len());
            return Err(Error::integrity(at(&b.digest), msg));
        }
        for (desc, diff_id) in m.layers.into_iter().zip(cfg.rootfs.diff_ids) {
            if !bundle.carries(&desc.digest) {
                continue;
            }
            let config = m.config.digest.clone();
            layers.entry(desc.digest.clone()).or_insert(Layer { desc, diff_id, config });
        }
    }
    Ok(layers.into_values().collect())
}
