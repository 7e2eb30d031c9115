//! `cargo fuzz run index_file`: see airlock::fuzz::index_file for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::index_file(data));
