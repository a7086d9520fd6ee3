#![no_main]
//! `cargo fuzz run results`: see `mep_fuzz::results`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::results(data));
