#![no_main]
//! `cargo fuzz run checkpoint`: see `mep_fuzz::checkpoint`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::checkpoint(data));
