//! `cargo fuzz run part_list`: see airlock::fuzz::part_list for what it reaches.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock::fuzz::part_list(data));
