use burn::tensor::{Distribution, Tensor, TensorData};

use super::*;
use crate::{DefaultAutodiffBackend as A, DefaultBackend as F};

fn max_diff<const D: usize, B: Backend>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    let a = a.into_data().to_vec::<f32>().expect("f32");
    let b = b.into_data().to_vec::<f32>().expect("f32");
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn composed_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    tensor(composed::gelu_new::<B>(float(x)))
}

fn composed_probs<B: Backend>(s: Tensor<B, 4>, m: Tensor<B, 4>, scale: f32) -> Tensor<B, 4> {
    tensor(composed::attention_probs::<B>(float(s), float(m), scale))
}

/// `[2, 1, 1, 9]` bias: 0 for real keys, `f32::MIN` for the second sequence's padding.
fn mask_bias<B: Backend>(device: &B::Device) -> Tensor<B, 4> {
    let mut values = vec![0.0f32; 18];
    for v in &mut values[15..] {
        *v = f32::MIN;
    }
    Tensor::from_data(TensorData::new(values, [2, 1, 1, 9]), device)
}

#[test]
fn fused_gelu_matches_the_composed_ops_forward_and_backward_also_on_strided_input() {
    let device = Default::default();
    let base = Tensor::<F, 2>::random([40, 24], Distribution::Normal(0.0, 3.0), &device);
    // A transposed view: the kernel must see logical order, not storage order.
    let input = base.transpose();
    assert!(max_diff(gelu_new(input.clone()), composed_gelu(input.clone())) < 1e-6);

    let x = Tensor::<A, 2>::from_data(input.into_data(), &device).require_grad();
    let weights = Tensor::<A, 2>::random([24, 40], Distribution::Normal(0.0, 1.0), &device);
    let fused = gelu_new(x.clone()).mul(weights.clone()).sum().backward();
    let reference = composed_gelu(x.clone()).mul(weights).sum().backward();
    let (g1, g2) = (x.grad(&fused).expect("grad"), x.grad(&reference).expect("grad"));
    assert!(max_diff(g1, g2) < 1e-5);
}

#[test]
fn fused_attention_probs_match_the_composed_ops_forward_and_backward() {
    let device = Default::default();
    let scores = Tensor::<A, 4>::random([2, 3, 9, 9], Distribution::Normal(0.0, 4.0), &device)
        .require_grad();
    let mask = mask_bias::<A>(&device);
    let weights = Tensor::<A, 4>::random([2, 3, 9, 9], Distribution::Normal(0.0, 1.0), &device);
    let fused = attention_probs(scores.clone(), mask.clone(), 0.125);
    let reference = composed_probs(scores.clone(), mask.clone(), 0.125);
    assert!(max_diff(fused.clone().inner(), reference.clone().inner()) < 1e-6);
    let probs = fused.clone().into_data().to_vec::<f32>().expect("f32");
    assert!(probs[2 * 3 * 9 * 9 - 1] == 0.0, "padding gets exactly zero attention");

    let g1 = fused.mul(weights.clone()).sum().backward();
    let g2 = reference.mul(weights).sum().backward();
    let (g1, g2) = (scores.grad(&g1).expect("grad"), scores.grad(&g2).expect("grad"));
    assert!(max_diff(g1, g2) < 1e-6);
}

#[test]
fn shapes_the_kernel_does_not_cover_take_the_composed_path() {
    let device = Default::default();
    // One mask row broadcast over the batch: not `[B, 1, 1, K]`.
    let scores = Tensor::<F, 4>::random([2, 2, 3, 5], Distribution::Normal(0.0, 1.0), &device);
    let mask = Tensor::<F, 4>::zeros([1, 1, 1, 5], &device);
    let got = attention_probs(scores.clone(), mask.clone(), 0.5);
    assert!(max_diff(got, composed_probs(scores, mask, 0.5)) < 1e-6);
}

#[test]
fn a_mask_that_wants_a_gradient_gets_one() {
    let device = Default::default();
    let scores = Tensor::<A, 4>::random([2, 1, 4, 9], Distribution::Normal(0.0, 1.0), &device);
    let mask = Tensor::<A, 4>::random([2, 1, 1, 9], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let weights = Tensor::<A, 4>::random([2, 1, 4, 9], Distribution::Normal(0.0, 1.0), &device);
    let grads = attention_probs(scores, mask.clone(), 1.0).mul(weights).sum().backward();
    let grad = mask.grad(&grads).expect("the mask's gradient");
    assert!(grad.abs().sum().into_scalar() > 0.0);
}

#[test]
fn split_and_merge_heads_match_reshape_and_swap_also_for_a_transposed_gradient() {
    let device = Default::default();
    let (batch, seq, heads, width) = (2, 5, 3, 4);
    let x = Tensor::<A, 2>::random([batch * seq, heads * width], Distribution::Default, &device)
        .require_grad();
    let q = Tensor::<A, 4>::random([batch, heads, seq, width], Distribution::Default, &device);
    let w = Tensor::<A, 2>::random([batch * seq, heads * width], Distribution::Default, &device);

    let composed_split =
        |t: Tensor<A, 2>| tensor::<A, 4>(composed::split_heads::<A>(float(t), batch, heads));
    let composed_merge = |t: Tensor<A, 4>| tensor::<A, 2>(composed::merge_heads::<A>(float(t)));

    // Scores against the keys (a transposed view), then values, then back to token rows.
    let run = |split: &dyn Fn(Tensor<A, 2>) -> Tensor<A, 4>,
               merge: &dyn Fn(Tensor<A, 4>) -> Tensor<A, 2>| {
        let k = split(x.clone());
        let scores = q.clone().matmul(k.clone().swap_dims(2, 3));
        let out = merge(scores.matmul(k));
        let grads = out.clone().mul(w.clone()).sum().backward();
        (out.inner(), x.grad(&grads).expect("grad"))
    };
    let (fused_out, fused_grad) = run(&|t| split_heads(t, batch, heads), &|t| merge_heads(t));
    let (ref_out, ref_grad) = run(&composed_split, &composed_merge);
    assert!(max_diff(fused_out, ref_out) < 1e-5);
    assert!(max_diff(fused_grad, ref_grad) < 1e-5);
}

#[test]
fn fused_linear_matches_matmul_plus_bias_for_every_gradient_also_with_a_transposed_weight() {
    let device = Default::default();
    let x = Tensor::<A, 2>::random([13, 7], Distribution::Default, &device).require_grad();
    // Stored [out, in] and used transposed, as the tied MLM decoder uses the embeddings.
    let stored = Tensor::<A, 2>::random([5, 7], Distribution::Default, &device).require_grad();
    let bias = Tensor::<A, 1>::random([5], Distribution::Default, &device).require_grad();
    let w = Tensor::<A, 2>::random([13, 5], Distribution::Default, &device);

    let fused = linear_with(x.clone(), stored.clone().transpose(), Some(bias.clone()));
    let reference = x.clone().matmul(stored.clone().transpose()) + bias.clone().unsqueeze::<2>();
    assert!(max_diff(fused.clone().inner(), reference.clone().inner()) < 1e-5);

    let g1 = fused.mul(w.clone()).sum().backward();
    let g2 = reference.mul(w).sum().backward();
    assert!(max_diff(x.grad(&g1).expect("x"), x.grad(&g2).expect("x")) < 1e-5);
    assert!(max_diff(stored.grad(&g1).expect("w"), stored.grad(&g2).expect("w")) < 1e-5);
    assert!(max_diff(bias.grad(&g1).expect("b"), bias.grad(&g2).expect("b")) < 1e-5);
}

#[test]
fn fused_linear_of_a_module_equals_its_forward_and_on_a_strided_input() {
    let device = Default::default();
    let layer = burn::nn::LinearConfig::new(6, 4).init::<F>(&device);
    // A transposed input view: the GEMM reads it through strides.
    let x = Tensor::<F, 2>::random([6, 9], Distribution::Default, &device).transpose();
    assert!(max_diff(linear(&layer, x.clone()), layer.forward(x)) < 1e-5);
    let plain = burn::nn::LinearConfig::new(6, 4).with_bias(false).init::<A>(&device);
    let x = Tensor::<A, 2>::random([3, 6], Distribution::Default, &device);
    assert!(max_diff(linear(&plain, x.clone()), plain.forward(x)) < 1e-5);
}

#[test]
fn fused_layer_norm_matches_burn_layer_norm_forward_and_every_gradient() {
    let device = Default::default();
    let eps = 1e-12;
    let mut norm = burn::nn::LayerNormConfig::new(24).with_epsilon(eps).init::<A>(&device);
    // Non-trivial γ and β, tracked like the model's parameters.
    norm.gamma = burn::module::Param::from_tensor(Tensor::random(
        [24],
        Distribution::Normal(1.0, 0.3),
        &device,
    ));
    norm.beta = Some(burn::module::Param::from_tensor(Tensor::random(
        [24],
        Distribution::Normal(0.0, 0.3),
        &device,
    )));
    let x =
        Tensor::<A, 3>::random([2, 5, 24], Distribution::Normal(3.0, 2.0), &device).require_grad();
    let w = Tensor::<A, 3>::random([2, 5, 24], Distribution::Default, &device);

    let fused = layer_norm(&norm, eps, x.clone());
    let reference = norm.forward(x.clone());
    assert!(max_diff(fused.clone().inner(), reference.clone().inner()) < 1e-5);

    let g1 = fused.mul(w.clone()).sum().backward();
    let g2 = reference.mul(w).sum().backward();
    assert!(max_diff(x.grad(&g1).expect("x"), x.grad(&g2).expect("x")) < 1e-4);
    let gamma = norm.gamma.val();
    assert!(max_diff(gamma.grad(&g1).expect("γ"), gamma.grad(&g2).expect("γ")) < 1e-4);
    let beta = norm.beta.as_ref().expect("β").val();
    assert!(max_diff(beta.grad(&g1).expect("β"), beta.grad(&g2).expect("β")) < 1e-4);
}

/// The composed layer norm with statistics and its backward (what the GPU backends run) against
/// Flex's kernels.
#[test]
fn composed_layer_norm_with_statistics_matches_the_kernels_forward_and_backward() {
    let device = Default::default();
    let eps = 1e-12;
    let random = |shape: [usize; 3], mean: f64, sd: f64| {
        Tensor::<F, 3>::random(shape, Distribution::Normal(mean, sd), &device)
    };
    let (x, grad) = (random([2, 5, 24], 3.0, 2.0), random([2, 5, 24], 0.0, 1.0));
    let gamma = Tensor::<F, 1>::random([24], Distribution::Normal(1.0, 0.3), &device);
    let beta = Tensor::<F, 1>::random([24], Distribution::Normal(0.0, 0.3), &device);
    let inputs = || (float(x.clone()), float(gamma.clone()), float(beta.clone()));

    let (x1, g1, b1) = inputs();
    let (kernel_out, kernel_stats) =
        <F as FusedKernels>::layer_norm_with_stats(x1, g1, b1, eps).expect("Flex has the kernel");
    let (x2, g2, b2) = inputs();
    let (composed_out, composed_stats) = composed::layer_norm_with_stats::<F>(x2, g2, b2, eps);
    assert!(max_diff::<3, F>(tensor(kernel_out), tensor(composed_out)) < 1e-5);
    let stats = |t| tensor::<F, 2>(t);
    assert!(max_diff(stats(kernel_stats.clone()), stats(composed_stats.clone())) < 1e-5);

    let backward = |stats, composed: bool| {
        let (x, gamma, grad) = (float(x.clone()), float(gamma.clone()), float(grad.clone()));
        if composed {
            composed::layer_norm_backward::<F>(x, gamma, stats, grad, [true; 3])
        } else {
            <F as FusedKernels>::layer_norm_backward(x, gamma, stats, grad, [true; 3])
        }
    };
    let (kernel, composed) = (backward(kernel_stats, false), backward(composed_stats, true));
    let x_grads = (kernel.x.expect("x"), composed.x.expect("x"));
    assert!(max_diff::<3, F>(tensor(x_grads.0), tensor(x_grads.1)) < 1e-4);
    for (k, c) in [(kernel.gamma, composed.gamma), (kernel.beta, composed.beta)] {
        assert!(max_diff::<1, F>(tensor(k.expect("γ/β")), tensor(c.expect("γ/β"))) < 1e-4);
    }
}

#[test]
fn a_linear_layer_applied_several_times_sums_its_gradients_like_burn() {
    let device = Default::default();
    let layer = burn::nn::LinearConfig::new(8, 8).init::<A>(&device);
    let x = Tensor::<A, 2>::random([5, 8], Distribution::Default, &device).require_grad();
    let w = Tensor::<A, 2>::random([5, 8], Distribution::Default, &device);
    // Three applications of one layer, as the shared ALBERT layer is applied L times; the
    // gradient each application adds is summed into the running one in place.
    let mut fused = x.clone();
    let mut reference = x.clone();
    for _ in 0..3 {
        fused = gelu_new(linear(&layer, fused));
        reference = composed_gelu(layer.forward(reference));
    }
    let g1 = fused.mul(w.clone()).sum().backward();
    let g2 = reference.mul(w).sum().backward();
    let weight = layer.weight.val();
    let bias = layer.bias.as_ref().expect("bias").val();
    assert!(max_diff(weight.grad(&g1).expect("w"), weight.grad(&g2).expect("w")) < 1e-5);
    assert!(max_diff(bias.grad(&g1).expect("b"), bias.grad(&g2).expect("b")) < 1e-5);
    assert!(max_diff(x.grad(&g1).expect("x"), x.grad(&g2).expect("x")) < 1e-5);
}

#[test]
fn a_repeated_linear_reads_its_prepared_transpose_and_gets_burns_gradients() {
    let device = Default::default();
    // Not square, so a transpose taken the wrong way round cannot pass for the right one.
    let layer = burn::nn::LinearConfig::new(7, 5).init::<A>(&device);
    let repeated = RepeatedLinear::new(&layer);
    let prepared = repeated.prepared.clone().expect("autodiff prepares a transpose");
    let prepared: Tensor<A, 2> = tensor(prepared);
    assert_eq!(prepared.dims(), [5, 7]);
    assert!(max_diff(prepared.inner(), layer.weight.val().inner().transpose()) == 0.0);
    assert!(
        RepeatedLinear::new(&burn::nn::LinearConfig::new(7, 5).init::<F>(&device))
            .prepared
            .is_none()
    );

    let inputs: Vec<Tensor<A, 2>> = (0..3)
        .map(|_| Tensor::random([4, 7], Distribution::Default, &device).require_grad())
        .collect();
    let w = Tensor::<A, 2>::random([4, 5], Distribution::Default, &device);
    let loss = |forward: &dyn Fn(Tensor<A, 2>) -> Tensor<A, 2>| {
        let parts = inputs.iter().map(|x| forward(x.clone()).mul(w.clone()).sum());
        parts.reduce(|a, b| a + b).expect("three inputs").backward()
    };
    let g1 = loss(&|x| repeated.forward(x));
    let g2 = loss(&|x| layer.forward(x));
    for x in &inputs {
        assert!(max_diff(x.grad(&g1).expect("x"), x.grad(&g2).expect("x")) < 1e-5);
    }
    let weight = layer.weight.val();
    assert!(max_diff(weight.grad(&g1).expect("w"), weight.grad(&g2).expect("w")) < 1e-5);
}

#[test]
fn a_bias_that_broadcasts_gets_a_gradient_of_its_own_shape() {
    let device = Default::default();
    let x = Tensor::<A, 2>::random([6, 4], Distribution::Default, &device).require_grad();
    let weight = Tensor::<A, 2>::random([4, 3], Distribution::Default, &device).require_grad();
    let bias = Tensor::<A, 1>::random([1], Distribution::Default, &device).require_grad();
    let w = Tensor::<A, 2>::random([6, 3], Distribution::Default, &device);
    let fused = linear_with(x.clone(), weight.clone(), Some(bias.clone()));
    let reference = x.clone().matmul(weight.clone()) + bias.clone().unsqueeze::<2>();
    assert!(max_diff(fused.clone().inner(), reference.clone().inner()) < 1e-5);
    let g1 = fused.mul(w.clone()).sum().backward();
    let g2 = reference.mul(w).sum().backward();
    let (b1, b2) = (bias.grad(&g1).expect("b"), bias.grad(&g2).expect("b"));
    assert_eq!(b1.dims(), [1]);
    assert!(max_diff(b1, b2) < 1e-5);
    assert!(max_diff(weight.grad(&g1).expect("w"), weight.grad(&g2).expect("w")) < 1e-5);
}

/// The attention's batched matmul is burn's matmul, forward and backward, to the bit; with
/// broadcast operands it falls back to burn's recorded op.
#[test]
fn attention_matmul_is_burns_matmul_to_the_bit() {
    let device = Default::default();
    let bits = |t: Tensor<F, 4>| -> Vec<u32> {
        t.into_data().to_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect()
    };
    let lhs = Tensor::<A, 4>::random([2, 3, 9, 5], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let rhs = Tensor::<A, 4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let weights = Tensor::<A, 4>::random([2, 3, 9, 7], Distribution::Normal(0.0, 1.0), &device);
    let fused = attention_matmul(lhs.clone(), rhs.clone());
    let reference = lhs.clone().matmul(rhs.clone());
    assert_eq!(bits(fused.clone().inner()), bits(reference.clone().inner()));
    let g1 = fused.mul(weights.clone()).sum().backward();
    let g2 = reference.mul(weights).sum().backward();
    for t in [&lhs, &rhs] {
        assert_eq!(bits(t.grad(&g1).expect("grad")), bits(t.grad(&g2).expect("grad")));
    }
    let broadcast = Tensor::<A, 4>::random([1, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(attention_matmul(lhs, broadcast).dims(), [2, 3, 9, 7]);
}
