#![no_main]
//! `cargo fuzz run manifest`: see `mep_fuzz::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::manifest(data));
