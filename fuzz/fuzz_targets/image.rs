#![no_main]
//! `cargo fuzz run image`: see `mep_fuzz::image`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::image(data));
