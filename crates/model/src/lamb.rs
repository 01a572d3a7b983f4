//! LAMB as ALBERT pretrains with it (google-research/albert `lamb_optimizer.py` +
//! `optimization.create_optimizer`): β1 0.9, β2 0.999, ε 1e-6, no bias correction, decoupled
//! weight decay 0.01 and a per-tensor trust ratio, both skipped for LayerNorm and bias
//! parameters; linear warm-up then polynomial (power 1) decay to 0; clipping by global norm.
//!
//! The rule runs on flat host buffers in a [`GradLayout`]'s order, not through burn's optimizer:
//! a replica's parameters and moments *are* the flat state that votes hash, peers transfer and
//! checkpoints store, so nothing is exported after a step. A step reads the old state and
//! writes a new one, leaving the old one intact for whoever still reads it (a peer healing
//! from it, a checkpoint being written). Each parameter takes two fused passes: moments and the
//! raw update, then the trust-ratio-scaled write.
//!
//! In ALBERT every LayerNorm and bias parameter is rank 1 and every other parameter
//! (embeddings, Linear weights) rank ≥ 2, so "rank ≥ 2" is exactly the recipe's name rule for
//! weight decay and the trust ratio; a test checks this on every preset.

use std::ops::Range;

use crate::error::{ModelError, Result};
use crate::flat::{LANES, l2_norm, scale};
use crate::grads::GradLayout;

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

/// The LAMB update rule.
#[derive(Debug, Clone)]
pub struct Lamb {
    config: LambConfig,
}

/// A replica's training state as flat sections, read-only: every parameter in layout order,
/// and per parameter at element offset `o` with `n` elements its first moment at
/// `2o..2o+n` and its second moment at `2o+n..2o+2n` (see [`moment_ranges`]). `moments` is
/// empty before the first step (all moments zero).
#[derive(Debug, Clone, Copy)]
pub struct FlatState<'a> {
    /// Parameters, layout order.
    pub parameters: &'a [f32],
    /// Moments, or empty.
    pub moments: &'a [f32],
}

/// The state a step writes: the same sections, both full size.
#[derive(Debug)]
pub struct FlatStateMut<'a> {
    /// Parameters, layout order.
    pub parameters: &'a mut [f32],
    /// Moments (twice the parameter count).
    pub moments: &'a mut [f32],
}

/// Where the first and second moment of the parameter at element `offset` with `numel`
/// elements sit in the moments section.
pub fn moment_ranges(offset: usize, numel: usize) -> (Range<usize>, Range<usize>) {
    let m = 2 * offset..2 * offset + numel;
    let v = m.end..m.end + numel;
    (m, v)
}

/// One parameter's step: inputs and where the results go (all slices of one length).
#[derive(Debug)]
pub struct ParamStep<'a> {
    /// Weight decay and trust ratio (rank ≥ 2 parameters).
    pub adapt: bool,
    /// Current weights.
    pub weights: &'a [f32],
    /// Current (first, second) moments; `None` before the first step (zeros).
    pub moments: Option<(&'a [f32], &'a [f32])>,
    /// The (clipped, mean) gradient.
    pub grad: &'a [f32],
    /// Receives the new weights.
    pub weights_out: &'a mut [f32],
    /// Receives the new first moment.
    pub m_out: &'a mut [f32],
    /// Receives the new second moment.
    pub v_out: &'a mut [f32],
}

/// The per-element part of a LAMB step: `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
/// `u = m / (√v + ε)` plus `decay · w` for adapted parameters.
#[derive(Debug, Clone, Copy)]
struct MomentRule {
    b1: f32,
    b2: f32,
    g1: f32,
    g2: f32,
    eps: f32,
    decay: Option<f32>,
}

/// Slices of one length read by [`MomentRule::apply`].
struct MomentInputs<'a> {
    grad: &'a [f32],
    m: &'a [f32],
    v: &'a [f32],
    weights: &'a [f32],
}

/// Slices of the same length it writes.
struct MomentOutputs<'a> {
    m: &'a mut [f32],
    v: &'a mut [f32],
    update: &'a mut [f32],
}

impl MomentRule {
    #[inline(always)]
    fn element(&self, g: f32, m: f32, v: f32, w: f32) -> (f32, f32, f32) {
        let m = m * self.b1 + g * self.g1;
        let v = v * self.b2 + g * g * self.g2;
        let mut u = m / (v.sqrt() + self.eps);
        if let Some(decay) = self.decay {
            u += w * decay;
        }
        (m, v, u)
    }

    /// New moments and updates for every element, in one pass that also returns `Σw²` and
    /// `Σu²` summed exactly as [`crate::flat::sum_squares`] sums (element `i` into lane
    /// `i mod LANES`, lanes added in order), so the trust ratio is the same bits as norms
    /// taken in passes of their own, without reading the buffers twice more.
    fn apply(&self, input: MomentInputs<'_>, out: MomentOutputs<'_>) -> (f64, f64) {
        let n = input.grad.len();
        let mut w_lanes = [0.0f64; LANES];
        let mut u_lanes = [0.0f64; LANES];
        let full = n - n % LANES;
        let chunk = |s: &[f32], at: usize| -> [f32; LANES] {
            s[at..at + LANES].try_into().expect("invariant: a whole chunk")
        };
        for at in (0..full).step_by(LANES) {
            let (g, m, v, w) = (
                chunk(input.grad, at),
                chunk(input.m, at),
                chunk(input.v, at),
                chunk(input.weights, at),
            );
            let (m_out, v_out, u_out) = (
                &mut out.m[at..at + LANES],
                &mut out.v[at..at + LANES],
                &mut out.update[at..at + LANES],
            );
            for lane in 0..LANES {
                let (m, v, u) = self.element(g[lane], m[lane], v[lane], w[lane]);
                (m_out[lane], v_out[lane], u_out[lane]) = (m, v, u);
                w_lanes[lane] += f64::from(w[lane]) * f64::from(w[lane]);
                u_lanes[lane] += f64::from(u) * f64::from(u);
            }
        }
        for i in full..n {
            let lane = i - full;
            let w = input.weights[i];
            let (m, v, u) = self.element(input.grad[i], input.m[i], input.v[i], w);
            (out.m[i], out.v[i], out.update[i]) = (m, v, u);
            w_lanes[lane] += f64::from(w) * f64::from(w);
            u_lanes[lane] += f64::from(u) * f64::from(u);
        }
        (w_lanes.iter().sum(), u_lanes.iter().sum())
    }
}

fn wrong_size(what: &str, expected: usize, actual: usize) -> ModelError {
    ModelError::WrongSize {
        what: what.to_owned(),
        expected: format!("{expected} f32 elements"),
        actual: format!("{actual} elements"),
    }
}

impl Lamb {
    /// A LAMB rule with `config`.
    pub fn new(config: LambConfig) -> Self {
        Self { config }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LambConfig {
        &self.config
    }

    /// One LAMB step of one parameter with learning rate `lr`.
    ///
    /// # Errors
    /// [`ModelError::WrongSize`] when the slices differ in length.
    pub fn step_param(&self, lr: f64, p: ParamStep<'_>) -> Result<()> {
        let n = p.grad.len();
        let lengths = [
            ("weights", p.weights.len()),
            ("weights_out", p.weights_out.len()),
            ("m_out", p.m_out.len()),
            ("v_out", p.v_out.len()),
            ("m", p.moments.map_or(n, |(m, _)| m.len())),
            ("v", p.moments.map_or(n, |(_, v)| v.len())),
        ];
        if let Some((what, len)) = lengths.into_iter().find(|&(_, len)| len != n) {
            return Err(wrong_size(what, n, len));
        }
        let c = &self.config;
        let rule = MomentRule {
            b1: c.beta_1 as f32,
            b2: c.beta_2 as f32,
            g1: (1.0 - c.beta_1) as f32,
            g2: (1.0 - c.beta_2) as f32,
            eps: c.epsilon as f32,
            decay: p.adapt.then_some(c.weight_decay_rate as f32),
        };
        let zeros;
        let (m_in, v_in) = match p.moments {
            Some(moments) => moments,
            None => {
                // 0·β + x is exactly x: the first step gives (1-β1)·g and (1-β2)·g².
                zeros = vec![0.0f32; n];
                (&zeros[..], &zeros[..])
            }
        };
        // Pass 1: moments, the raw update parked in `weights_out`, and both norms.
        let w = p.weights;
        let inputs = MomentInputs { grad: p.grad, m: m_in, v: v_in, weights: w };
        let outputs = MomentOutputs { m: p.m_out, v: p.v_out, update: &mut *p.weights_out };
        let (w_squares, u_squares) = rule.apply(inputs, outputs);
        let w_out = &mut p.weights_out[..n];
        let ratio = if p.adapt {
            let (w_norm, u_norm) = (w_squares.sqrt(), u_squares.sqrt());
            if w_norm > 0.0 && u_norm > 0.0 { w_norm / u_norm } else { 1.0 }
        } else {
            1.0
        };
        // Pass 2: w ← w − lr·ratio·u.
        let rate = (lr * ratio) as f32;
        w_out.iter_mut().zip(w).for_each(|(u, &w)| *u = w - *u * rate);
        Ok(())
    }

    /// One LAMB step of every parameter of `layout`: reads `old` and the (clipped, mean)
    /// gradient `grads`, writes the new state into `new`.
    ///
    /// # Errors
    /// [`ModelError::WrongSize`] naming the section whose length does not fit the layout.
    pub fn step(
        &self,
        lr: f64,
        layout: &GradLayout,
        grads: &[f32],
        old: FlatState<'_>,
        new: FlatStateMut<'_>,
    ) -> Result<()> {
        let n = layout.len();
        let sections = [
            ("gradient buffer", grads.len(), n),
            ("parameter section", old.parameters.len(), n),
            ("new parameter section", new.parameters.len(), n),
            ("new moments section", new.moments.len(), 2 * n),
        ];
        if let Some((what, actual, expected)) =
            sections.into_iter().find(|&(_, actual, expected)| actual != expected)
        {
            return Err(wrong_size(what, expected, actual));
        }
        if !old.moments.is_empty() && old.moments.len() != 2 * n {
            return Err(wrong_size("moments section", 2 * n, old.moments.len()));
        }
        for entry in layout.entries() {
            let span = entry.offset..entry.offset + entry.numel;
            let (m, v) = moment_ranges(entry.offset, entry.numel);
            let (m_out, v_out) = new.moments[m.start..v.end].split_at_mut(entry.numel);
            let moments = (!old.moments.is_empty())
                .then(|| (&old.moments[m.clone()], &old.moments[v.clone()]));
            self.step_param(
                lr,
                ParamStep {
                    adapt: entry.shape.len() >= 2,
                    weights: &old.parameters[span.clone()],
                    moments,
                    grad: &grads[span.clone()],
                    weights_out: &mut new.parameters[span],
                    m_out,
                    v_out,
                },
            )?;
        }
        Ok(())
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
    let norm = l2_norm(buffer) as f32;
    clip_to_norm(buffer, norm, max_norm);
    norm
}

/// [`clip_by_global_norm`] for a buffer whose norm `norm` is already known.
pub fn clip_to_norm(buffer: &mut [f32], norm: f32, max_norm: f32) {
    if norm > max_norm && norm.is_finite() {
        scale(buffer, max_norm / norm);
    }
}

#[cfg(test)]
#[path = "lamb_test.rs"]
mod tests;
