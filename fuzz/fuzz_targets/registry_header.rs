//! `cargo fuzz run registry_header`: see airlock::fuzz::registry_header for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::registry_header(data));
