//! `cargo fuzz run image`: see airlock::fuzz::image for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::image(data));
