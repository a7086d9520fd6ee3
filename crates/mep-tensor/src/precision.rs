//! The arithmetic a backend's convolutions and linear layers run in: fp32, or tensor-core
//! TF32 / bf16 with fp32 accumulation. One rule for every backend, so that the CPU, the
//! emulated kernels and an H200 round the same operands the same way:
//!
//! - [`Precision::Fp32`]: IEEE f32 throughout (the default).
//! - [`Precision::Tf32`]: each GEMM operand (input and weight of a forward; the output gradient
//!   and the weight or input of a backward) is rounded to TF32 with [`round_tf32`] (PTX
//!   `cvt.rna.tf32.f32`); products are summed in f32; the result is f32. PyTorch's
//!   `allow_tf32 = True`.
//! - [`Precision::Bf16`]: PyTorch autocast. The operands are rounded to bf16 with
//!   [`round_bf16`] (round to nearest even), summed in f32, and the result, its bias added,
//!   is rounded to bf16, as autocast stores a convolution's output; a residual and an
//!   activation fused into the op follow in f32. Batch norm, activations, pooling, softmax,
//!   cross-entropy, reductions and the optimiser stay f32, on f32 master weights. A weight
//!   gradient is rounded once, after all its partial sums; a bias gradient stays f32.
//!
//! Only the order of the f32 sums may differ between backends (a tensor core adds in its own
//! order); the rounded operands are bit-identical.
//!
//! ```
//! use mep_tensor::precision::{round_bf16, round_tf32, Precision};
//! assert_eq!("tf32".parse::<Precision>().unwrap(), Precision::Tf32);
//! assert_eq!(round_tf32(1.0 + 2f32.powi(-11)), 1.0 + 2f32.powi(-10)); // a tie, away from zero
//! assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0); // a tie, to even
//! ```

use std::fmt;
use std::str::FromStr;

/// The arithmetic of convolutions and linear layers (see the module docs for the rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// IEEE f32.
    #[default]
    Fp32,
    /// TF32 operands (10-bit mantissa), f32 sums and result.
    Tf32,
    /// bf16 operands (7-bit mantissa), f32 sums, bf16 result (autocast).
    Bf16,
}

impl Precision {
    /// Every precision, in the order the CLI lists them.
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Tf32, Precision::Bf16];

    /// The position in [`Precision::ALL`]: how a backend keeps it in an atomic.
    pub fn index(self) -> usize {
        match self {
            Precision::Fp32 => 0,
            Precision::Tf32 => 1,
            Precision::Bf16 => 2,
        }
    }

    /// The name used on the command line and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Rounds one GEMM operand value as this precision does.
    #[inline]
    pub fn round_operand(self, x: f32) -> f32 {
        match self {
            Precision::Fp32 => x,
            Precision::Tf32 => round_tf32(x),
            Precision::Bf16 => round_bf16(x),
        }
    }

    /// Rounds one GEMM result value as this precision stores it (bf16 only).
    #[inline]
    pub fn round_result(self, x: f32) -> f32 {
        match self {
            Precision::Bf16 => round_bf16(x),
            _ => x,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A precision name that is not one of fp32, tf32, bf16.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision `{0}`; expected fp32, tf32 or bf16")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPrecision(s.to_string()))
    }
}

/// `x` rounded to TF32 as PTX `cvt.rna.tf32.f32` does: to the nearest value with a 10-bit
/// mantissa, ties away from zero; the low 13 bits of the result are zero. NaN and ±∞ pass
/// unchanged; a value that rounds past f32::MAX becomes ±∞.
#[inline]
pub fn round_tf32(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    // Sign and magnitude are apart in the bits, so adding half an ulp to the magnitude and
    // truncating rounds ties away from zero; a carry into the exponent is the right result.
    f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
}

/// `x` rounded to bf16 (and back to f32) as `__float2bfloat16_rn` does: to the nearest value
/// with a 7-bit mantissa, ties to even. NaN stays NaN (quiet); ±∞ pass unchanged.
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    if x.is_nan() {
        return f32::from_bits((b | 0x0040_0000) & 0xffff_0000);
    }
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1));
    f32::from_bits(rounded & 0xffff_0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_keeps_ten_mantissa_bits_and_rounds_ties_away_from_zero() {
        let ulp = 2f32.powi(-10);
        assert_eq!(round_tf32(1.0 + ulp), 1.0 + ulp);
        assert_eq!(round_tf32(1.0 + ulp * 0.49), 1.0);
        assert_eq!(round_tf32(1.0 + ulp * 0.5), 1.0 + ulp);
        assert_eq!(round_tf32(-(1.0 + ulp * 0.5)), -(1.0 + ulp));
        assert_eq!(round_tf32(1.0 + ulp * 1.5), 1.0 + 2.0 * ulp);
        assert_eq!(round_tf32(f32::MAX), f32::INFINITY);
        assert!(round_tf32(f32::NAN).is_nan());
        assert_eq!(round_tf32(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert_eq!(round_tf32(0.1).to_bits() & 0x1fff, 0);
    }

    #[test]
    fn bf16_keeps_seven_mantissa_bits_and_rounds_ties_to_even() {
        let ulp = 2f32.powi(-7);
        assert_eq!(round_bf16(1.0 + ulp * 0.5), 1.0);
        assert_eq!(round_bf16(1.0 + ulp * 1.5), 1.0 + 2.0 * ulp);
        assert_eq!(round_bf16(-(1.0 + ulp * 0.51)), -(1.0 + ulp));
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(3.0e38).to_bits() & 0xffff, 0);
    }

    #[test]
    fn names_round_trip_and_a_bad_one_is_named() {
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        let e = "fp16".parse::<Precision>().unwrap_err();
        assert!(e.to_string().contains("`fp16`"), "{e}");
    }
}
