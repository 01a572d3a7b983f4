//! [`FusedOps`] for `Autodiff<B>`: the inner backend's fused forward is recorded as one graph
//! node whose backward is the inner backend's fused backward kernel.
//!
//! Once the computation is cancelled ([`cancel::requested`]), every op here skips its kernel
//! and returns zeros of the right shape, forward and backward, so that an aborted step runs
//! out at once: training runs on this backend, and these ops hold nearly all of a step's
//! arithmetic and memory traffic, spread over every layer of both passes.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::ops::{FloatTensorOps, ModuleOps};
use burn::tensor::{Shape, TensorMetadata};

use super::grads::{LayerNormGrads, LinearGrads};
use super::{FusedKernels, FusedOps, composed};
use crate::cancel;

/// Backward of `gelu_new`; the state is the forward input.
#[derive(Debug)]
struct GeluNewBackward;

impl<B: FusedKernels> Backward<B, 1> for GeluNewBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            if cancel::requested() { zeros_like::<B>(&grad) } else { B::gelu_new_backward(x, grad) }
        });
    }
}

/// Backward of the attention softmax; the state is the forward output and the scale.
#[derive(Debug)]
struct AttentionProbsBackward;

impl<B: FusedKernels> Backward<B, 1> for AttentionProbsBackward {
    type State = (FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (probs, scale) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            if cancel::requested() {
                zeros_like::<B>(&grad)
            } else {
                B::attention_probs_backward(probs, grad, scale)
            }
        });
    }
}

/// Backward of the attention's batched matmul (as burn's matmul backward computes it: `grad ·
/// rhsᵀ` and `lhsᵀ · grad`); the state is both operands.
#[derive(Debug)]
struct AttentionMatmulBackward;

impl<B: FusedKernels> Backward<B, 2> for AttentionMatmulBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs) = ops.state;
        let (lhs_like, rhs_like) = (lhs.clone(), rhs.clone());
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| {
                if cancel::requested() {
                    zeros_like::<B>(&lhs_like)
                } else {
                    B::float_matmul(grad, B::float_transpose(rhs))
                }
            },
            |grad| {
                if cancel::requested() {
                    zeros_like::<B>(&rhs_like)
                } else {
                    B::float_matmul(B::float_transpose(lhs), grad)
                }
            },
        );
    }
}

/// Backward of `split_heads`: the gradient's per-head rows gathered back into token rows.
#[derive(Debug)]
struct SplitHeadsBackward;

impl<B: FusedKernels> Backward<B, 1> for SplitHeadsBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            if cancel::requested() {
                B::zeros(merged_shape(&grad.shape()), &grad)
            } else {
                B::merge_heads(grad)
            }
        });
    }
}

/// Backward of `merge_heads`: the gradient's token rows viewed per head again; the state is
/// `(batch, heads)`.
#[derive(Debug)]
struct MergeHeadsBackward;

impl<B: FusedKernels> Backward<B, 1> for MergeHeadsBackward {
    type State = (usize, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (batch, heads) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            if cancel::requested() {
                B::zeros(split_shape(&grad.shape(), batch, heads), &grad)
            } else {
                B::split_heads(grad, batch, heads)
            }
        });
    }
}

/// Backward of `linear` with a bias. The state is the input, and the weight and bias as
/// tracked tensors: their gradients accumulated so far (the shared layer's weights get one
/// contribution per layer) are taken out of `grads` so that this step's contribution is
/// summed into them in place rather than added as a separate tensor.
#[derive(Debug)]
struct LinearBackward;

/// The input, the weight and bias as tracked tensors, and the prepared `weightᵀ` if any.
type LinearState<B> =
    (FloatTensor<B>, FloatTensor<Autodiff<B>>, FloatTensor<Autodiff<B>>, Option<FloatTensor<B>>);

impl<B: FusedKernels> Backward<B, 3> for LinearBackward {
    type State = LinearState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight_param, bias_param, weight_t) = ops.state;
        let weight = weight_param.primitive.clone();
        let wants = [x_node.is_some(), weight_node.is_some(), bias_node.is_some()];
        let running = LinearGrads {
            x: None,
            weight: weight_node.as_ref().and_then(|_| grads.remove::<B>(&weight_param)),
            bias: bias_node.as_ref().and_then(|_| grads.remove::<B>(&bias_param)),
        };
        let computed = if cancel::requested() {
            // The running sums stand in for this application's contribution.
            let [want_x, want_weight, want_bias] = wants;
            LinearGrads {
                x: want_x.then(|| zeros_like::<B>(&x)),
                weight: running.weight.or_else(|| want_weight.then(|| zeros_like::<B>(&weight))),
                bias: running
                    .bias
                    .or_else(|| want_bias.then(|| zeros_like::<B>(&bias_param.primitive))),
            }
        } else {
            B::fused_linear_backward(x, weight, weight_t, grad, wants, running)
        };
        register_each::<B>(
            grads,
            [
                (x_node.map(|n| n.id), computed.x),
                (weight_node.map(|n| n.id), computed.weight),
                (bias_node.map(|n| n.id), computed.bias),
            ],
        );
    }
}

/// Backward of a layer norm with β; the state is the input, γ and the per-row statistics.
#[derive(Debug)]
struct LayerNormBackward;

impl<B: FusedKernels> Backward<B, 3> for LayerNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, stats) = ops.state;
        let wants = [x_node.is_some(), gamma_node.is_some(), beta_node.is_some()];
        let computed = if cancel::requested() {
            let [want_x, want_gamma, want_beta] = wants;
            LayerNormGrads {
                x: want_x.then(|| zeros_like::<B>(&x)),
                gamma: want_gamma.then(|| zeros_like::<B>(&gamma)),
                beta: want_beta.then(|| zeros_like::<B>(&gamma)),
            }
        } else {
            B::layer_norm_backward(x, gamma, stats, grad, wants)
        };
        register_each::<B>(
            grads,
            [
                (x_node.map(|n| n.id), computed.x),
                (gamma_node.map(|n| n.id), computed.gamma),
                (beta_node.map(|n| n.id), computed.beta),
            ],
        );
    }
}

/// `[B, heads, S, d]` of `[B·S, heads·d]` token rows.
fn split_shape(rows: &Shape, batch: usize, heads: usize) -> Shape {
    let (tokens, width) = (rows[0], rows[1]);
    Shape::new([batch, heads, tokens / batch.max(1), width / heads.max(1)])
}

/// `[B·S, heads·d]` of `[B, heads, S, d]` per-head rows.
fn merged_shape(per_head: &Shape) -> Shape {
    Shape::new([per_head[0] * per_head[2], per_head[1] * per_head[3]])
}

/// Zeros shaped like `t`: what a cancelled computation gets instead of a kernel's result.
fn zeros_like<B: FusedKernels>(t: &FloatTensor<B>) -> FloatTensor<B> {
    B::zeros(t.shape(), t)
}

/// `kernel()`, or zeros shaped like `like` once the computation is cancelled.
fn skippable<B: FusedKernels>(
    like: &FloatTensor<B>,
    kernel: impl FnOnce() -> FloatTensor<B>,
) -> FloatTensor<B> {
    if cancel::requested() { zeros_like::<B>(like) } else { kernel() }
}

/// Registers each computed gradient with its parent (`None` where the parent is untracked).
fn register_each<B: FusedKernels>(
    grads: &mut Gradients,
    pairs: [(Option<NodeId>, Option<FloatTensor<B>>); 3],
) {
    for (node, grad) in pairs {
        if let (Some(node), Some(grad)) = (node, grad) {
            grads.register::<B>(node, grad);
        }
    }
}

impl<B: FusedKernels, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    const DEVICE_MEMORY: bool = B::DEVICE_MEMORY;

    fn gelu_new(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Compute-bound: the input is kept for the backward pass rather than recomputed.
        match GeluNewBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = skippable::<B>(&x.primitive, || B::gelu_new(x.primitive.clone()));
                prep.finish(x.primitive, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(skippable::<B>(&x.primitive, || B::gelu_new(x.primitive.clone())))
            }
        }
    }

    fn attention_probs(
        scores: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        if mask_bias.is_tracked() {
            // The kernel treats the mask as a constant; a mask that wants a gradient takes the
            // composed ops, whose graph gives it one.
            return composed::attention_probs::<Self>(scores, mask_bias, scale);
        }
        match AttentionProbsBackward.prepare::<C>([scores.node.clone()]).compute_bound().stateful()
        {
            OpsKind::Tracked(prep) => {
                let probs = skippable::<B>(&scores.primitive, || {
                    B::attention_probs(scores.primitive.clone(), mask_bias.primitive, scale)
                });
                prep.finish((probs.clone(), scale), probs)
            }
            OpsKind::UnTracked(prep) => prep.finish(skippable::<B>(&scores.primitive, || {
                B::attention_probs(scores.primitive.clone(), mask_bias.primitive, scale)
            })),
        }
    }

    fn attention_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let (l, r) = (lhs.primitive.shape(), rhs.primitive.shape());
        let rank = l.num_dims();
        if rank < 2 || r.num_dims() != rank || l[..rank - 2] != r[..rank - 2] {
            // Broadcast operands: burn's own recorded matmul.
            return Self::float_matmul(lhs, rhs);
        }
        let product = |lhs: &FloatTensor<B>, rhs: &FloatTensor<B>| {
            if cancel::requested() {
                let mut dims = l.to_vec();
                dims[rank - 1] = r[rank - 1];
                B::zeros(Shape::from(dims), lhs)
            } else {
                B::float_matmul(lhs.clone(), rhs.clone())
            }
        };
        let nodes = [lhs.node.clone(), rhs.node.clone()];
        match AttentionMatmulBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = product(&lhs.primitive, &rhs.primitive);
                prep.finish((lhs.primitive, rhs.primitive), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(product(&lhs.primitive, &rhs.primitive)),
        }
    }

    fn split_heads(x: FloatTensor<Self>, batch: usize, heads: usize) -> FloatTensor<Self> {
        let out = if cancel::requested() {
            B::zeros(split_shape(&x.primitive.shape(), batch, heads), &x.primitive)
        } else {
            B::split_heads(x.primitive, batch, heads)
        };
        SplitHeadsBackward.prepare::<C>([x.node.clone()]).compute_bound().stateless(out)
    }

    fn merge_heads(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let dims = x.primitive.shape();
        let (batch, heads) = (dims[0], dims[1]);
        let out = if cancel::requested() {
            B::zeros(merged_shape(&dims), &x.primitive)
        } else {
            B::merge_heads(x.primitive)
        };
        match MergeHeadsBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((batch, heads), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        prepared: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let width = weight.primitive.shape().dims::<2>()[1];
        let bias = match bias {
            Some(b) if b.primitive.shape().num_dims() == 1 && b.primitive.shape()[0] == width => b,
            // Every linear map of the model has a `[out]` bias; without one (or with a bias
            // that broadcasts), burn's ops record it, gradients' shapes included.
            other => return composed::linear::<Self>(x, weight, other),
        };
        if cancel::requested() {
            // Zeros of the output's shape, recorded with the real inputs so the graph (and its
            // backward, which skips too) keeps its shape.
            let rows = x.primitive.shape().num_elements() / weight.primitive.shape().dims::<2>()[0];
            let out = B::zeros(Shape::new([rows, width]), &x.primitive);
            let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
            return match LinearBackward.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((x.primitive, weight, bias, None), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            };
        }
        let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
        match LinearBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::fused_linear(
                    x.primitive.clone(),
                    weight.primitive.clone(),
                    Some(bias.primitive.clone()),
                    None,
                );
                let weight_t = prepared.map(|p| p.primitive);
                prep.finish((x.primitive, weight, bias, weight_t), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_linear(
                x.primitive,
                weight.primitive,
                Some(bias.primitive),
                None,
            )),
        }
    }

    fn prepare_linear_weight(weight: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        if cancel::requested() {
            return None;
        }
        // A constant of the pass: its gradient flows through the weight itself.
        B::transposed_weight(weight.primitive).map(<Self as AutodiffBackend>::from_inner)
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let Some(beta) = beta else {
            return Self::layer_norm(x, gamma, None, eps);
        };
        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        if cancel::requested() {
            // The backward of a cancelled pass skips too and never reads the statistics.
            let out = zeros_like::<B>(&x.primitive);
            let stats = B::zeros(Shape::new([1]), &x.primitive);
            return match LayerNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((x.primitive, gamma.primitive, stats), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            };
        }
        let Some((out, stats)) = B::layer_norm_with_stats(
            x.primitive.clone(),
            gamma.primitive.clone(),
            beta.primitive.clone(),
            eps,
        ) else {
            // No kernel for these inputs: burn's composed ops, recorded op by op.
            return Self::layer_norm(x, gamma, Some(beta), eps);
        };
        match LayerNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, gamma.primitive, stats), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
