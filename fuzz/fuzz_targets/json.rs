//! `cargo fuzz run json`: see airlock::fuzz::json for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::json(data));
