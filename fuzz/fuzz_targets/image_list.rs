//! `cargo fuzz run image_list`: see airlock::fuzz::image_list for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::image_list(data));
