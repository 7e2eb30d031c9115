//! airlock carries container images into air-gapped networks: it packs images from local archives
//! and registries into one signed, deduplicated bundle that is at once an OCI image layout and a
//! `docker load` tarball, verifies such bundles offline, and pushes, loads or exports them.
//!
//! The data flows source → plan (images, blobs, dedup) → bundle writer (hash on the fly) →
//! bundle reader (streaming verification) → sink. The modules are layered the same way, and a
//! module imports only from its own layer or the layers below it (scripts/check-layers.sh):
//!
//! | layer | modules |
//! |---|---|
//! | operations, what the binary calls | [`ops`] |
//! | sinks, where a verified bundle goes | [`sink`], [`serve`], [`state`] |
//! | the bundle | [`bundle`] |
//! | the plan of a bundle | [`plan`] |
//! | sources, where images come from | [`source`] |
//! | peers | [`registry`], [`daemon`] |
//! | model and primitives | [`attachments`], [`cosign`](mod@cosign), [`digest`], [`reference`](mod@reference), [`image`], [`json`], [`error`], [`archive`], [`atomic`], [`cleanup`], [`local_file`], [`walk`], [`layers`], [`hash_pool`], [`transfer`], [`progress`] |

// operations
pub mod ops;

// sinks
pub mod serve;
pub mod sink;
pub mod state;

// the bundle
pub mod bundle;

// the plan
pub mod plan;

// sources
pub mod source;

// peers
pub mod daemon;
pub mod registry;

// model and primitives
pub mod archive;
pub mod atomic;
pub mod attachments;
pub mod cleanup;
pub mod cosign;
pub mod digest;
pub mod error;
pub mod hash_pool;
pub mod image;
pub mod json;
pub mod layers;
pub mod local_file;
pub mod progress;
pub mod reference;
pub mod transfer;
pub mod volume;
pub mod walk;

#[doc(hidden)]
pub mod fuzz;
