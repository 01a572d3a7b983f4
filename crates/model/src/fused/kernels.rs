//! Element loops of the fused operations, on plain `f32` slices.
//!
//! Every loop is branch-free and calls nothing, so the compiler vectorises it; the exponential
//! is a polynomial here rather than libm's `expf`, which is a scalar call per element and was
//! the largest non-GEMM cost of a training step. Each public kernel runs its loop inside
//! [`pulp::Arch::dispatch`], which compiles it once per instruction set (AVX-512, AVX2+FMA,
//! baseline) and picks the best the CPU has at run time; the loop bodies are
//! `#[inline(always)]` so that they are compiled inside each of those.

/// Below this, eˣ is subnormal in f32: the result is flushed to 0 (an error under 1.2e-38).
const EXP_MIN_INPUT: f32 = -87.336_54;
/// Above ln(f32::MAX), eˣ overflows to +inf.
const EXP_MAX_INPUT: f32 = 88.722_84;
/// 1.5·2²³: adding then subtracting it rounds an f32 of magnitude < 2²² to an integer.
const ROUNDING_SHIFTER: f32 = 12_582_912.0;
/// ln 2 split in two: the high part has few enough bits that `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Lane count of the reductions: independent partial sums let the compiler vectorise them.
const LANES: usize = 16;

/// eˣ within about 2 ulp for normal results; NaN stays NaN, +inf above ln(f32::MAX), 0 below
/// the normal range.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // `f32::clamp` keeps a NaN (unlike `max`/`min`), so a NaN input stays NaN throughout.
    let clamped = x.clamp(EXP_MIN_INPUT, EXP_MAX_INPUT);
    // eˣ = 2ⁿ · eʳ with n the integer nearest x / ln 2 and |r| ≤ ln 2 / 2.
    let n = (clamped * std::f32::consts::LOG2_E + ROUNDING_SHIFTER) - ROUNDING_SHIFTER;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    // Taylor series of eʳ to r⁷: the first omitted term is below 1e-8 relative on this range.
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n lies in [-126, 128]; 2ⁿ as two normal factors covers both ends exactly. The integer
    // comes from the low bits of the shifted sum (it is exact there), not from a float-to-int
    // cast, which the compiler does lane by lane.
    let n = (clamped * std::f32::consts::LOG2_E + ROUNDING_SHIFTER).to_bits() as i32
        - ROUNDING_SHIFTER.to_bits() as i32;
    let half = n >> 1;
    let scale_a = f32::from_bits(((half + 127) << 23) as u32);
    let scale_b = f32::from_bits(((n - half + 127) << 23) as u32);
    let value = p * scale_a * scale_b;
    if x < EXP_MIN_INPUT {
        0.0
    } else if x > EXP_MAX_INPUT {
        f32::INFINITY
    } else {
        value
    }
}

/// 2·√(2/π): `gelu_new(x) = x · σ(GELU_LINEAR · x + GELU_CUBIC · x³)`, the sigmoid form of
/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
const GELU_LINEAR: f32 = 2.0 * 0.797_884_6;
const GELU_CUBIC: f32 = GELU_LINEAR * 0.044_715;

#[inline(always)]
fn sigmoid(u: f32) -> f32 {
    1.0 / (1.0 + exp(-u))
}

/// A kernel call with its arguments, run by [`pulp::Arch::dispatch`] inside one copy of the
/// loop per instruction set. (A closure would read better, but the compiler may decline to
/// inline a closure holding a large loop into those copies, leaving the loop compiled for the
/// baseline; `with_simd` below is `#[inline(always)]`, and so is every loop it calls.)
enum Kernel<'a> {
    GeluForward {
        x: &'a [f32],
        out: &'a mut [f32],
    },
    GeluBackward {
        x: &'a [f32],
        grad: &'a mut [f32],
    },
    ProbsForward {
        scores: &'a [f32],
        mask: &'a [f32],
        rows: ScoreRows,
        scale: f32,
        out: &'a mut [f32],
    },
    ProbsBackward {
        probs: &'a [f32],
        grad: &'a mut [f32],
        row_len: usize,
        scale: f32,
    },
    NormForward {
        x: &'a [f32],
        affine: Affine<'a>,
        eps: f32,
        out: &'a mut [f32],
        stats: &'a mut [f32],
    },
    NormBackward {
        x: &'a [f32],
        gamma: &'a [f32],
        stats: &'a [f32],
        grad: &'a mut [f32],
        sums: NormSums<'a>,
    },
}

impl pulp::WithSimd for Kernel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        match self {
            Kernel::GeluForward { x, out } => gelu_new_forward_loop(x, out),
            Kernel::GeluBackward { x, grad } => gelu_new_backward_loop(x, grad),
            Kernel::ProbsForward { scores, mask, rows, scale, out } => {
                attention_probs_forward_loop(scores, mask, rows, scale, out)
            }
            Kernel::ProbsBackward { probs, grad, row_len, scale } => {
                attention_probs_backward_loop(probs, grad, row_len, scale)
            }
            Kernel::NormForward { x, affine, eps, out, stats } => {
                layer_norm_forward_loop(x, affine, eps, out, stats)
            }
            Kernel::NormBackward { x, gamma, stats, grad, sums } => {
                layer_norm_backward_loop(x, gamma, stats, grad, sums)
            }
        }
    }
}

/// `out[i] = gelu_new(x[i])`.
pub fn gelu_new_forward(x: &[f32], out: &mut [f32]) {
    pulp::Arch::new().dispatch(Kernel::GeluForward { x, out });
}

#[inline(always)]
fn gelu_new_forward_loop(x: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), out.len());
    for (o, &x) in out.iter_mut().zip(x) {
        let u = x * (GELU_LINEAR + GELU_CUBIC * x * x);
        *o = x * sigmoid(u);
    }
}

/// `grad[i] *= gelu_new'(x[i])`, in place: the incoming gradient becomes the input gradient.
pub fn gelu_new_backward(x: &[f32], grad: &mut [f32]) {
    pulp::Arch::new().dispatch(Kernel::GeluBackward { x, grad });
}

#[inline(always)]
fn gelu_new_backward_loop(x: &[f32], grad: &mut [f32]) {
    debug_assert_eq!(x.len(), grad.len());
    for (g, &x) in grad.iter_mut().zip(x) {
        let x2 = x * x;
        let e = exp(-x * (GELU_LINEAR + GELU_CUBIC * x2));
        let s = 1.0 / (1.0 + e);
        // d/dx [x·σ(u)] = σ(u) + x·σ(u)·(1 − σ(u))·u'(x), u'(x) = LINEAR + 3·CUBIC·x², with
        // 1 − σ(u) = e⁻ᵘ·σ(u): `1.0 - s` would cancel to a few bits where σ(u) is near 1.
        // Where e⁻ᵘ is huge (very negative x) that product is inf·0; it is 1 there. The
        // comparison keeps a NaN.
        let one_minus_s = if e > 1e30 { 1.0 } else { e * s };
        let derivative = s + (x * s) * one_minus_s * (GELU_LINEAR + 3.0 * GELU_CUBIC * x2);
        *g *= derivative;
    }
}

/// The shape of a batch of attention score rows: `batches` groups of `rows_per_batch` rows of
/// `row_len` keys; every row of a group shares that group's additive key mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreRows {
    /// Sequences in the batch (the mask has one row of `row_len` per sequence).
    pub batches: usize,
    /// Rows per sequence: heads × query positions.
    pub rows_per_batch: usize,
    /// Keys per row.
    pub row_len: usize,
}

impl ScoreRows {
    /// Elements of the score tensor.
    pub fn len(&self) -> usize {
        self.batches * self.rows_per_batch * self.row_len
    }

    /// Whether there are no scores at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Attention probabilities: `out = softmax(scale · scores + mask)` over each row, with the
/// mask (`[batches, row_len]`, added) shared by all rows of its sequence.
pub fn attention_probs_forward(
    scores: &[f32],
    mask: &[f32],
    rows: ScoreRows,
    scale: f32,
    out: &mut [f32],
) {
    pulp::Arch::new().dispatch(Kernel::ProbsForward { scores, mask, rows, scale, out });
}

#[inline(always)]
fn attention_probs_forward_loop(
    scores: &[f32],
    mask: &[f32],
    rows: ScoreRows,
    scale: f32,
    out: &mut [f32],
) {
    debug_assert_eq!(scores.len(), rows.len());
    debug_assert_eq!(out.len(), rows.len());
    debug_assert_eq!(mask.len(), rows.batches * rows.row_len);
    if rows.is_empty() {
        return;
    }
    let per_batch = rows.rows_per_batch * rows.row_len;
    for ((scores, out), mask) in scores
        .chunks_exact(per_batch)
        .zip(out.chunks_exact_mut(per_batch))
        .zip(mask.chunks_exact(rows.row_len))
    {
        for (row, out) in scores.chunks_exact(rows.row_len).zip(out.chunks_exact_mut(rows.row_len))
        {
            softmax_row(row, mask, scale, out);
        }
    }
}

#[inline(always)]
fn softmax_row(scores: &[f32], mask: &[f32], scale: f32, out: &mut [f32]) {
    for ((o, &s), &m) in out.iter_mut().zip(scores).zip(mask) {
        *o = s * scale + m;
    }
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    for chunk in out.chunks(LANES) {
        for (lane, &z) in max.iter_mut().zip(chunk) {
            *lane = lane.max(z);
            nan |= z.is_nan();
        }
    }
    let max = max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if nan {
        // `f32::max` skips NaN; a NaN score must poison its row as the unfused softmax does.
        out.fill(f32::NAN);
        return;
    }
    let mut sum = [0.0f32; LANES];
    for chunk in out.chunks_mut(LANES) {
        for (lane, z) in sum.iter_mut().zip(chunk) {
            *z = exp(*z - max);
            *lane += *z;
        }
    }
    let inverse = 1.0 / sum.iter().sum::<f32>();
    for p in out.iter_mut() {
        *p *= inverse;
    }
}

/// Gradient of [`attention_probs_forward`] with respect to the scores, in place:
/// `grad ← scale · p ⊙ (grad − Σ_row grad ⊙ p)` row by row.
pub fn attention_probs_backward(probs: &[f32], grad: &mut [f32], row_len: usize, scale: f32) {
    pulp::Arch::new().dispatch(Kernel::ProbsBackward { probs, grad, row_len, scale });
}

#[inline(always)]
fn attention_probs_backward_loop(probs: &[f32], grad: &mut [f32], row_len: usize, scale: f32) {
    debug_assert_eq!(probs.len(), grad.len());
    if row_len == 0 {
        return;
    }
    for (p, g) in probs.chunks_exact(row_len).zip(grad.chunks_exact_mut(row_len)) {
        let mut dot = [0.0f32; LANES];
        for (p, g) in p.chunks(LANES).zip(g.chunks(LANES)) {
            for ((lane, &p), &g) in dot.iter_mut().zip(p).zip(g) {
                *lane += p * g;
            }
        }
        let dot: f32 = dot.iter().sum();
        for (g, &p) in g.iter_mut().zip(p) {
            *g = scale * p * (*g - dot);
        }
    }
}

/// A 4-D view into a buffer: element `[i0, i1, i2, i3]` is at
/// `offset + Σ iₖ · strides[k]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StridedView {
    /// Sizes of the four dimensions.
    pub dims: [usize; 4],
    /// Element strides of the four dimensions.
    pub strides: [usize; 4],
    /// Index of element `[0, 0, 0, 0]`.
    pub offset: usize,
}

/// Gathers `[B, heads, S, d]` per-head rows (any strides) into `[B·S, heads·d]` token rows:
/// `out[b·S + s][h·d + e] = src[b, h, s, e]`. Rows are copied whole when `d` is the
/// innermost stride, element by element otherwise (a transposed key gradient).
///
/// # Panics
/// If the view reaches outside `src` or `out` is not `B·S·heads·d` long.
pub fn merge_heads(src: &[f32], view: StridedView, out: &mut [f32]) {
    let [batches, heads, seq, width] = view.dims;
    let [sb, sh, ss, se] = view.strides;
    assert_eq!(out.len(), batches * heads * seq * width, "merge_heads output length");
    if out.is_empty() {
        return;
    }
    let token_len = heads * width;
    for (t, token) in out.chunks_exact_mut(token_len).enumerate() {
        let (b, s) = (t / seq, t % seq);
        for (h, dst) in token.chunks_exact_mut(width).enumerate() {
            let start = view.offset + b * sb + h * sh + s * ss;
            if se == 1 {
                dst.copy_from_slice(&src[start..start + width]);
            } else {
                for (e, d) in dst.iter_mut().enumerate() {
                    *d = src[start + e * se];
                }
            }
        }
    }
}

/// A layer norm's scale and shift, one value per feature.
#[derive(Debug, Clone, Copy)]
pub struct Affine<'a> {
    /// γ.
    pub gamma: &'a [f32],
    /// β.
    pub beta: &'a [f32],
}

/// Where the backward pass accumulates the γ and β gradients (added to, not overwritten).
#[derive(Debug)]
pub struct NormSums<'a> {
    /// Σ over rows of `grad · x̂`.
    pub gamma: &'a mut [f32],
    /// Σ over rows of `grad`.
    pub beta: &'a mut [f32],
}

/// Sum of a slice in `LANES` independent partial sums (vectorisable, unlike a serial fold).
#[inline(always)]
fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (i, v) in values.enumerate() {
        lanes[i % LANES] += v;
    }
    lanes.iter().sum()
}

/// Layer norm over rows of `gamma.len()` features:
/// `out = (x − mean) / √(var + eps) · γ + β`, and per row `stats = [mean, 1/√(var + eps)]`
/// (what the backward pass needs). The variance is the mean of squared deviations (two
/// passes, so a large mean costs no precision).
pub fn layer_norm_forward(
    x: &[f32],
    affine: Affine<'_>,
    eps: f32,
    out: &mut [f32],
    stats: &mut [f32],
) {
    pulp::Arch::new().dispatch(Kernel::NormForward { x, affine, eps, out, stats });
}

#[inline(always)]
fn layer_norm_forward_loop(
    x: &[f32],
    affine: Affine<'_>,
    eps: f32,
    out: &mut [f32],
    stats: &mut [f32],
) {
    let width = affine.gamma.len();
    assert_eq!(affine.beta.len(), width, "layer_norm: γ and β lengths");
    assert_eq!(out.len(), x.len(), "layer_norm: output length");
    if width == 0 {
        return;
    }
    assert_eq!(stats.len(), 2 * (x.len() / width), "layer_norm: statistics length");
    let inverse_width = 1.0 / width as f32;
    for ((row, out), stats) in
        x.chunks_exact(width).zip(out.chunks_exact_mut(width)).zip(stats.chunks_exact_mut(2))
    {
        let mean = lane_sum(row.iter().copied()) * inverse_width;
        let var = lane_sum(row.iter().map(|&v| (v - mean) * (v - mean))) * inverse_width;
        let rstd = 1.0 / (var + eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(row).zip(affine.gamma).zip(affine.beta) {
            *o = (v - mean) * rstd * g + b;
        }
        stats[0] = mean;
        stats[1] = rstd;
    }
}

/// Backward of [`layer_norm_forward`]: `grad` (the output's gradient) becomes the input's
/// gradient in place, and the γ and β gradients are added into `sums`.
pub fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    grad: &mut [f32],
    sums: NormSums<'_>,
) {
    pulp::Arch::new().dispatch(Kernel::NormBackward { x, gamma, stats, grad, sums });
}

#[inline(always)]
fn layer_norm_backward_loop(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    grad: &mut [f32],
    sums: NormSums<'_>,
) {
    let width = gamma.len();
    assert_eq!(grad.len(), x.len(), "layer_norm backward: gradient length");
    assert!(sums.gamma.len() == width && sums.beta.len() == width, "layer_norm backward: sums");
    if width == 0 {
        return;
    }
    assert_eq!(stats.len(), 2 * (x.len() / width), "layer_norm backward: statistics length");
    let inverse_width = 1.0 / width as f32;
    for ((row, g), stats) in
        x.chunks_exact(width).zip(grad.chunks_exact_mut(width)).zip(stats.chunks_exact(2))
    {
        let (mean, rstd) = (stats[0], stats[1]);
        // With x̂ = (x − mean)·rstd and gx = g·γ:
        // dx = rstd · (gx − mean(gx) − x̂ · mean(gx · x̂)).
        let mut lanes_gx = [0.0f32; LANES];
        let mut lanes_gxx = [0.0f32; LANES];
        for (j, ((&v, &d), &gm)) in row.iter().zip(g.iter()).zip(gamma).enumerate() {
            let normalised = (v - mean) * rstd;
            let gx = d * gm;
            lanes_gx[j % LANES] += gx;
            lanes_gxx[j % LANES] += gx * normalised;
        }
        for (((sg, sb), &v), &d) in
            sums.gamma.iter_mut().zip(sums.beta.iter_mut()).zip(row).zip(g.iter())
        {
            *sg += d * (v - mean) * rstd;
            *sb += d;
        }
        let mean_gx = lanes_gx.iter().sum::<f32>() * inverse_width;
        let mean_gxx = lanes_gxx.iter().sum::<f32>() * inverse_width;
        for ((d, &v), &gm) in g.iter_mut().zip(row).zip(gamma) {
            let normalised = (v - mean) * rstd;
            *d = rstd * (*d * gm - mean_gx - normalised * mean_gxx);
        }
    }
}

/// `out[c] += Σ_r rows[r][c]` over the rows of a `rows.len() / out.len()` × `out.len()`
/// row-major matrix (a linear layer's bias gradient, added to what `out` holds).
pub fn column_sums(rows: &[f32], out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    for row in rows.chunks_exact(out.len()) {
        for (o, &x) in out.iter_mut().zip(row) {
            *o += x;
        }
    }
}

/// Side of the square tiles [`transpose`] copies: a tile's source rows and destination rows
/// (16 KiB of each) stay in L1 while it is written.
const TRANSPOSE_TILE: usize = 64;

/// `out` (`cols × rows`, row-major) = the transpose of `src` (`rows × cols`, row-major), tile by
/// tile so that both sides are read and written in cache-line runs.
///
/// # Panics
/// If either slice is not `rows · cols` long.
pub fn transpose(src: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    assert_eq!(src.len(), rows * cols, "transpose source of {rows}x{cols}");
    assert_eq!(out.len(), rows * cols, "transpose output of {cols}x{rows}");
    for r0 in (0..rows).step_by(TRANSPOSE_TILE) {
        let r1 = (r0 + TRANSPOSE_TILE).min(rows);
        for c0 in (0..cols).step_by(TRANSPOSE_TILE) {
            let c1 = (c0 + TRANSPOSE_TILE).min(cols);
            for c in c0..c1 {
                let column = &mut out[c * rows + r0..c * rows + r1];
                for (o, r) in column.iter_mut().zip(r0..r1) {
                    *o = src[r * cols + c];
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "kernels_test.rs"]
mod tests;
