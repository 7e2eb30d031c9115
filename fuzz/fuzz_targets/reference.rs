//! `cargo fuzz run reference`: see airlock::fuzz::reference for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::reference(data));
