#![no_main]
//! `cargo fuzz run cifar_archive`: see `mep_fuzz::cifar_archive`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::cifar_archive(data));
