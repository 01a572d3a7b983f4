use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer, SimpleOptimizer};
use burn::tensor::{Tensor, TensorData};

use super::{Lamb, LambConfig, LambState, LrSchedule, clip_by_global_norm};
use crate::albert::tests::{tiny, tiny_batch};
use crate::init::normal_values;
use crate::params::param_specs;
use crate::{AlbertConfig, AlbertForPreTraining, DefaultAutodiffBackend, DefaultBackend, PRESETS};

type B = DefaultBackend;

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

fn run_burn<const D: usize>(
    init: &[f32],
    shape: [usize; D],
    grads: &[Vec<f32>],
    lrs: &[f64],
) -> Vec<f32> {
    let device = Default::default();
    let lamb = Lamb::new(LambConfig::default());
    let mut w = Tensor::<B, D>::from_data(TensorData::new(init.to_vec(), shape), &device);
    let mut state: Option<LambState<B, D>> = None;
    for (g, &lr) in grads.iter().zip(lrs) {
        let g = Tensor::<B, D>::from_data(TensorData::new(g.clone(), shape), &device);
        let (next, next_state) = lamb.step(lr, w, g, state);
        w = next;
        state = next_state;
    }
    w.into_data().to_vec::<f32>().expect("f32")
}

/// Three steps on a [3, 4] weight (decay + trust ratio), a [4] bias (neither), and an all-zero
/// [2, 2] weight (trust-ratio fallback 1), against the f64 reference. Tolerance 1e-6 absolute
/// (f32 arithmetic on values of order 0.1–1).
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
    ];
    for (init, shape, adapt) in cases {
        let n = init.len();
        let grads: Vec<Vec<f32>> =
            (0..3).map(|s| normal_values(2, &format!("g{s}{n}"), n, 0.1)).collect();
        let mut naive = NaiveLamb::new(&init, adapt);
        for (g, &lr) in grads.iter().zip(&lrs) {
            naive.step(lr, g);
        }
        let got = match *shape.as_slice() {
            [a] => run_burn(&init, [a], &grads, &lrs),
            [a, b] => run_burn(&init, [a, b], &grads, &lrs),
            _ => unreachable!("test shapes are rank 1 or 2"),
        };
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
fn lamb_steps_reduce_the_loss_of_the_tiny_model() {
    type AB = DefaultAutodiffBackend;
    // No dropout, so the test is deterministic.
    let config = AlbertConfig { classifier_dropout_prob: 0.0, ..tiny() };
    let device = Default::default();
    let mut model = AlbertForPreTraining::<AB>::init(&config, 9, &device).expect("init");
    let batch = tiny_batch().to_device::<AB>(&config, &device).expect("batch");
    let mut optim = LambConfig::default().init::<AB, AlbertForPreTraining<AB>>();
    let first = model.pretraining_loss(&batch).report().loss;
    for _ in 0..5 {
        let loss = model.pretraining_loss(&batch).loss;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let last =
        model.valid().pretraining_loss(&tiny_batch().to_device(&config, &device).expect("batch"));
    let last = last.report().loss;
    assert!(last < first - 0.5, "loss {first} -> {last}");
}
