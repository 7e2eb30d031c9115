//! `cargo fuzz run tar_store`: see airlock::fuzz::tar_store for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::tar_store(data));
