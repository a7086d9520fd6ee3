//! A path: P pivots in R^D, endpoints included, as the rows of one backend buffer.

use crate::error::{NebError, Result};
use mep_tensor::{Backend, Lerp};

/// P pivots in R^D (endpoints included), rows of one backend buffer `[P, D]`.
pub struct Path<B: Backend> {
    buf: B::Buf,
    pivots: usize,
    dim: usize,
}

fn check_shape(pivots: usize, dim: usize) -> Result<()> {
    if pivots < 2 {
        return Err(NebError::Config {
            field: "pivots",
            msg: format!("is {pivots}; a path needs at least its 2 endpoints"),
        });
    }
    if dim == 0 {
        return Err(NebError::Config {
            field: "dim",
            msg: "is 0; points need at least one coordinate".into(),
        });
    }
    Ok(())
}

impl<B: Backend> Path<B> {
    /// Wraps a buffer of `pivots · dim` values.
    pub fn from_buf(b: &B, buf: B::Buf, pivots: usize, dim: usize) -> Result<Self> {
        check_shape(pivots, dim)?;
        let found = b.len(&buf);
        if found != pivots * dim {
            return Err(NebError::Size {
                what: "path buffer (pivots·dim values)",
                expected: pivots * dim,
                found,
            });
        }
        Ok(Path { buf, pivots, dim })
    }

    /// The straight line `start → end` with `pivots` ≥ 2 evenly spaced points (endpoints
    /// included); `start` and `end` hold `dim` values each.
    pub fn straight(b: &B, start: &B::Buf, end: &B::Buf, dim: usize, pivots: usize) -> Result<Self> {
        check_shape(pivots, dim)?;
        for (what, buf) in [("start point", start), ("end point", end)] {
            if b.len(buf) != dim {
                return Err(NebError::Size {
                    what,
                    expected: dim,
                    found: b.len(buf),
                });
            }
        }
        let mut ends = b.alloc(2 * dim)?;
        b.copy_rows(dim, start, 0, &mut ends, 0, 1)?;
        b.copy_rows(dim, end, 0, &mut ends, 1, 1)?;
        let last = (pivots - 1) as f64;
        let plan: Vec<Lerp> = (0..pivots)
            .map(|k| Lerp {
                a: 0,
                b: 1,
                t: if k + 1 == pivots { 1.0 } else { (k as f64 / last) as f32 },
            })
            .collect();
        let mut buf = b.alloc(pivots * dim)?;
        b.lerp_rows(dim, &ends, &plan, &mut buf)?;
        Ok(Path { buf, pivots, dim })
    }

    /// A path from host data, `pivots` rows of `dim` values.
    pub fn from_host(b: &B, data: &[f32], pivots: usize, dim: usize) -> Result<Self> {
        check_shape(pivots, dim)?;
        if data.len() != pivots * dim {
            return Err(NebError::Size {
                what: "path data (pivots·dim values)",
                expected: pivots * dim,
                found: data.len(),
            });
        }
        Ok(Path {
            buf: b.upload(data)?,
            pivots,
            dim,
        })
    }

    /// The buffer, `[P, D]` row-major.
    pub fn buf(&self) -> &B::Buf {
        &self.buf
    }

    /// The buffer, mutable (its length must stay `P·D`).
    pub fn buf_mut(&mut self) -> &mut B::Buf {
        &mut self.buf
    }

    /// P, the number of pivots, endpoints included.
    pub fn pivots(&self) -> usize {
        self.pivots
    }

    /// D, the number of coordinates of a pivot.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The pivots, copied to the host (row-major `[P, D]`).
    pub fn to_vec(&self, b: &B) -> Result<Vec<f32>> {
        Ok(b.download(&self.buf)?)
    }

    /// The P − 1 segment lengths `|R[i+1] − R[i]|`.
    pub fn segment_lengths(&self, b: &B) -> Result<Vec<f64>> {
        Ok(b.row_distances(self.dim, self.pivots, &self.buf)?)
    }

    /// The length of the piecewise-linear path.
    pub fn length(&self, b: &B) -> Result<f64> {
        Ok(self.segment_lengths(b)?.iter().sum())
    }

    /// A copy on the same backend.
    pub fn duplicate(&self, b: &B) -> Result<Self> {
        let mut buf = b.alloc(self.pivots * self.dim)?;
        b.copy(&self.buf, &mut buf)?;
        Ok(Path {
            buf,
            pivots: self.pivots,
            dim: self.dim,
        })
    }

    /// The pivot rows replaced by `plan` (row r of the new path = lerp of old rows by
    /// `plan[r]`); the pivot count becomes `plan.len()`.
    pub(crate) fn remap(&mut self, b: &B, plan: &[Lerp]) -> Result<()> {
        let mut buf = b.alloc(plan.len() * self.dim)?;
        b.lerp_rows(self.dim, &self.buf, plan, &mut buf)?;
        self.buf = buf;
        self.pivots = plan.len();
        Ok(())
    }
}
