#![no_main]
//! `cargo fuzz run pairs_file`: see `mep_fuzz::pairs_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::pairs_file(data));
