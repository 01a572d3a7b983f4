//! Fused operations: the model's hot spots as single kernels with hand-written backward
//! passes, instead of chains of burn tensor ops.
//!
//! `gelu_new` as burn ops is six forward ops and about a dozen backward ops over the `[B·S, FF]`
//! activation, each allocating its output; the attention softmax with its scale and mask is
//! four forward ops plus a decomposed backward; a layer norm is a dozen. Here each is one pass
//! forward and one pass backward. Heads are merged by a strided gather (burn reshapes a
//! transposed gradient element by element), and linear layers call GEMM directly ([`gemm`]):
//! outputs allocated once, the bias as the GEMM's starting value, transposes read through
//! strides, and a shared layer's weight gradients summed in place across its applications.
//!
//! The model asks for [`FusedOps`]; [`FusedKernels`] is what an inner backend provides so that
//! `Autodiff<B>` can record the fused forward and run the fused backward. Every method has a
//! default written as ordinary burn ops ([`composed`]), so any backend runs the model; Flex
//! overrides them with its CPU kernels (f32, with the composed ops as the path for other float
//! types and shapes), and the GPU backends ([`cube`]) take the defaults, which their own fusion
//! compiles.

mod autodiff;
pub mod composed;
mod cube;
mod flex;
pub mod gemm;
pub mod grads;
pub mod kernels;

use burn::nn::{LayerNorm, Linear};
use burn::prelude::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor, TensorMetadata, TensorPrimitive};

pub use grads::{LayerNormGrads, LinearGrads};

/// Operations the model runs fused where the backend has a kernel for them.
pub trait FusedOps: Backend {
    /// Whether this backend's tensors live in device memory, apart from the host's: moving
    /// many parameters then costs one transfer each, so [`crate::grads::GradLayout`] gathers them into
    /// one buffer on the device and moves that once. `false` on the CPU backend, whose
    /// tensors already are host memory and are copied one by one.
    const DEVICE_MEMORY: bool = true;

    /// `gelu_new` element-wise (see [`gelu_new`] for the formula).
    fn gelu_new(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::gelu_new::<Self>(x)
    }

    /// `softmax(scale · scores + mask_bias)` over the last dimension.
    ///
    /// # Shapes
    /// - `scores`: `[B, H, Q, K]`
    /// - `mask_bias`: `[B, 1, 1, K]`, added to every row of its sequence; the kernels treat it
    ///   as a constant (a mask that requires a gradient takes the composed ops)
    /// - output: `[B, H, Q, K]`
    fn attention_probs(
        scores: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        composed::attention_probs::<Self>(scores, mask_bias, scale)
    }

    /// `[B·S, heads·d]` token rows as `[B, heads, S, d]` per-head rows: a view where the
    /// backend allows it. Its backward is [`FusedOps::merge_heads`], a strided gather,
    /// rather than burn's reshape of a transposed gradient, an element-by-element walk.
    fn split_heads(x: FloatTensor<Self>, batch: usize, heads: usize) -> FloatTensor<Self> {
        composed::split_heads::<Self>(x, batch, heads)
    }

    /// `[B, heads, S, d]` (any strides) gathered into contiguous `[B·S, heads·d]` token rows;
    /// the inverse of [`FusedOps::split_heads`], which is its backward.
    fn merge_heads(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::merge_heads::<Self>(x)
    }

    /// `x · weight + bias`, the bias broadcast over rows. `prepared` is what
    /// [`FusedOps::prepare_linear_weight`] made of this `weight`, if anything.
    ///
    /// # Shapes
    /// - `x`: `[N, in]`, `weight`: `[in, out]` (burn's layout), `bias`: `[out]`
    /// - output: `[N, out]`
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        prepared: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        // Nothing is prepared by the default `prepare_linear_weight`.
        let _ = prepared;
        composed::linear::<Self>(x, weight, bias)
    }

    /// Work on a linear map's `weight` done once for the several applications one forward
    /// pass makes of it (the shared layer's maps, applied once per layer): where a backward
    /// is recorded, the contiguous `weightᵀ` (`[out, in]`) that every application's input
    /// gradient reads, instead of each GEMM re-packing the strided transpose of `weight`
    /// (5–13 % of that GEMM on albert-base shapes). `None` where nothing is gained (no backward).
    fn prepare_linear_weight(weight: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        let _ = weight;
        None
    }

    /// `lhs · rhs` over the last two dimensions, batched over the first two (which must be
    /// equal): the attention's score and context products. The arithmetic is the backend's
    /// own matmul; the op exists so that, under autodiff, a cancelled computation can skip it
    /// (see [`crate::cancel`]), as it skips the other fused ops.
    ///
    /// # Shapes
    /// - `lhs`: `[B, H, M, K]`, `rhs`: `[B, H, K, N]`, output: `[B, H, M, N]`
    fn attention_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(lhs, rhs)
    }

    /// Layer norm over the last dimension, as burn's `LayerNorm` computes it.
    ///
    /// # Shapes
    /// - `x`: `[..., H]`, `gamma` and `beta`: `[H]`; output: as `x`
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        eps: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, beta, eps)
    }
}

/// A backend the model trains on: autodiff over an inner backend with the fused kernels
/// (`Autodiff<Flex>` on the CPU, `Autodiff<Wgpu>` and `Autodiff<Cuda>` on GPUs).
pub trait TrainingBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: FusedKernels> + FusedOps
{
}

impl<B> TrainingBackend for B
where
    B: burn::tensor::backend::AutodiffBackend + FusedOps,
    B::InnerBackend: FusedKernels,
{
}

/// Backward kernels an inner backend provides for the autodiff wrapper of [`FusedOps`].
pub trait FusedKernels: FusedOps {
    /// `grad · gelu_new'(x)`.
    fn gelu_new_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_mul(grad, composed::gelu_new_derivative::<Self>(x))
    }

    /// Gradient of [`FusedOps::attention_probs`] with respect to the scores, from its output
    /// `probs` and the gradient of the output.
    fn attention_probs_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        composed::attention_probs_backward::<Self>(probs, grad, scale)
    }

    /// Gradients of [`FusedOps::fused_linear`] from its inputs and the output's gradient `grad`;
    /// `wants` says which of `[x, weight, bias]` to compute. `running` holds the weight's and
    /// bias's gradients accumulated so far (a parameter used several times, as the shared
    /// layer's are, gets one contribution per use): the returned ones include them, summed in
    /// place where the backend can.
    ///
    /// `weight_t`, if given, is `weightᵀ` as [`FusedKernels::transposed_weight`] made it.
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_t: Option<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        wants: [bool; 3],
        running: LinearGrads<FloatTensor<Self>>,
    ) -> LinearGrads<FloatTensor<Self>> {
        // The default `transposed_weight` makes none.
        let _ = weight_t;
        composed::linear_backward::<Self>(x, weight, grad, wants, running)
    }

    /// Zeros of `shape`, on `like`'s device and of its type: what a cancelled computation's
    /// fused ops return instead of their results. Cheap where the backend allows (fresh zeroed
    /// memory, no copy): a cancelled pass makes one per op.
    fn zeros(shape: Shape, like: &FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_zeros(shape, &Self::float_device(like), like.dtype().into())
    }

    /// `weight` (`[in, out]`) transposed into a contiguous `[out, in]` tensor, the layout in
    /// which [`FusedKernels::fused_linear_backward`] reads it fastest; `None` where the
    /// backend has no use for one.
    fn transposed_weight(weight: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        let _ = weight;
        None
    }

    /// [`FusedOps::fused_layer_norm`] with a β, plus the per-row `[mean, 1/√(var + eps)]`
    /// (`[rows, 2]`) its backward needs; `None` where the backend has no kernel for these
    /// inputs (the caller then records the composed ops).
    fn layer_norm_with_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        Some(composed::layer_norm_with_stats::<Self>(x, gamma, beta, eps))
    }

    /// Gradients of [`FusedKernels::layer_norm_with_stats`] from its input, γ, statistics and
    /// the output's gradient; `wants` says which of `[x, gamma, beta]` to return.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 3],
    ) -> LayerNormGrads<FloatTensor<Self>> {
        composed::layer_norm_backward::<Self>(x, gamma, stats, grad, wants)
    }
}

fn float<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// transformers' `gelu_new`, `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`, computed as
/// the identical `x · σ(2·√(2/π) · x · (1 + 0.044715 · x²))` in one fused kernel.
pub fn gelu_new<B: FusedOps, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    tensor(B::gelu_new(float(x)))
}

/// Attention probabilities `softmax(scale · scores + mask_bias)` over the keys, fused.
///
/// # Shapes
/// - `scores`: `[B, H, Q, K]`, `mask_bias`: `[B, 1, 1, K]`, output: `[B, H, Q, K]`
pub fn attention_probs<B: FusedOps>(
    scores: Tensor<B, 4>,
    mask_bias: Tensor<B, 4>,
    scale: f32,
) -> Tensor<B, 4> {
    tensor(B::attention_probs(float(scores), float(mask_bias), scale))
}

/// `lhs · rhs` over the last two dimensions (see [`FusedOps::attention_matmul`]).
///
/// # Shapes
/// - `lhs`: `[B, H, M, K]`, `rhs`: `[B, H, K, N]`, output: `[B, H, M, N]`
pub fn attention_matmul<B: FusedOps>(lhs: Tensor<B, 4>, rhs: Tensor<B, 4>) -> Tensor<B, 4> {
    tensor(B::attention_matmul(float(lhs), float(rhs)))
}

/// Per-head view `[B, heads, S, d]` of token rows `[B·S, heads·d]`.
pub fn split_heads<B: FusedOps>(x: Tensor<B, 2>, batch: usize, heads: usize) -> Tensor<B, 4> {
    tensor(B::split_heads(float(x), batch, heads))
}

/// Token rows `[B·S, heads·d]` from per-head rows `[B, heads, S, d]`.
pub fn merge_heads<B: FusedOps>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    tensor(B::merge_heads(float(x)))
}

/// `layer.forward(x)` for token rows, as one fused op (see [`FusedOps::fused_linear`]).
pub fn linear<B: FusedOps>(layer: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let bias = layer.bias.as_ref().map(|b| float(b.val()));
    tensor(B::fused_linear(float(x), float(layer.weight.val()), bias, None))
}

/// A linear layer that one forward pass applies several times (the shared layer's maps), its
/// weight prepared once for all of those applications ([`FusedOps::prepare_linear_weight`]).
pub struct RepeatedLinear<'a, B: FusedOps> {
    layer: &'a Linear<B>,
    prepared: Option<FloatTensor<B>>,
}

impl<B: FusedOps> std::fmt::Debug for RepeatedLinear<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepeatedLinear")
            .field("weight", &self.layer.weight.shape())
            .field("prepared", &self.prepared.is_some())
            .finish()
    }
}

impl<'a, B: FusedOps> RepeatedLinear<'a, B> {
    /// Prepares `layer`'s weight; make one per forward pass, as the weight changes between.
    pub fn new(layer: &'a Linear<B>) -> Self {
        Self { layer, prepared: B::prepare_linear_weight(float(layer.weight.val())) }
    }

    /// `layer.forward(x)` for token rows, as [`linear`] computes it.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let bias = self.layer.bias.as_ref().map(|b| float(b.val()));
        let weight = float(self.layer.weight.val());
        tensor(B::fused_linear(float(x), weight, bias, self.prepared.clone()))
    }
}

/// `x · weight + bias` for token rows with an explicit weight (`[in, out]`, any strides: a
/// transposed view is read in place) and bias.
pub fn linear_with<B: FusedOps>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    tensor(B::fused_linear(float(x), float(weight), bias.map(float), None))
}

/// `norm.forward(x)` over the last dimension as one fused op; `eps` must be the one `norm`
/// was built with (burn keeps it private).
pub fn layer_norm<B: FusedOps, const D: usize>(
    norm: &LayerNorm<B>,
    eps: f64,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let beta = norm.beta.as_ref().map(|b| float(b.val()));
    tensor(B::fused_layer_norm(float(x), float(norm.gamma.val()), beta, eps))
}

#[cfg(test)]
#[path = "fused_test.rs"]
mod tests;
