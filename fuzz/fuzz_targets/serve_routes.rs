//! `cargo fuzz run serve_routes`: see airlock::fuzz::serve_routes for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::serve_routes(data));
