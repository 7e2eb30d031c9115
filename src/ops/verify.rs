//! The `verify` operation: the signature first, then every blob and file, streamed; optionally
//! every layer decompressed against its `diff_id`. A bundle file is read at many places at once,
//! so every blob hashes on its own core; stdin is read once, front to back.

use std::path::PathBuf;
use std::sync::Arc;

use crate::bundle::bases::{self, Given, StateChecked};
use crate::bundle::indexed::IndexedBundle;
use crate::bundle::layers::{self, Checked};
use crate::bundle::reader::{self, Report, Trust};
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
}

/// What was checked.
pub struct Verified {
    pub report: Report,
    /// What the layer check covered, when it ran.
    pub layers: Option<Checked>,
    /// What `bases` established, when given.
    pub bases: Option<StateChecked>,
}

pub fn verify(opts: &VerifyOptions, ui: &Arc<dyn Ui>) -> Result<Verified> {
    let key = super::load_public_key(opts.public_key.as_deref())?;
    let (report, layers) = verify_bundle(opts, super::trust(&key), ui)?;
    let bases = check_bases(opts, super::trust(&key), &report, ui)?;
    Ok(Verified { report, layers, bases })
}

fn verify_bundle(opts: &VerifyOptions, trust: Trust<'_>, ui: &Arc<dyn Ui>) -> Result<(Report, Option<Checked>)> {
    let source = super::open_source(&opts.bundle, &trust)?;
    if let Source::Volumes(volumes) = &source {
        // Files can be read at many places at once: every blob hashes on its own core.
        let checked = check_files(Arc::clone(volumes), trust, opts.check_layers, ui);
        return checked.map_err(|e| volumes.explain(e));
    }
    if opts.check_layers {
        let msg = "needs a bundle file, not stdin or a pipe: layers are read in parallel, after every blob verified";
        return Err(Error::bad("--check-layers", msg));
    }
    let (src, place) = super::stream_shown(&source, &**ui)?;
    let report = reader::read(src, &place, trust, &mut |_| Ok(()), &mut |_, _| Ok(()))?;
    Ok((report, None))
}

fn check_files(
    volumes: Arc<Volumes>,
    trust: Trust<'_>,
    check_layers: bool,
    ui: &Arc<dyn Ui>,
) -> Result<(Report, Option<Checked>)> {
    let mut bundle = IndexedBundle::open(volumes, trust)?;
    bundle.check_contents(&**ui)?;
    let layers = if check_layers { Some(layers::check_bundle(&bundle)?) } else { None };
    Ok((bundle.into_report(), layers))
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
