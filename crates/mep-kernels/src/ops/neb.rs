//! neb.cu: the path never leaves the device; only P energies go in and P norms come out.

use crate::backend::{blocks_for, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::pointwise::BLOCK;
use mep_tensor::cpu::neb::{check_copy_rows, check_lerp_rows, check_neb_forces, check_row_distances};
use mep_tensor::{Lerp, NebForceParams, Result};

pub(crate) fn lerp_rows<L: Launcher>(
    kb: &KernelBackend<L>,
    dim: usize,
    src: &DevBuf<L::Mem>,
    plan: &[Lerp],
    dst: &mut DevBuf<L::Mem>,
) -> Result<()> {
    check_lerp_rows(dim, src.len, plan, dst.len)?;
    if plan.is_empty() || dim == 0 {
        return Ok(());
    }
    let ab: Vec<u8> = plan
        .iter()
        .flat_map(|l| [l.a as i32, l.b as i32])
        .flat_map(i32::to_ne_bytes)
        .collect();
    let t: Vec<u8> = plan.iter().flat_map(|l| l.t.to_ne_bytes()).collect();
    let (ab, t) = (kb.temp_bytes(&ab)?, kb.temp_bytes(&t)?);
    let args = [
        i64_of(plan.len()),
        i64_of(dim),
        kb.ptr(src),
        kb.mem_ptr(&ab),
        kb.mem_ptr(&t),
        kb.ptr(dst),
    ];
    let n = plan.len() * dim;
    kb.launch("lerp_rows_f32_v1", Dims::x(blocks_for(n, BLOCK)), Dims::x(BLOCK), &args)
}

pub(crate) fn copy_rows<L: Launcher>(
    kb: &KernelBackend<L>,
    dim: usize,
    src: &DevBuf<L::Mem>,
    src_row: usize,
    dst: &mut DevBuf<L::Mem>,
    dst_row: usize,
    rows: usize,
) -> Result<()> {
    check_copy_rows(dim, src.len, src_row, dst.len, dst_row, rows)?;
    let n = rows * dim;
    if n == 0 {
        return Ok(());
    }
    let args = [i64_of(n), kb.ptr_at(src, src_row * dim), kb.ptr_at(dst, dst_row * dim)];
    kb.launch("copy_rows_f32_v1", Dims::x(blocks_for(n, BLOCK)), Dims::x(BLOCK), &args)
}

pub(crate) fn row_distances<L: Launcher>(
    kb: &KernelBackend<L>,
    dim: usize,
    rows: usize,
    x: &DevBuf<L::Mem>,
) -> Result<Vec<f64>> {
    check_row_distances(dim, rows, x.len)?;
    let pairs = rows.saturating_sub(1);
    if pairs == 0 {
        return Ok(Vec::new());
    }
    let out = kb.temp_f64(pairs)?;
    let args = [i64_of(rows), i64_of(dim), kb.ptr(x), kb.mem_ptr(&out)];
    if kb.fast() {
        kb.launch(
            "row_distances_f32_v2",
            Dims::x(blocks_for(pairs, 1)),
            Dims::x(BLOCK),
            &args,
        )?;
    } else {
        kb.launch(
            "row_distances_f32_v1",
            Dims::x(blocks_for(pairs, BLOCK)),
            Dims::x(BLOCK),
            &args,
        )?;
    }
    kb.read_f64(&out, pairs)
}

pub(crate) fn neb_forces<L: Launcher>(
    kb: &KernelBackend<L>,
    p: &NebForceParams,
    pivots: &DevBuf<L::Mem>,
    grads: &DevBuf<L::Mem>,
    energies: &[f64],
    forces: &mut DevBuf<L::Mem>,
) -> Result<Vec<f64>> {
    check_neb_forces(p, pivots.len, grads.len, energies, forces.len)?;
    let e: Vec<u8> = energies.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let e = kb.temp_bytes(&e)?;
    let norms = kb.temp_f64(p.pivots)?;
    let args = [
        i64_of(p.pivots),
        i64_of(p.dim),
        kb.ptr(pivots),
        kb.ptr(grads),
        kb.mem_ptr(&e),
        Arg::I32(p.spring.is_some() as i32),
        Arg::F32(p.spring.unwrap_or(0.0)),
        Arg::I32(p.climbing.map_or(-1, |c| c as i32)),
        kb.ptr(forces),
        kb.mem_ptr(&norms),
    ];
    kb.launch(
        "neb_forces_f32_v1",
        Dims::x(blocks_for(p.pivots, 1)),
        Dims::x(BLOCK),
        &args,
    )?;
    kb.read_f64(&norms, p.pivots)
}
