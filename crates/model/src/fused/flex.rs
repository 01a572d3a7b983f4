//! [`FusedOps`] and [`FusedKernels`] for the Flex CPU backend: contiguous f32 buffers go
//! through [`super::kernels`]; other float types take the composed path.

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::ops::{FloatTensorOps, ModuleOps};
use burn::tensor::{Bytes, DType, Shape};

use super::gemm::{self, MatRef};
use super::grads::{LayerNormGrads, LinearGrads};
use super::kernels::{self, ScoreRows, StridedView};
use super::{FusedKernels, FusedOps, composed};

/// The tensor with its elements contiguous in storage, possibly after an offset (which
/// [`elements`] skips); copied only if they are not.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.layout().is_contiguous() { t } else { t.to_contiguous() }
}

fn elements(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

/// A new contiguous f32 tensor from computed values.
fn from_values(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(shape), DType::F32)
}

/// Whether `t` is f32 and its buffer holds exactly its elements, in order from the start: a
/// buffer a kernel may write in place once it is the only owner.
fn is_whole_f32(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32
        && t.layout().is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * std::mem::size_of::<f32>()
}

/// Runs `kernel` on `grad`'s elements in place when it owns them contiguously, else on a
/// copy; either way the result has `grad`'s shape.
fn update_in_place(grad: FlexTensor, kernel: impl FnOnce(&mut [f32])) -> FlexTensor {
    let mut grad = contiguous(grad);
    if is_whole_f32(&grad)
        && let Some(values) = grad.try_storage_mut::<f32>()
    {
        kernel(values);
        return grad;
    }
    let mut values = elements(&grad).to_vec();
    kernel(&mut values);
    from_values(values, grad.layout().shape().clone())
}

/// A gradient of `shape` produced by `add_into`, which adds its contribution to the slice it is
/// given: the `running` sum when that is an f32 buffer of this shape owned here (summed in
/// place: no new buffer, no separate add), else zeros (and `running`, if any, added after).
fn accumulate(
    running: Option<FlexTensor>,
    shape: Shape,
    add_into: impl FnOnce(&mut [f32]),
) -> FlexTensor {
    let fits = |t: &FlexTensor| t.layout().shape() == &shape && is_whole_f32(t);
    let running = match running {
        Some(mut sum) if fits(&sum) => match sum.try_storage_mut::<f32>() {
            Some(values) => {
                add_into(values);
                return sum;
            }
            None => Some(sum),
        },
        other => other,
    };
    let mut values = vec![0.0; shape.num_elements()];
    add_into(&mut values);
    let fresh = from_values(values, shape);
    match running {
        Some(sum) => Flex::float_add(fresh, sum),
        None => fresh,
    }
}

impl FusedOps for Flex {
    const DEVICE_MEMORY: bool = false;

    fn gelu_new(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return composed::gelu_new::<Flex>(x);
        }
        let x = contiguous(x);
        let input = elements(&x);
        let mut out = vec![0.0; input.len()];
        kernels::gelu_new_forward(input, &mut out);
        from_values(out, x.layout().shape().clone())
    }

    fn attention_probs(scores: FlexTensor, mask_bias: FlexTensor, scale: f32) -> FlexTensor {
        let Some(rows) = score_rows(&scores, &mask_bias) else {
            return composed::attention_probs::<Flex>(scores, mask_bias, scale);
        };
        let (scores, mask) = (contiguous(scores), contiguous(mask_bias));
        let mut out = vec![0.0; rows.len()];
        kernels::attention_probs_forward(elements(&scores), elements(&mask), rows, scale, &mut out);
        from_values(out, scores.layout().shape().clone())
    }

    fn split_heads(x: FlexTensor, batch: usize, heads: usize) -> FlexTensor {
        // Reshaping token rows and swapping two axes are views on Flex: no copy.
        composed::split_heads::<Flex>(x, batch, heads)
    }

    fn merge_heads(x: FlexTensor) -> FlexTensor {
        let Some(view) = strided_view(&x) else {
            return composed::merge_heads::<Flex>(x);
        };
        let [batch, heads, seq, width] = view.dims;
        let mut out = vec![0.0; batch * heads * seq * width];
        kernels::merge_heads(x.storage::<f32>(), view, &mut out);
        from_values(out, Shape::new([batch * seq, heads * width]))
    }

    fn fused_linear(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        // Made for a backward, which Flex alone does not record.
        _prepared: Option<FlexTensor>,
    ) -> FlexTensor {
        let bias = bias.map(contiguous);
        let (Some(lhs), Some(rhs)) = (mat_ref(&x), mat_ref(&weight)) else {
            return composed::linear::<Flex>(x, weight, bias);
        };
        let ([rows, inner], [inner2, width]) = (lhs.dims(), rhs.dims());
        let bias_values = match &bias {
            Some(b) if b.dtype() != DType::F32 || b.layout().num_elements() != width => {
                return composed::linear::<Flex>(x, weight, bias);
            }
            Some(b) => Some(elements(b)),
            None => None,
        };
        assert_eq!(inner, inner2, "linear: input width {inner} against weight rows {inner2}");
        let len = rows.checked_mul(width).expect("linear output size overflows usize");
        // The bias is the GEMM's starting value: each output row begins as a copy of it.
        let mut out = match bias_values {
            Some(b) => b.repeat(rows),
            None => vec![0.0; len],
        };
        gemm::matmul(&mut out, bias_values.is_some(), lhs, rhs);
        from_values(out, Shape::new([rows, width]))
    }

    fn prepare_linear_weight(_weight: FlexTensor) -> Option<FlexTensor> {
        None
    }

    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: Option<FlexTensor>,
        eps: f64,
    ) -> FlexTensor {
        match beta {
            Some(beta) => {
                match Self::layer_norm_with_stats(x.clone(), gamma.clone(), beta.clone(), eps) {
                    Some((out, _)) => out,
                    None => Flex::layer_norm(x, gamma, Some(beta), eps),
                }
            }
            None => Flex::layer_norm(x, gamma, None, eps),
        }
    }
}

/// `x`, γ and β as contiguous f32 rows of γ's width, or `None`.
fn norm_inputs(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
) -> Option<(FlexTensor, FlexTensor, FlexTensor, usize)> {
    let width = gamma.layout().num_elements();
    let dims = x.layout().shape().num_dims();
    let f32s = [&x, &gamma, &beta].iter().all(|t| t.dtype() == DType::F32);
    if !f32s
        || beta.layout().num_elements() != width
        || dims == 0
        || x.layout().shape()[dims - 1] != width
    {
        return None;
    }
    Some((contiguous(x), contiguous(gamma), contiguous(beta), width))
}

/// The 2-D f32 matrix view of `t` (any non-negative strides), or `None`.
fn mat_ref(t: &FlexTensor) -> Option<MatRef<'_>> {
    let layout = t.layout();
    if t.dtype() != DType::F32 || layout.shape().num_dims() != 2 {
        return None;
    }
    let rows = usize::try_from(layout.strides()[0]).ok()?;
    let cols = usize::try_from(layout.strides()[1]).ok()?;
    let s = layout.shape();
    Some(MatRef::new(t.storage::<f32>(), layout.start_offset(), [s[0], s[1]], [rows, cols]))
}

/// The 4-D f32 view of `t` with non-negative strides, or `None` (composed path) otherwise.
fn strided_view(t: &FlexTensor) -> Option<StridedView> {
    let layout = t.layout();
    if t.dtype() != DType::F32 || layout.shape().num_dims() != 4 {
        return None;
    }
    let mut strides = [0usize; 4];
    for (out, &stride) in strides.iter_mut().zip(layout.strides()) {
        *out = usize::try_from(stride).ok()?;
    }
    let s = layout.shape();
    Some(StridedView { dims: [s[0], s[1], s[2], s[3]], strides, offset: layout.start_offset() })
}

/// The row structure of `[B, H, Q, K]` f32 scores with a `[B, 1, 1, K]` f32 mask, or `None`
/// for anything else (which the composed path handles, broadcasting included).
fn score_rows(scores: &FlexTensor, mask: &FlexTensor) -> Option<ScoreRows> {
    if scores.dtype() != DType::F32 || mask.dtype() != DType::F32 {
        return None;
    }
    let (s, m) = (scores.layout().shape(), mask.layout().shape());
    if s.num_dims() != 4 || m.num_dims() != 4 {
        return None;
    }
    let (batches, heads, queries, keys) = (s[0], s[1], s[2], s[3]);
    if m[0] != batches || m[1] != 1 || m[2] != 1 || m[3] != keys {
        return None;
    }
    Some(ScoreRows { batches, rows_per_batch: heads * queries, row_len: keys })
}

impl FusedKernels for Flex {
    fn gelu_new_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return Flex::float_mul(grad, composed::gelu_new_derivative::<Flex>(x));
        }
        let x = contiguous(x);
        update_in_place(grad, |g| kernels::gelu_new_backward(elements(&x), g))
    }

    fn attention_probs_backward(probs: FlexTensor, grad: FlexTensor, scale: f32) -> FlexTensor {
        if probs.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return composed::attention_probs_backward::<Flex>(probs, grad, scale);
        }
        let probs = contiguous(probs);
        let dims = probs.layout().shape().num_dims();
        let row_len = if dims == 0 { 1 } else { probs.layout().shape()[dims - 1] };
        update_in_place(grad, |g| {
            kernels::attention_probs_backward(elements(&probs), g, row_len, scale)
        })
    }

    fn layer_norm_with_stats(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
    ) -> Option<(FlexTensor, FlexTensor)> {
        let (x, gamma, beta, width) = norm_inputs(x, gamma, beta)?;
        let values = elements(&x);
        let rows = values.len().checked_div(width).unwrap_or(0);
        let mut out = vec![0.0; values.len()];
        let mut stats = vec![0.0; 2 * rows];
        let affine = kernels::Affine { gamma: elements(&gamma), beta: elements(&beta) };
        kernels::layer_norm_forward(values, affine, eps as f32, &mut out, &mut stats);
        let shape = x.layout().shape().clone();
        Some((from_values(out, shape), from_values(stats, Shape::new([rows, 2]))))
    }

    fn layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        stats: FlexTensor,
        grad: FlexTensor,
        [want_x, want_gamma, want_beta]: [bool; 3],
    ) -> LayerNormGrads<FlexTensor> {
        let width = gamma.layout().num_elements();
        let (x, gamma, stats) = (contiguous(x), contiguous(gamma), contiguous(stats));
        let (mut sum_gamma, mut sum_beta) = (vec![0.0; width], vec![0.0; width]);
        let dx = update_in_place(grad, |g| {
            let sums = kernels::NormSums { gamma: &mut sum_gamma, beta: &mut sum_beta };
            kernels::layer_norm_backward(elements(&x), elements(&gamma), elements(&stats), g, sums);
        });
        LayerNormGrads {
            x: want_x.then_some(dx),
            gamma: want_gamma.then(|| from_values(sum_gamma, Shape::new([width]))),
            beta: want_beta.then(|| from_values(sum_beta, Shape::new([width]))),
        }
    }

    fn zeros(shape: Shape, like: &FlexTensor) -> FlexTensor {
        if like.dtype() != DType::F32 {
            return Flex::float_zeros(shape, &Default::default(), like.dtype().into());
        }
        // One zero seen through stride-0 strides: no memory to fill, whatever the shape (a
        // cancelled pass makes one per op; whoever reads it sees zeros, writes go elsewhere).
        let one = from_values(vec![0.0], Shape::from(vec![1; shape.num_dims()]));
        Flex::float_expand(one, shape)
    }

    fn transposed_weight(weight: FlexTensor) -> Option<FlexTensor> {
        if weight.dtype() != DType::F32 || weight.layout().shape().num_dims() != 2 {
            return None;
        }
        let [rows, cols] = weight.layout().shape().dims::<2>();
        let weight = contiguous(weight);
        let mut out = vec![0.0; rows * cols];
        kernels::transpose(elements(&weight), rows, cols, &mut out);
        Some(from_values(out, Shape::new([cols, rows])))
    }

    fn fused_linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        weight_t: Option<FlexTensor>,
        grad: FlexTensor,
        wants: [bool; 3],
        running: LinearGrads<FlexTensor>,
    ) -> LinearGrads<FlexTensor> {
        let grad = contiguous(grad);
        let (Some(x_ref), Some(w_ref), Some(g_ref)) =
            (mat_ref(&x), mat_ref(&weight), mat_ref(&grad))
        else {
            return composed::linear_backward::<Flex>(x, weight, grad, wants, running);
        };
        let ([rows, inner], [_, width]) = (x_ref.dims(), w_ref.dims());
        // The GEMM reads a contiguous `weightᵀ` in place; the transposed view of `weight` it
        // would pack first.
        let w_t_ref = weight_t
            .as_ref()
            .and_then(mat_ref)
            .filter(|t| t.dims() == [width, inner])
            .unwrap_or(w_ref.t());
        let [want_x, want_weight, want_bias] = wants;
        LinearGrads {
            // Transposed operands are strided views: nothing is copied to transpose.
            x: want_x.then(|| {
                accumulate(None, Shape::new([rows, inner]), |out| {
                    gemm::matmul(out, true, g_ref, w_t_ref);
                })
            }),
            weight: want_weight.then(|| {
                accumulate(running.weight, Shape::new([inner, width]), |out| {
                    gemm::matmul(out, true, x_ref.t(), g_ref);
                })
            }),
            bias: want_bias.then(|| {
                accumulate(running.bias, Shape::new([width]), |out| {
                    kernels::column_sums(elements(&grad), out);
                })
            }),
        }
    }
}
