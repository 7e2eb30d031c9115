//! airlock's integration tests: each drives the real binary in a temporary directory, the way an
//! operator would, and checks what they would see (exit code, message, files, what real docker,
//! podman, containerd, skopeo and minisign make of the result).

mod attachments;
mod big_layer;
mod big_save;
mod cache;
mod check_layers;
mod cli;
mod common;
mod create;
mod daemon_source;
mod deltas;
mod discovery;
mod docker26;
mod fakes;
mod full_disk;
mod fuzz_corpus;
mod hostile;
mod hostile_daemon;
mod hostile_files;
mod hostile_serve;
mod hostile_text;
mod inputs;
mod interop;
mod interrupt;
mod layering;
mod odd_values;
mod progress;
mod push;
mod push_pipeline;
mod registry;
mod registry_source;
mod serve;
mod signed_lies;
mod sinks;
mod sync;
mod verify;
mod volumes;
