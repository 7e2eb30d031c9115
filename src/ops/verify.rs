//! The `verify` operation: the signature first, then every blob and file, streamed; optionally
//! every layer decompressed against its `diff_id`. A bundle file is read at many places at once,
//! so every blob hashes on its own core; stdin is read once, front to back.

use std::path::PathBuf;
use std::sync::Arc;

use crate::bundle::bases::{self, Given, StateChecked};
use crate::bundle::cosign;
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::layers::{self, Checked};
use crate::bundle::reader::{self, Report, Trust};
use crate::cosign::PublicKey;
use crate::error::{Error, Result};
use crate::ops::Ui;
use crate::volume::input::{Source, Volumes};

pub struct VerifyOptions {
    /// The bundle: a file, a split bundle's parts, a pipe, or `-` for stdin.
    pub bundle: Vec<PathBuf>,
    /// The public key the bundle must be signed with; `None` checks no signature.
    pub public_key: Option<PathBuf>,
    /// Also decompress every layer and check it against its config's `diff_id` (a file only).
    pub check_layers: bool,
    /// For a delta: base bundles holding blobs it leaves out; then every blob it relies on is
    /// checked in them.
    pub bases: Vec<PathBuf>,
    /// `--cosign-key`: every image must carry a cosign signature by one of these keys (a file
    /// only).
    pub cosign_keys: Vec<PathBuf>,
}

/// What was checked.
pub struct Verified {
    pub report: Report,
    /// What the layer check covered, when it ran.
    pub layers: Option<Checked>,
    /// What `bases` established, when given.
    pub bases: Option<StateChecked>,
    /// With `cosign_keys`: the key that signed each image, in the index's order.
    pub signers: Vec<String>,
}

/// What a bundle file's check established beyond its report.
struct Extra {
    layers: Option<Checked>,
    signers: Vec<String>,
}

pub fn verify(opts: &VerifyOptions, ui: &Arc<dyn Ui>) -> Result<Verified> {
    let key = super::load_public_key(opts.public_key.as_deref())?;
    let cosign_keys = super::load_cosign_keys(&opts.cosign_keys)?;
    let (report, extra) = verify_bundle(opts, super::trust(&key), &cosign_keys, ui)?;
    let bases = check_bases(opts, super::trust(&key), &report, ui)?;
    Ok(Verified { report, layers: extra.layers, bases, signers: extra.signers })
}

fn verify_bundle(
    opts: &VerifyOptions,
    trust: Trust<'_>,
    cosign_keys: &[PublicKey],
    ui: &Arc<dyn Ui>,
) -> Result<(Report, Extra)> {
    let source = super::open_source(&opts.bundle, &trust)?;
    if let Source::Volumes(volumes) = &source {
        // Files can be read at many places at once: every blob hashes on its own core.
        let checked = check_files(Arc::clone(volumes), trust, opts.check_layers, cosign_keys, ui);
        return checked.map_err(|e| volumes.explain(e));
    }
    let file_only = [
        (opts.check_layers, "--check-layers", "layers are read in parallel, after every blob verified"),
        (!cosign_keys.is_empty(), "--cosign-key", "signatures are read after every blob verified"),
    ];
    if let Some((_, flag, why)) = file_only.iter().find(|(given, _, _)| *given) {
        return Err(Error::bad(*flag, format!("needs a bundle file, not stdin or a pipe: {why}")));
    }
    let (src, place) = super::stream_shown(&source, &**ui)?;
    let report = reader::read(src, &place, trust, &mut |_| Ok(()), &mut |_, _| Ok(()))?;
    Ok((report, Extra { layers: None, signers: Vec::new() }))
}

fn check_files(
    volumes: Arc<Volumes>,
    trust: Trust<'_>,
    check_layers: bool,
    cosign_keys: &[PublicKey],
    ui: &Arc<dyn Ui>,
) -> Result<(Report, Extra)> {
    let mut bundle = IndexedBundle::open(volumes, trust)?;
    bundle.check_contents(&**ui)?;
    let layers = if check_layers { Some(layers::check_bundle(&bundle)?) } else { None };
    let signers = match cosign_keys {
        [] => Vec::new(),
        keys => cosign::check(bundle.index(), keys, &|d| bundle.read_small(d), bundle.place())?,
    };
    Ok((bundle.into_report(), Extra { layers, signers }))
}

/// With bases: the whole state the delta lists is at hand.
fn check_bases(opts: &VerifyOptions, trust: Trust<'_>, r: &Report, ui: &Arc<dyn Ui>) -> Result<Option<StateChecked>> {
    if opts.bases.is_empty() {
        return Ok(None);
    }
    let given = Given::open(&opts.bases, trust, &r.index)?;
    let place = super::bundle_place(&opts.bundle);
    Ok(Some(bases::check_state(&given, &r.index, &place, &**ui)?))
}
