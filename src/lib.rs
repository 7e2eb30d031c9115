//! airlock carries container images into air-gapped networks: it packs images from local archives
//! into one signed, deduplicated bundle that is at once an OCI image layout and a `docker load`
//! tarball, and verifies such bundles offline.
//!
//! The data flows source → collection (images, blobs, dedup) → bundle writer (hash on the fly) →
//! bundle reader (streaming verification).

pub mod archive;
pub mod atomic;
pub mod bundle;
pub mod cleanup;
pub mod create;
pub mod daemon;
pub mod digest;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod hash_pool;
pub mod image;
pub mod image_list;
pub mod json;
pub mod layers;
pub mod local_file;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod sink;
pub mod source;
pub mod state;
pub mod transfer;
pub mod walk;
