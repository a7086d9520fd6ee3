#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod checksum;
mod error;
mod fetch;
mod manifest;

pub use checksum::{verify, Algorithm, Checksum};
pub use error::FetchError;
pub use fetch::{cache_dir, fetch, FetchOptions};
pub use manifest::{Entry, Manifest};
