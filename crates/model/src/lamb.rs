//! LAMB as ALBERT pretrains with it (google-research/albert `lamb_optimizer.py` +
//! `optimization.create_optimizer`): β1 0.9, β2 0.999, ε 1e-6, no bias correction, decoupled
//! weight decay 0.01 and a per-tensor trust ratio, both skipped for LayerNorm and bias
//! parameters; linear warm-up then polynomial (power 1) decay to 0; clipping by global norm.
//!
//! burn's `SimpleOptimizer` sees tensors, not names. In ALBERT every LayerNorm and bias
//! parameter is rank 1 and every other parameter (embeddings, Linear weights) rank ≥ 2, so
//! "rank ≥ 2" is exactly the recipe's name rule; a test checks this on every preset.

use burn::module::AutodiffModule;
use burn::optim::SimpleOptimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::prelude::Backend;
use burn::record::Record;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

/// LAMB hyper-parameters (defaults: ALBERT's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LambConfig {
    /// First-moment decay.
    pub beta_1: f64,
    /// Second-moment decay.
    pub beta_2: f64,
    /// Added to √v.
    pub epsilon: f64,
    /// Decoupled weight decay for rank ≥ 2 parameters.
    pub weight_decay_rate: f64,
}

impl Default for LambConfig {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-6, weight_decay_rate: 0.01 }
    }
}

impl LambConfig {
    /// The optimizer for a module (state keyed by the module's path-derived ids).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> OptimizerAdaptor<Lamb, M, B> {
        OptimizerAdaptor::from(Lamb { config: *self })
    }
}

/// The LAMB update rule.
#[derive(Debug, Clone)]
pub struct Lamb {
    config: LambConfig,
}

impl Lamb {
    /// A LAMB rule with `config`.
    pub fn new(config: LambConfig) -> Self {
        Self { config }
    }
}

/// Per-parameter LAMB state: the two moments (part of checkpoints and state transfer).
#[derive(Record, Clone, Debug)]
pub struct LambState<B: Backend, const D: usize> {
    /// First moment m.
    pub moment_1: Tensor<B, D>,
    /// Second moment v.
    pub moment_2: Tensor<B, D>,
}

impl<B: Backend> SimpleOptimizer<B> for Lamb {
    type State<const D: usize> = LambState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let c = &self.config;
        let (moment_1, moment_2) = match state {
            Some(s) => (
                s.moment_1.mul_scalar(c.beta_1) + grad.clone().mul_scalar(1.0 - c.beta_1),
                s.moment_2.mul_scalar(c.beta_2) + grad.square().mul_scalar(1.0 - c.beta_2),
            ),
            None => {
                (grad.clone().mul_scalar(1.0 - c.beta_1), grad.square().mul_scalar(1.0 - c.beta_2))
            }
        };
        let mut update = moment_1.clone() / moment_2.clone().sqrt().add_scalar(c.epsilon);
        if D >= 2 {
            update = update + tensor.clone().mul_scalar(c.weight_decay_rate);
            let w_norm = tensor.clone().square().sum().sqrt();
            let u_norm = update.clone().square().sum().sqrt();
            let fallback =
                w_norm.clone().lower_equal_elem(0.0).bool_or(u_norm.clone().lower_equal_elem(0.0));
            let ratio = (w_norm / u_norm).mask_fill(fallback, 1.0);
            update = update * ratio.reshape([1usize; D]);
        }
        let next = tensor - update.mul_scalar(lr);
        (next, Some(LambState { moment_1, moment_2 }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        LambState {
            moment_1: state.moment_1.to_device(device),
            moment_2: state.moment_2.to_device(device),
        }
    }
}

/// Linear warm-up to `peak_lr`, then polynomial decay to 0 at `total_steps` (TF's
/// `polynomial_decay` with `end_learning_rate = 0`, `cycle = False`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Learning rate reached at the end of warm-up.
    pub peak_lr: f64,
    /// Warm-up steps (0: none).
    pub warmup_steps: u64,
    /// Step at which the rate reaches 0.
    pub total_steps: u64,
    /// Decay power (1: linear).
    pub power: f64,
}

impl LrSchedule {
    /// The learning rate used for global step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * step as f64 / self.warmup_steps as f64;
        }
        if self.total_steps == 0 {
            return 0.0;
        }
        let done = step.min(self.total_steps) as f64 / self.total_steps as f64;
        self.peak_lr * (1.0 - done).powf(self.power)
    }
}

/// Scales `buffer` (all gradients, flat) so its L2 norm is at most `max_norm`, as
/// `tf.clip_by_global_norm`; returns the norm before clipping.
pub fn clip_by_global_norm(buffer: &mut [f32], max_norm: f32) -> f32 {
    let norm = buffer.iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>().sqrt() as f32;
    if norm > max_norm && norm.is_finite() {
        let scale = max_norm / norm;
        buffer.iter_mut().for_each(|g| *g *= scale);
    }
    norm
}

#[cfg(test)]
#[path = "lamb_test.rs"]
mod tests;
