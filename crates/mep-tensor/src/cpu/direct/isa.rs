//! The instruction set the direct kernels run with, detected once per process.

use std::sync::OnceLock;

/// The vector instruction sets the direct kernels are compiled for.
///
/// Every variant computes the same bits (see the module docs of [`direct`](super)); they
/// differ only in speed.
///
/// ```
/// use mep_tensor::cpu::direct::Isa;
/// let isa = Isa::current();
/// assert!(Isa::available().contains(&isa));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust with `f32::mul_add`: any target (aarch64 included).
    Portable,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX-512F (only with the crate's `avx512` feature, as for gemm).
    Avx512,
}

/// The environment variable that lowers the detected ISA (benchmarks, tests).
pub const ISA_ENV: &str = "MEP_CPU_ISA";

impl Isa {
    /// What the CPU supports, best first.
    pub fn available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|isa| isa.on_this_cpu())
            .collect()
    }

    /// Whether this build has the kernels for `self` and the CPU runs them.
    fn on_this_cpu(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            // The x86 variants where the build has no kernels for them (aarch64, no `avx512`).
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best available ISA, lowered by `MEP_CPU_ISA` when that names one below it.
    /// An unknown or unavailable name is ignored with a note on stderr (once), not an error:
    /// the results are the same bits whatever it says.
    pub fn current() -> Isa {
        static CURRENT: OnceLock<Isa> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let avail = Isa::available();
            let best = avail[0];
            match std::env::var(ISA_ENV) {
                Ok(name) => match name.parse::<Isa>() {
                    Ok(asked) if avail.contains(&asked) => asked,
                    Ok(asked) => {
                        eprintln!("note: {ISA_ENV}={name}: this CPU lacks {asked:?}; using {best:?}");
                        best
                    }
                    Err(()) => {
                        eprintln!("note: {ISA_ENV}={name} is not avx512, avx2 or portable; using {best:?}");
                        best
                    }
                },
                Err(_) => best,
            }
        })
    }
}

impl std::str::FromStr for Isa {
    type Err = ();
    fn from_str(s: &str) -> Result<Isa, ()> {
        match s.to_ascii_lowercase().as_str() {
            "avx512" => Ok(Isa::Avx512),
            "avx2" => Ok(Isa::Avx2),
            "portable" => Ok(Isa::Portable),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_is_always_available_and_names_parse() {
        assert!(Isa::available().contains(&Isa::Portable));
        for (name, isa) in [
            ("avx512", Isa::Avx512),
            ("AVX2", Isa::Avx2),
            ("portable", Isa::Portable),
        ] {
            assert_eq!(name.parse::<Isa>(), Ok(isa));
        }
        assert!("sse".parse::<Isa>().is_err());
    }
}
