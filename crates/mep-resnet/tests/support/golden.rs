//! The golden fixtures' reader and the comparison both golden suites use
//! (crates/mep-resnet/tests/golden.rs, and crates/mep-decoder/tests/golden.rs through
//! `#[path]`): tensors written by PyTorch into `tests/fixtures/NAME.golden.safetensors` of
//! the crate under test, compared by relative L2 error ‖ours − torch‖ / ‖torch‖.
// Each suite uses a different subset.
#![allow(dead_code)]

use mep_tensor::{CpuBackend, Tensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Outputs, activations and losses.
pub const ACT_TOL: f64 = 1e-4;
/// Gradients (a ReLU or max-pool decision can flip in f32).
pub const GRAD_TOL: f64 = 5e-2;
/// One Adam update.
pub const ADAM_TOL: f64 = 1e-3;

/// `tests/fixtures/NAME` of the crate being tested.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub struct Golden {
    pub f32s: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// The int64 `target` tensor, when the fixture has one (class labels).
    pub target: Vec<usize>,
}

pub fn golden(name: &str) -> Golden {
    let bytes = std::fs::read(fixture(&format!("{name}.golden.safetensors"))).expect("fixture present");
    let st = SafeTensors::deserialize(&bytes).expect("valid fixture");
    let mut f32s = BTreeMap::new();
    let mut target = Vec::new();
    for (k, v) in st.tensors() {
        match v.dtype() {
            Dtype::F32 => {
                let data = v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                f32s.insert(k.to_string(), (v.shape().to_vec(), data));
            }
            Dtype::I64 if k == "target" => {
                target = v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
                    .collect();
            }
            d => panic!("unexpected dtype {d:?} for {k}"),
        }
    }
    Golden { f32s, target }
}

impl Golden {
    pub fn get(&self, key: &str) -> &(Vec<usize>, Vec<f32>) {
        self.f32s.get(key).unwrap_or_else(|| panic!("golden key {key} missing"))
    }
    pub fn tensor(&self, b: &CpuBackend, key: &str) -> Tensor<CpuBackend> {
        let (s, d) = self.get(key);
        Tensor::from_slice(b, s.as_slice(), d).unwrap()
    }
}

pub fn rel_l2(ours: &[f32], theirs: &[f32]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "length mismatch");
    let num: f64 = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let den: f64 = theirs.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

pub fn check(what: &str, ours: &[f32], theirs: &[f32], tol: f64) {
    let e = rel_l2(ours, theirs);
    eprintln!("{what:<40} rel L2 {e:.2e}");
    assert!(e <= tol, "{what}: relative L2 error {e:.3e} > {tol:.0e}");
}
