//! `cargo fuzz run minisign`: see airlock::fuzz::minisign for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::minisign(data));
