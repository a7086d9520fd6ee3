#![no_main]
//! `cargo fuzz run certificates`: see `mep_fuzz::certificates`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::certificates(data));
