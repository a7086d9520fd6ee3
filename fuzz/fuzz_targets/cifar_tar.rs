#![no_main]
//! `cargo fuzz run cifar_tar`: see `mep_fuzz::cifar_tar`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mep_fuzz::cifar_tar(data));
