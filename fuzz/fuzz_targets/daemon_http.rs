//! `cargo fuzz run daemon_http`: see airlock::fuzz::daemon_http for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::daemon_http(data));
