//! A bounds-checked entry to the `gemm` crate, the same GEMM burn-flex runs.
//!
//! The fused linear layer calls GEMM itself so that its outputs are allocated once, as `f32`
//! vectors handed to burn without a copy, the bias is the GEMM's starting value rather than a
//! separate broadcast add, and the backward products read transposed operands through strides
//! instead of transposed copies. burn-flex allocates every matmul output as bytes, then
//! reallocates and copies it to realign (about 8 % of an albert-base step).
//!
//! `gemm::gemm` takes raw pointers and strides; this module is the workspace's one use of
//! `unsafe`, and it checks every index the call can reach before making it.

/// A read-only strided matrix: element `(r, c)` is `data[offset + r·row_stride + c·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A view of `data`.
    ///
    /// # Panics
    /// If some element of the view lies outside `data`.
    pub fn new(
        data: &'a [f32],
        offset: usize,
        [rows, cols]: [usize; 2],
        [row_stride, col_stride]: [usize; 2],
    ) -> Self {
        // A dimension of size 1 never moves along its stride: 0 keeps any value it had from
        // reaching the GEMM (which takes strides as isize).
        let row_stride = if rows > 1 { row_stride } else { 0 };
        let col_stride = if cols > 1 { col_stride } else { 0 };
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(row_stride)
                .and_then(|r| (cols - 1).checked_mul(col_stride).and_then(|c| r.checked_add(c)))
                .and_then(|rc| rc.checked_add(offset));
            assert!(
                last.is_some_and(|last| last < data.len()),
                "matrix view {rows}x{cols} (strides {row_stride}, {col_stride}, offset {offset}) \
                 exceeds its buffer of {}",
                data.len()
            );
        }
        Self { data, offset, rows, cols, row_stride, col_stride }
    }

    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, 0, [rows, cols], [cols, 1])
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows and columns.
    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
}

/// Multiply-adds above this count are split across rayon's threads (burn-flex's threshold).
const PARALLEL_MIN_OPS: usize = 192 * 192 * 192;

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`; `dst` is row-major `m × n`.
///
/// # Panics
/// If the inner dimensions differ or `dst` is not `m·n` long.
pub fn matmul(dst: &mut [f32], accumulate: bool, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    let ([m, k], [k2, n]) = (lhs.dims(), rhs.dims());
    assert_eq!(k, k2, "matmul inner dimensions {m}x{k} · {k2}x{n}");
    // Checked: with stride-0 (broadcast) views, m and n are not bounded by any buffer, and a
    // wrapped product could make an empty `dst` look right.
    let len = m.checked_mul(n).expect("matmul output size overflows usize");
    assert_eq!(dst.len(), len, "matmul output of {m}x{n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_OPS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // `MatRef::new` checked that every (r, c) of both operands lies inside its slice; `dst`
    // holds exactly m·n elements at unit column stride and row stride n, and is borrowed
    // mutably, so it aliases neither operand; k > 0, m > 0 and n > 0 here.
    #[allow(unsafe_code)]
    // SAFETY: see above: every pointer gemm derives stays inside its borrowed slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr().add(rhs.offset),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            // gemm computes dst = alpha·dst + beta·lhs·rhs (alpha read only with read_dst).
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(lhs: MatRef<'_>, rhs: MatRef<'_>) -> Vec<f64> {
        let ([m, k], [_, n]) = (lhs.dims(), rhs.dims());
        let at = |x: &MatRef<'_>, r: usize, c: usize| {
            f64::from(x.data[x.offset + r * x.row_stride + c * x.col_stride])
        };
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| at(&lhs, i, p) * at(&rhs, p, j)).sum();
            }
        }
        out
    }

    #[test]
    fn strided_and_transposed_operands_multiply_like_the_naive_product() {
        let a: Vec<f32> = (0..200).map(|i| (i % 17) as f32 * 0.25 - 2.0).collect();
        let b: Vec<f32> = (0..300).map(|i| (i % 11) as f32 * 0.5 - 2.5).collect();
        // 7x9 at offset 3 with row stride 12; 9x13 given as the transpose of a 13x9.
        let lhs = MatRef::new(&a, 3, [7, 9], [12, 1]);
        let rhs = MatRef::new(&b, 0, [13, 9], [9, 1]).t();
        let mut out = vec![0.0; 7 * 13];
        matmul(&mut out, false, lhs, rhs);
        let want = naive(lhs, rhs);
        for (g, w) in out.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-4, "{g} vs {w}");
        }
        // Accumulating adds onto what is there.
        let mut acc = vec![1.0; 7 * 13];
        matmul(&mut acc, true, lhs, rhs);
        for (g, w) in acc.iter().zip(&want) {
            assert!((f64::from(*g) - (w + 1.0)).abs() < 1e-4);
        }
    }

    #[test]
    fn empty_inner_dimension_gives_zeros_or_leaves_the_accumulator() {
        let mut out = vec![5.0; 6];
        matmul(&mut out, true, MatRef::row_major(&[], 2, 0), MatRef::row_major(&[], 0, 3));
        assert_eq!(out, vec![5.0; 6]);
        matmul(&mut out, false, MatRef::row_major(&[], 2, 0), MatRef::row_major(&[], 0, 3));
        assert_eq!(out, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "exceeds its buffer")]
    fn a_view_past_its_buffer_is_refused() {
        let data = [0.0f32; 10];
        let _ = MatRef::new(&data, 2, [3, 3], [3, 1]);
    }

    #[test]
    #[should_panic(expected = "overflows")]
    fn an_output_size_that_overflows_is_refused_not_wrapped() {
        // Broadcast views (stride 0) of huge dimensions over one element each.
        let lhs = MatRef::new(&[1.0], 0, [1 << 63, 1], [0, 0]);
        let rhs = MatRef::new(&[1.0, 2.0], 0, [1, 2], [2, 1]);
        matmul(&mut [], false, lhs, rhs);
    }

    #[test]
    #[should_panic(expected = "inner dimensions")]
    fn mismatched_inner_dimensions_are_refused() {
        let data = [0.0f32; 12];
        let mut out = [0.0f32; 9];
        matmul(&mut out, false, MatRef::row_major(&data, 3, 4), MatRef::row_major(&data, 3, 3));
    }
}
