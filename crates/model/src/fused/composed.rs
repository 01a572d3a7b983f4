//! The fused operations written as ordinary burn ops: the path for backends and float types
//! without a kernel, and the reference the kernels are tested against.

use burn::prelude::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Scalar, Shape, Slice, TensorMetadata};

/// 2·√(2/π) and its product with 0.044715 (see [`super::gelu_new`]).
const GELU_LINEAR: f64 = 2.0 * 0.797_884_560_802_865_4;
const GELU_CUBIC: f64 = GELU_LINEAR * 0.044715;

/// `u = x · (GELU_LINEAR + GELU_CUBIC · x²)` from `x` and `x²`: `gelu_new(x) = x · σ(u)`.
fn gelu_argument<B: Backend>(x: FloatTensor<B>, x2: FloatTensor<B>) -> FloatTensor<B> {
    let cubic = B::float_mul_scalar(x2, Scalar::Float(GELU_CUBIC));
    B::float_mul(x, B::float_add_scalar(cubic, Scalar::Float(GELU_LINEAR)))
}

/// `x · σ(GELU_LINEAR · x + GELU_CUBIC · x³)`.
pub fn gelu_new<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let u = gelu_argument::<B>(x.clone(), B::float_mul(x.clone(), x.clone()));
    B::float_mul(x, B::sigmoid(u))
}

/// `softmax(scale · scores + mask_bias)` over the last dimension.
pub fn attention_probs<B: Backend>(
    scores: FloatTensor<B>,
    mask_bias: FloatTensor<B>,
    scale: f32,
) -> FloatTensor<B> {
    let last = scores.shape().num_dims() - 1;
    let z = B::float_add(B::float_mul_scalar(scores, Scalar::Float(f64::from(scale))), mask_bias);
    B::softmax(z, last)
}

/// `gelu_new'(x) = σ(u) + x · σ(u) · (1 − σ(u)) · (GELU_LINEAR + 3 · GELU_CUBIC · x²)`.
pub fn gelu_new_derivative<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let x2 = B::float_mul(x.clone(), x.clone());
    let u = gelu_argument::<B>(x.clone(), x2.clone());
    let s = B::sigmoid(u);
    let slope = B::float_add_scalar(
        B::float_mul_scalar(x2, Scalar::Float(3.0 * GELU_CUBIC)),
        Scalar::Float(GELU_LINEAR),
    );
    let one_minus_s = B::float_add_scalar(B::float_neg(s.clone()), Scalar::Float(1.0));
    let tail = B::float_mul(B::float_mul(B::float_mul(x, s.clone()), one_minus_s), slope);
    B::float_add(s, tail)
}

/// `scale · p ⊙ (grad − Σ_last grad ⊙ p)`: the scores' gradient from the probabilities.
pub fn attention_probs_backward<B: Backend>(
    probs: FloatTensor<B>,
    grad: FloatTensor<B>,
    scale: f32,
) -> FloatTensor<B> {
    let last = probs.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(grad.clone(), probs.clone()), last);
    let centred = B::float_sub(grad, dot);
    B::float_mul_scalar(B::float_mul(probs, centred), Scalar::Float(f64::from(scale)))
}

/// `[B·S, heads·d]` → `[B, S, heads, d]` → `[B, heads, S, d]`.
pub fn split_heads<B: Backend>(x: FloatTensor<B>, batch: usize, heads: usize) -> FloatTensor<B> {
    let [tokens, hidden] = x.shape().dims::<2>();
    let shape = Shape::new([batch, tokens / batch, heads, hidden / heads]);
    B::float_swap_dims(B::float_reshape(x, shape), 1, 2)
}

/// `[B, heads, S, d]` → `[B, S, heads, d]` → `[B·S, heads·d]`.
pub fn merge_heads<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let [batch, heads, seq, width] = x.shape().dims::<4>();
    B::float_reshape(B::float_swap_dims(x, 1, 2), Shape::new([batch * seq, heads * width]))
}

/// `x · weight + bias` with burn's matmul and a broadcast add.
pub fn linear<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let out = B::float_matmul(x, weight);
    match bias {
        Some(bias) => {
            let width = bias.shape().num_elements();
            B::float_add(out, B::float_reshape(bias, Shape::new([1, width])))
        }
        None => out,
    }
}

/// Gradients of [`linear`] with burn's matmul, transposes and a column sum, plus the
/// `running` weight and bias gradients.
pub fn linear_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    [want_x, want_weight, want_bias]: [bool; 3],
    running: super::grads::LinearGrads<FloatTensor<B>>,
) -> super::grads::LinearGrads<FloatTensor<B>> {
    let width = grad.shape().dims::<2>()[1];
    let plus = |fresh: FloatTensor<B>, so_far: Option<FloatTensor<B>>| match so_far {
        Some(so_far) => B::float_add(fresh, so_far),
        None => fresh,
    };
    super::grads::LinearGrads {
        x: want_x.then(|| B::float_matmul(grad.clone(), B::float_transpose(weight))),
        weight: want_weight
            .then(|| plus(B::float_matmul(B::float_transpose(x), grad.clone()), running.weight)),
        bias: want_bias.then(|| {
            plus(B::float_reshape(B::float_sum_dim(grad, 0), Shape::new([width])), running.bias)
        }),
    }
}

/// `x` (`[..., H]`) as `[rows, H]` rows.
fn as_rows<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let shape = x.shape();
    let width = shape[shape.num_dims() - 1];
    let rows = shape.num_elements().checked_div(width).unwrap_or(0);
    B::float_reshape(x, Shape::new([rows, width]))
}

/// `v` (`[H]`) as a `[1, H]` row, broadcast over rows.
fn as_row<B: Backend>(v: FloatTensor<B>) -> FloatTensor<B> {
    let width = v.shape().num_elements();
    B::float_reshape(v, Shape::new([1, width]))
}

/// Column `index` of a `[rows, 2]` statistics tensor, as `[rows, 1]`.
fn stats_column<B: Backend>(stats: FloatTensor<B>, index: isize) -> FloatTensor<B> {
    B::float_slice(stats, &[Slice::new(0, None, 1), Slice::new(index, Some(index + 1), 1)])
}

/// Layer norm over the last dimension, `(x − mean) · rstd · γ + β` with
/// `rstd = 1/√(var + eps)`, plus the per-row `[mean, rstd]` (`[rows, 2]`) that
/// [`layer_norm_backward`] reads.
pub fn layer_norm_with_stats<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let rows = as_rows::<B>(x);
    let mean = B::float_mean_dim(rows.clone(), 1);
    let centred = B::float_sub(rows, mean.clone());
    let variance = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 1);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(variance, Scalar::Float(eps))));
    let normalised = B::float_mul(centred, rstd.clone());
    let out = B::float_add(B::float_mul(normalised, as_row::<B>(gamma)), as_row::<B>(beta));
    (B::float_reshape(out, shape), B::float_cat(vec![mean, rstd], 1))
}

/// Gradients of [`layer_norm_with_stats`] from its input, γ, statistics and the output's
/// gradient: with `x̂ = (x − mean) · rstd` and `g = grad · γ`,
/// `dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))`, `dγ = Σ_rows grad · x̂`, `dβ = Σ_rows grad`.
pub fn layer_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    stats: FloatTensor<B>,
    grad: FloatTensor<B>,
    [want_x, want_gamma, want_beta]: [bool; 3],
) -> super::grads::LayerNormGrads<FloatTensor<B>> {
    let shape = x.shape();
    let width = gamma.shape().num_elements();
    let (rows, grad_rows) = (as_rows::<B>(x), as_rows::<B>(grad));
    let mean = stats_column::<B>(stats.clone(), 0);
    let rstd = stats_column::<B>(stats, 1);
    let normalised = B::float_mul(B::float_sub(rows, mean), rstd.clone());
    let column_sum =
        |t: FloatTensor<B>| B::float_reshape(B::float_sum_dim(t, 0), Shape::new([width]));
    let gamma_grad =
        want_gamma.then(|| column_sum(B::float_mul(grad_rows.clone(), normalised.clone())));
    let beta_grad = want_beta.then(|| column_sum(grad_rows.clone()));
    let x_grad = want_x.then(|| {
        let scaled = B::float_mul(grad_rows, as_row::<B>(gamma));
        let mean_scaled = B::float_mean_dim(scaled.clone(), 1);
        let projection = B::float_mean_dim(B::float_mul(scaled.clone(), normalised.clone()), 1);
        let centred =
            B::float_sub(B::float_sub(scaled, mean_scaled), B::float_mul(normalised, projection));
        B::float_reshape(B::float_mul(centred, rstd), shape)
    });
    super::grads::LayerNormGrads { x: x_grad, gamma: gamma_grad, beta: beta_grad }
}
