#![doc = include_str!("../README.md")]

pub mod config;
mod decoder;
mod error;
mod layers;

pub use config::{DecoderConfig, Source, TrainHyper};
pub use decoder::{mse_loss, Decoder, DecoderBlock, Mode, Tape};
pub use error::{DecoderError, Result};
pub use layers::ConvTranspose2d;
