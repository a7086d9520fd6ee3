//! Code the test files of mep-resnet (and mep-decoder's golden tests) share.
pub mod golden;
