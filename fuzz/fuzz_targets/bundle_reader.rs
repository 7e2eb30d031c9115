//! `cargo fuzz run bundle_reader`: see airlock::fuzz::bundle_reader for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::bundle_reader(data));
