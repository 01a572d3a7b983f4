use burn::module::AutodiffModule;
use burn::optim::GradientsParams;

use super::{
    FlatState, FlatStateMut, Lamb, LambConfig, LrSchedule, MomentInputs, MomentOutputs, MomentRule,
    ParamStep, clip_by_global_norm, moment_ranges,
};
use crate::albert::AlbertForPreTraining;
use crate::albert::tests::{tiny, tiny_batch};
use crate::config::AlbertConfig;
use crate::config::PRESETS;
use crate::flat::sum_squares;
use crate::grads::GradLayout;
use crate::init::normal_values;
use crate::params::param_specs;
use crate::{DefaultAutodiffBackend, DefaultBackend};

/// ALBERT's LAMB on f64 vectors, written from the published formulas.
struct NaiveLamb {
    w: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    adapt: bool,
}

impl NaiveLamb {
    fn new(w: &[f32], adapt: bool) -> Self {
        let n = w.len();
        Self {
            w: w.iter().map(|&x| f64::from(x)).collect(),
            m: vec![0.0; n],
            v: vec![0.0; n],
            adapt,
        }
    }

    fn step(&mut self, lr: f64, g: &[f32]) {
        let (b1, b2, eps, wd) = (0.9, 0.999, 1e-6, 0.01);
        let mut update = Vec::with_capacity(g.len());
        for (i, &gi) in g.iter().enumerate() {
            let gi = f64::from(gi);
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * gi;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * gi * gi;
            let mut u = self.m[i] / (self.v[i].sqrt() + eps);
            if self.adapt {
                u += wd * self.w[i];
            }
            update.push(u);
        }
        let mut ratio = 1.0;
        if self.adapt {
            let w_norm = self.w.iter().map(|x| x * x).sum::<f64>().sqrt();
            let u_norm = update.iter().map(|x| x * x).sum::<f64>().sqrt();
            if w_norm > 0.0 && u_norm > 0.0 {
                ratio = w_norm / u_norm;
            }
        }
        for (w, u) in self.w.iter_mut().zip(&update) {
            *w -= ratio * lr * u;
        }
    }
}

/// Runs `grads.len()` steps of one parameter through [`Lamb::step_param`].
fn run_flat(init: &[f32], adapt: bool, grads: &[Vec<f32>], lrs: &[f64]) -> Vec<f32> {
    let lamb = Lamb::new(LambConfig::default());
    let n = init.len();
    let mut w = init.to_vec();
    let mut moments: Option<(Vec<f32>, Vec<f32>)> = None;
    for (g, &lr) in grads.iter().zip(lrs) {
        let (mut w_out, mut m_out, mut v_out) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let step = ParamStep {
            adapt,
            weights: &w,
            moments: moments.as_ref().map(|(m, v)| (m.as_slice(), v.as_slice())),
            grad: g,
            weights_out: &mut w_out,
            m_out: &mut m_out,
            v_out: &mut v_out,
        };
        lamb.step_param(lr, step).expect("step");
        w = w_out;
        moments = Some((m_out, v_out));
    }
    w
}

/// Three steps on a [3, 4] weight (decay + trust ratio), a [4] bias (neither), an all-zero
/// [2, 2] weight (trust-ratio fallback 1) and a [17, 59] weight, against the f64 reference.
/// Tolerance 1e-6 absolute (f32 arithmetic on values of order 0.1–1).
#[test]
fn matches_naive_reference_for_three_steps() {
    let schedule = LrSchedule { peak_lr: 0.05, warmup_steps: 2, total_steps: 10, power: 1.0 };
    let lrs: Vec<f64> = (1..=3).map(|s| schedule.lr_at(s)).collect();
    // Step 1 is in warm-up (0.05 * 1/2); from step 2 on, the decay (0.05 * (1 - step/10)).
    for (got, want) in lrs.iter().zip([0.025, 0.04, 0.035]) {
        assert!((got - want).abs() < 1e-15, "{lrs:?}");
    }
    let cases: Vec<(Vec<f32>, Vec<usize>, bool)> = vec![
        (normal_values(1, "w", 12, 0.5), vec![3, 4], true),
        (normal_values(1, "b", 4, 0.5), vec![4], false),
        (vec![0.0; 4], vec![2, 2], true),
        // Many whole lanes of the fused pass and a remainder.
        (normal_values(1, "big", 1003, 0.5), vec![17, 59], true),
    ];
    for (init, shape, adapt) in cases {
        let n = init.len();
        let grads: Vec<Vec<f32>> =
            (0..3).map(|s| normal_values(2, &format!("g{s}{n}"), n, 0.1)).collect();
        let mut naive = NaiveLamb::new(&init, adapt);
        for (g, &lr) in grads.iter().zip(&lrs) {
            naive.step(lr, g);
        }
        assert_eq!(adapt, shape.len() >= 2, "the case follows the rank rule");
        let got = run_flat(&init, adapt, &grads, &lrs);
        let worst =
            got.iter().zip(&naive.w).map(|(&a, b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "{shape:?}: max abs diff {worst}");
        let moved = got.iter().zip(&init).any(|(a, b)| a != b);
        assert!(moved, "{shape:?}: the weights moved");
    }
}

#[test]
fn rank_rule_equals_albert_name_rule_on_every_preset() {
    for preset in PRESETS {
        for spec in param_specs(&AlbertConfig::preset(preset).expect("preset")) {
            assert_eq!(spec.weight_decay, spec.shape.len() >= 2, "{preset} {}", spec.name);
        }
    }
}

#[test]
fn schedule_warms_up_then_decays_linearly_to_zero() {
    let s = LrSchedule { peak_lr: 1e-3, warmup_steps: 100, total_steps: 1000, power: 1.0 };
    assert_eq!(s.lr_at(0), 0.0);
    assert!((s.lr_at(50) - 5e-4).abs() < 1e-15);
    assert!((s.lr_at(100) - 9e-4).abs() < 1e-15);
    assert!((s.lr_at(500) - 5e-4).abs() < 1e-15);
    assert_eq!(s.lr_at(1000), 0.0);
    assert_eq!(s.lr_at(5000), 0.0);
}

#[test]
fn global_norm_clipping() {
    let mut big = vec![3.0, 4.0, 0.0];
    assert_eq!(clip_by_global_norm(&mut big, 1.0), 5.0);
    assert!((big[0] - 0.6).abs() < 1e-7 && (big[1] - 0.8).abs() < 1e-7);
    let mut small = vec![0.3, 0.4];
    assert_eq!(clip_by_global_norm(&mut small, 1.0), 0.5);
    assert_eq!(small, vec![0.3, 0.4]);
}

#[test]
fn mismatched_lengths_are_refused_naming_the_slice() {
    let lamb = Lamb::new(LambConfig::default());
    let (mut w_out, mut m_out, mut v_out) = (vec![0.0; 3], vec![0.0; 2], vec![0.0; 3]);
    let step = ParamStep {
        adapt: true,
        weights: &[1.0, 2.0, 3.0],
        moments: None,
        grad: &[0.1, 0.2, 0.3],
        weights_out: &mut w_out,
        m_out: &mut m_out,
        v_out: &mut v_out,
    };
    let err = lamb.step_param(0.1, step).expect_err("m_out is short");
    assert!(err.to_string().contains("m_out"), "{err}");

    let layout = GradLayout::from_config(&tiny());
    let n = layout.len();
    let (params, grads) = (vec![0.0; n], vec![0.0; n]);
    let (mut new_params, mut new_moments) = (vec![0.0; n], vec![0.0; 2 * n]);
    let old = FlatState { parameters: &params, moments: &[0.0; 5] };
    let new = FlatStateMut { parameters: &mut new_params, moments: &mut new_moments };
    let err = lamb.step(0.1, &layout, &grads, old, new).expect_err("moments section");
    assert!(err.to_string().contains("moments section"), "{err}");
}

#[test]
fn moments_of_each_parameter_sit_side_by_side() {
    assert_eq!(moment_ranges(0, 3), (0..3, 3..6));
    assert_eq!(moment_ranges(3, 2), (6..8, 8..10));
}

/// The flat path end to end: flatten, clip, LAMB on the flat state, parameters written back
/// into the model; five steps on one batch must bring its loss down.
#[test]
fn lamb_steps_reduce_the_loss_of_the_tiny_model() {
    type AB = DefaultAutodiffBackend;
    // No dropout, so the test is deterministic.
    let config = AlbertConfig { classifier_dropout_prob: 0.0, ..tiny() };
    let device = Default::default();
    let mut model = AlbertForPreTraining::<AB>::init(&config, 9, &device).expect("init");
    let layout = GradLayout::from_module(&model).expect("layout");
    let n = layout.len();
    let mut params = layout.read_params(&model).expect("params");
    let mut moments = Vec::new();
    let lamb = Lamb::new(LambConfig::default());
    let batch = tiny_batch().to_device::<AB>(&config, &device).expect("batch");
    let first = model.pretraining_loss(&batch).report().loss;
    for _ in 0..5 {
        let loss = model.pretraining_loss(&batch).loss;
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut flat = layout.flatten::<DefaultBackend>(&mut grads).expect("flatten");
        clip_by_global_norm(&mut flat, 1.0);
        let (mut new_params, mut new_moments) = (vec![0.0; n], vec![0.0; 2 * n]);
        let old = FlatState { parameters: &params, moments: &moments };
        let new = FlatStateMut { parameters: &mut new_params, moments: &mut new_moments };
        lamb.step(1e-2, &layout, &flat, old, new).expect("step");
        (params, moments) = (new_params, new_moments);
        model = layout.write_params(model, &params, &device).expect("write back");
    }
    let written = layout.read_params(&model).expect("params");
    assert_eq!(written, params, "the model holds exactly the flat parameters");
    let last =
        model.valid().pretraining_loss(&tiny_batch().to_device(&config, &device).expect("batch"));
    let last = last.report().loss;
    assert!(last < first - 0.5, "loss {first} -> {last}");
}

/// The fused moment pass sums Σw² and Σu² itself, lane for lane as `sum_squares` does; the
/// trust ratio must be the same bits as norms taken in passes of their own.
#[test]
fn the_moment_pass_sums_squares_with_the_bits_of_sum_squares() {
    let rule = MomentRule { b1: 0.9, b2: 0.999, g1: 0.1, g2: 0.001, eps: 1e-6, decay: Some(0.01) };
    for len in [0, 1, 7, 8, 9, 1003] {
        let values = |seed: &str| normal_values(3, seed, len, 0.5);
        let (grad, m, weights) = (values("g"), values("m"), values("w"));
        let v: Vec<f32> = values("v").iter().map(|x| x * x).collect();
        let (mut m_out, mut v_out, mut update) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        let inputs = MomentInputs { grad: &grad, m: &m, v: &v, weights: &weights };
        let outputs = MomentOutputs { m: &mut m_out, v: &mut v_out, update: &mut update };
        let (w_squares, u_squares) = rule.apply(inputs, outputs);
        assert_eq!(w_squares.to_bits(), sum_squares(&weights).to_bits(), "Σw², length {len}");
        assert_eq!(u_squares.to_bits(), sum_squares(&update).to_bits(), "Σu², length {len}");
    }
}
