//! The `push` operation: verify a bundle, then replay its images into a registry
//! ([`crate::sink::push`]; a delta's absent blobs through [`crate::sink::absent`]). A bundle file
//! is verified in place, several blobs at once; one read from stdin is unpacked into a temporary
//! layout while it is verified.
//!
//! A bundle file's blobs are verified as they are uploaded, not before (a repeat push reads none),
//! so a registry can fail before a damaged blob is read. The damage is what matters: after any
//! other failure the blobs are checked (the bundle's and its `--base` bundles'), and a mismatch is
//! what the push reports (`damage_first`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::bundle::bases::Given;
use crate::bundle::cosign;
use crate::bundle::format::BundleIndex;
use crate::bundle::indexed::IndexedBundle;
use crate::error::{Error, Result};
use crate::ops::import::{ImportOptions, tmp_dir_or_default};
use crate::ops::{Event, Ui};
use crate::registry::{Client, ClientOptions};
use crate::sink::push::{self, PushReport, Target};
use crate::sink::{self, Blobs, Staged, absent, attachments};
use crate::volume::input::Source;

pub struct PushOptions {
    /// The bundle: a file, a split bundle's parts, a pipe, or `-` for stdin.
    pub bundle: Vec<PathBuf>,
    pub import: ImportOptions,
    /// Where images land, as given (`HOST[:PORT][/PREFIX]`).
    pub to: String,
    pub registry: ClientOptions,
    /// Keep the original registry host as the first path component under the prefix.
    pub keep_registry_host: bool,
    /// Say what would be uploaded, and upload nothing.
    pub dry_run: bool,
    /// For a delta: base bundles holding blobs it leaves out that the registry may lack.
    pub bases: Vec<PathBuf>,
    /// Where a bundle read from stdin is unpacked while it is verified.
    pub tmp_dir: Option<PathBuf>,
    /// `--require-cosign-key`: push nothing unless every image carries a cosign signature by one
    /// of these keys.
    pub require_cosign_keys: Vec<PathBuf>,
}

pub fn push(opts: &PushOptions, ui: &Arc<dyn Ui>) -> Result<PushReport> {
    let target = Target::parse(&opts.to)?;
    let client = Client::new(&target.registry, &opts.registry)?;
    let cosign_keys = super::load_cosign_keys(&opts.require_cosign_keys)?;
    let mut import = opts.import.begin(&**ui)?;
    ui.event(Event::Outcome(&format!(
        "blobs and manifests already pushed to {} stay (each was verified; tags are pushed last, so \
         no tag points at anything incomplete); run the push again to send the rest",
        opts.to
    )));
    let staged: Staged;
    let indexed: IndexedBundle;
    let source = super::open_source(&opts.bundle, &import.trust())?;
    let split = match &source {
        Source::Volumes(v) => Some(Arc::clone(v)),
        _ => None,
    };
    let (bundle, report, unread): (&dyn Blobs, _, _) = match source {
        Source::Volumes(volumes) => {
            indexed = IndexedBundle::open(Arc::clone(&volumes), import.trust()).map_err(|e| volumes.explain(e))?;
            (&indexed, indexed.report(), Some(&indexed))
        }
        Source::Stdin if opts.registry.password.is_some() => {
            return Err(Error::bad("--password-stdin", "stdin carries the bundle; give the password another way"));
        }
        stream => {
            let tmp = tmp_dir_or_default(opts.tmp_dir.as_deref());
            let (src, place) = stream.reader()?;
            staged = sink::stage(src, &place, import.trust(), &tmp)?;
            ui.event(Event::Verified { place: &place, report: &staged.report });
            (&staged, &staged.report, None)
        }
    };
    if !cosign_keys.is_empty() {
        let read = |d: &crate::digest::Digest| attachments::read_small(bundle, d);
        cosign::check(bundle.index(), &cosign_keys, &read, &bundle.place())?;
    }
    import.admit(report, &super::bundle_place(&opts.bundle))?;
    let given = Given::open(&opts.bases, import.trust(), bundle.index())?;
    let push_opts = push::PushOptions {
        target,
        keep_host: opts.keep_registry_host,
        dry_run: opts.dry_run,
        observer: ui.clone(),
        held: Default::default(),
    };
    let report = absent::push(bundle, &given, &client, push_opts, &|step, _| ui.event(Event::Step(step)))
        .map_err(|e| damage_first(e, unread, &given, bundle.index(), &**ui))
        .map_err(|e| match &split {
            Some(v) => v.explain(e),
            None => e,
        })?;
    if !opts.dry_run {
        import.record()?;
    }
    Ok(report)
}

/// `err` stopped a push of which only the blobs uploaded were read: those `bundle` (a bundle file)
/// carries, and those the `--base` bundles hold for it. Unless `err` is an integrity error
/// already, checks them all and returns the first mismatch instead, telling `err` as a note: a
/// damaged bundle outranks a registry that failed.
fn damage_first(err: Error, bundle: Option<&IndexedBundle>, given: &Given, index: &BundleIndex, ui: &dyn Ui) -> Error {
    if matches!(err, Error::Integrity { .. }) {
        return err;
    }
    let mut unread = given.by_holder(index);
    if let Some(b) = bundle {
        unread.insert(0, (b, index.blobs.iter().filter(|b| b.is_carried()).map(|b| &b.digest).collect()));
    }
    for (holder, digests) in unread {
        if let Err(damage @ Error::Integrity { .. }) = holder.check_blobs(&digests, ui) {
            ui.event(Event::Note(&format!("before the damage was found, the push had failed: {err}")));
            return damage;
        }
    }
    err
}
