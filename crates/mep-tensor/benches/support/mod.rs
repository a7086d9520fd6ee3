//! Inputs shared by the benches and the `conv_paths` example (included with `#[path]` there).

/// `len` values in [−0.5, 0.5) from a multiplicative hash of the index: cheap to make for the
/// large operands of a benchmark, and the same in every run.
pub fn filled(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        .collect()
}
