#![doc = include_str!("../README.md")]

mod launcher;
pub use launcher::{EmuGraph, EmuLauncher, EmuMem};
