//! What one rank's compute phase hands to the all-reduce: the flat gradient sum and the loss
//! sums for statistics. Every field is a *sum* over samples (or tokens), so summing them across
//! ranks gives the global batch's figures whatever the split.

use albatross_model::FixedPoint;

/// Loss and accuracy sums over the samples a rank computed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ComputeStats {
    /// Samples (sequences).
    pub samples: u64,
    /// Real tokens, padding excluded.
    pub tokens: u64,
    /// Masked (predicted) tokens.
    pub masked_tokens: u64,
    /// Σ over samples of the sample's mean MLM cross-entropy (the objective's MLM term).
    pub mlm_loss_sum: f64,
    /// Σ over masked tokens of their cross-entropy (÷ `masked_tokens` gives the token mean
    /// transformers reports).
    pub mlm_token_loss_sum: f64,
    /// Σ over samples of the SOP cross-entropy.
    pub sop_loss_sum: f64,
    /// Masked tokens whose arg-max prediction is the label.
    pub mlm_correct: u64,
    /// Samples whose SOP prediction is right.
    pub sop_correct: u64,
}

impl ComputeStats {
    /// Adds `other` (another micro-batch, or another rank's sums).
    pub fn merge(&mut self, other: &Self) {
        self.samples += other.samples;
        self.tokens += other.tokens;
        self.masked_tokens += other.masked_tokens;
        self.mlm_loss_sum += other.mlm_loss_sum;
        self.mlm_token_loss_sum += other.mlm_token_loss_sum;
        self.sop_loss_sum += other.sop_loss_sum;
        self.mlm_correct += other.mlm_correct;
        self.sop_correct += other.sop_correct;
    }

    /// These sums with each loss rounded by [`loss_on_grid`] (exact mode, per micro-batch).
    #[must_use]
    pub fn on_grid(self) -> Self {
        Self {
            mlm_loss_sum: loss_on_grid(self.mlm_loss_sum),
            mlm_token_loss_sum: loss_on_grid(self.mlm_token_loss_sum),
            sop_loss_sum: loss_on_grid(self.sop_loss_sum),
            ..self
        }
    }

    /// The objective the update minimises: mean over samples of (per-sample mean MLM loss +
    /// SOP loss). `None` without samples.
    pub fn mean_loss(&self) -> Option<f64> {
        (self.samples > 0).then(|| (self.mlm_loss_sum + self.sop_loss_sum) / self.samples as f64)
    }

    /// Fraction of masked tokens predicted right. `None` without masked tokens.
    pub fn mlm_accuracy(&self) -> Option<f64> {
        (self.masked_tokens > 0).then(|| self.mlm_correct as f64 / self.masked_tokens as f64)
    }

    /// Fraction of SOP labels predicted right. `None` without samples.
    pub fn sop_accuracy(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sop_correct as f64 / self.samples as f64)
    }
}

/// A rank's contribution to one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepGradients {
    /// Σ over this rank's samples of ∂(per-sample loss)/∂θ, flat in the `GradLayout` order.
    /// All-reduce it (sum), then pass it to `Trainer::apply`.
    pub sum: GradientSum,
    /// Loss sums of this rank's samples.
    pub stats: ComputeStats,
    /// Whether `buffer` or a loss holds NaN or ±Inf; such a step must be voted down.
    pub non_finite: bool,
}

/// A rank's gradient sum, as the job's mode keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum GradientSum {
    /// Normal mode: f32, summed in whatever order the micro-batches and the ring add.
    Float(Vec<f32>),
    /// Exact mode: fixed-point integers (see `albatross_model::fixed_point`), summed with
    /// integer addition, so the quorum's sum is the same bits for any split; converted to f32
    /// once, after the all-reduce.
    Fixed { sums: Vec<i64>, format: FixedPoint },
}

impl GradientSum {
    /// The values as f32: the float sum as it is, the fixed-point one converted (what a
    /// quorum of one would apply).
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Self::Float(values) => values,
            Self::Fixed { sums, format } => {
                let mut values = vec![0.0; sums.len()];
                format.write_f32(&sums, &mut values);
                values
            }
        }
    }
}

/// Exact mode's loss sums: each micro-batch's sum is rounded to a multiple of 2^-24 before it
/// is added, so every partial sum is exact in f64 (53 bits hold 2^29 in steps of 2^-24, far above
/// any step's loss sum) and the quorum's total is the same bits whatever the split and whatever
/// order ranks and the coordinator add in.
pub fn loss_on_grid(value: f64) -> f64 {
    const GRID: f64 = 16_777_216.0; // 2^24
    (value * GRID).round_ties_even() / GRID
}

/// Where NaN or ±Inf sit in `buffer`: `(count, first index)`, or `None` when all are finite.
pub fn non_finite(buffer: &[f32]) -> Option<(usize, usize)> {
    // The common case, every value finite, in one vectorised scan.
    if albatross_model::flat::all_finite(buffer) {
        return None;
    }
    let first = buffer.iter().position(|g| !g.is_finite())?;
    let count = buffer[first..].iter().filter(|g| !g.is_finite()).count();
    Some((count, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_counted_and_located() {
        assert_eq!(non_finite(&[0.0, 1.0, -2.5, f32::MAX]), None);
        assert_eq!(
            non_finite(&[0.0, f32::NAN, 1.0, f32::INFINITY, f32::NEG_INFINITY]),
            Some((3, 1))
        );
        assert_eq!(non_finite(&[]), None);
    }

    #[test]
    fn stats_merge_by_summing_and_derive_means() {
        let a = ComputeStats {
            samples: 2,
            tokens: 100,
            masked_tokens: 10,
            mlm_loss_sum: 14.0,
            mlm_token_loss_sum: 70.0,
            sop_loss_sum: 1.4,
            mlm_correct: 1,
            sop_correct: 1,
        };
        let mut total = ComputeStats::default();
        assert_eq!(total.mean_loss(), None);
        total.merge(&a);
        total.merge(&a);
        assert_eq!(total.samples, 4);
        assert_eq!(total.mean_loss(), Some((28.0 + 2.8) / 4.0));
        assert_eq!(total.mlm_accuracy(), Some(0.1));
        assert_eq!(total.sop_accuracy(), Some(0.5));
    }
}
