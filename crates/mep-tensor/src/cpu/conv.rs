//! GEMM-based kernels of the CPU backend: convolution (forward, input and weight
//! gradients), transposed convolution, linear. STUB: to be written.
#![allow(unused_variables, clippy::too_many_arguments)]

use crate::backend::Act;
use crate::shape::{Conv2dGeom, ConvT2dGeom};

/// Scratch memory (im2col columns) reused across calls.
#[derive(Default)]
pub struct Workspace {}

pub fn conv2d(
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    todo!()
}
pub fn conv2d_bwd_input(ws: &Workspace, g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    todo!()
}
pub fn conv2d_bwd_weight(ws: &Workspace, g: &Conv2dGeom, x: &[f32], dy: &[f32], dw: &mut [f32], db: Option<&mut [f32]>) {
    todo!()
}
pub fn conv_transpose2d(ws: &Workspace, g: &ConvT2dGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    todo!()
}
pub fn conv_transpose2d_bwd_input(ws: &Workspace, g: &ConvT2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    todo!()
}
pub fn conv_transpose2d_bwd_weight(
    ws: &Workspace,
    g: &ConvT2dGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    todo!()
}
pub fn linear(n: usize, k: usize, m: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    todo!()
}
pub fn linear_bwd_input(n: usize, k: usize, m: usize, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    todo!()
}
pub fn linear_bwd_weight(n: usize, k: usize, m: usize, x: &[f32], dy: &[f32], dw: &mut [f32], db: Option<&mut [f32]>) {
    todo!()
}
