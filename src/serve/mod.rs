//! `airlock serve`: verified bundles served in place as a read-only OCI registry, for hosts and
//! clusters that pull from a registry but have none.
//!
//! [`open`] verifies each bundle (signature, headers, manifests, every blob) before anything
//! listens, then keeps one open file per bundle; [`content`] maps repositories, tags and blobs onto
//! (bundle, offset); [`routes`] parses the distribution API's URLs; [`api`] answers them; [`body`]
//! streams blobs from the files, hashing what it sends whole; [`server`] runs the connections.

pub mod api;
pub mod body;
pub mod content;
pub mod routes;
pub mod server;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use crate::bundle::indexed::IndexedBundle;
use crate::bundle::reader::Trust;
use crate::error::{Error, IoContext, Result};
use crate::progress::Observer;
use crate::serve::api::{BundleFile, Bundles};
use crate::serve::content::{Content, Naming};

/// Which bundles to serve and how.
pub struct Options<'a> {
    pub bundles: Vec<PathBuf>,
    pub trust: Trust<'a>,
    pub naming: Naming,
}

/// The verified bundles, ready to serve, and what opening them established.
pub struct Opened {
    pub bundles: Bundles,
    /// Each bundle's signed index and how it was verified, in sequence order.
    pub reports: Vec<IndexedBundle>,
}

/// Verifies every bundle and opens it for serving: nothing listens before all of them hold.
pub fn open(opts: &Options<'_>, observer: &dyn Observer) -> Result<Opened> {
    let mut opened = Vec::new();
    for path in &opts.bundles {
        let mut bundle = IndexedBundle::open(path, opts.trust)?;
        bundle.check_contents(observer)?;
        let file = fs_err::File::open(path).at(|| path.display().to_string())?.into_file();
        opened.push((bundle, file));
    }
    // Sequence order decides which bundle's tag wins; a stable sort keeps the command line's order
    // among equals.
    opened.sort_by_key(|(b, _)| b.index().sequence.unwrap_or(0));
    let mut content = Content::new(opts.naming);
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for (n, (bundle, file)) in opened.into_iter().enumerate() {
        content.add(n, &bundle);
        files.push(BundleFile { file: Arc::new(file), place: bundle.place().to_owned() });
        reports.push(bundle);
    }
    if let Some(d) = content.missing().into_iter().next() {
        return Err(Error::integrity(
            reports.iter().map(|b| b.place()).collect::<Vec<_>>().join(", "),
            format!(
                "blob {d} is used by an image but carried by none of the bundles given (a delta without its base?)"
            ),
        ));
    }
    Ok(Opened { bundles: Bundles { content, files }, reports })
}
