//! The scalar rules where Rust's float methods and PyTorch disagree on NaN, written once for
//! every backend and reference that must follow PyTorch: `v.max(0.0)` and `f32::max` skip a
//! NaN, while PyTorch's ReLU, max-pool and max reductions carry it on.
//!
//! ```
//! use mep_tensor::float::{max_nan, relu};
//! assert_eq!(relu(-2.0f32), 0.0);
//! assert!(relu(f64::NAN).is_nan());
//! let m = [1.0f32, f32::NAN, 3.0].into_iter().fold(f32::NEG_INFINITY, max_nan);
//! assert!(m.is_nan());
//! ```

/// PyTorch's ReLU (and a clamp at 0 that keeps NaN): 0 below zero, `v` otherwise.
#[inline]
pub fn relu<T: PartialOrd + Default + Copy>(v: T) -> T {
    if v < T::default() {
        T::default()
    } else {
        v
    }
}

/// One step of a running maximum as PyTorch scans: a larger value or a NaN takes over.
#[inline]
pub fn max_nan<T: PartialOrd + Copy>(m: T, v: T) -> T {
    // `partial_cmp` of a value with itself fails only for NaN.
    if v > m || v.partial_cmp(&v).is_none() {
        v
    } else {
        m
    }
}
