//! The objective a worker trains on: for a micro-batch `mb`, the *sum over samples* of
//! per-sample losses,
//!
//! `L_mb = Σ_{b ∈ mb} ( (1/m_b) Σ_{t masked in b} CE_t  +  CE_sop_b )`,
//!
//! where `m_b` is the number of masked tokens of sample `b`. A sum (not a mean) so that the
//! gradients of micro-batches and ranks simply add up; the trainer divides the all-reduced sum
//! by the global sample count once. For one sample it equals transformers' pretraining loss
//! ([`AlbertForPreTraining::pretraining_loss`]), whose forward pass it shares.

use burn::prelude::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::albert::AlbertForPreTraining;
use crate::batch::PretrainingBatch;
use crate::error::{ModelError, Result};
use crate::fused::TrainingBackend;
use crate::loss::row_cross_entropy;

/// The summed loss of a micro-batch (what `backward` runs on) and its statistics.
#[derive(Debug)]
pub struct SummedObjective<B: Backend> {
    /// `[1]` `L_mb` above.
    pub loss: Tensor<B, 1>,
    /// Its parts, read back to the host.
    pub sums: ObjectiveSums,
}

/// The parts of a micro-batch's objective, as sums over its samples (or masked tokens), so
/// that sums over micro-batches and ranks give the global batch's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ObjectiveSums {
    /// Masked tokens `Σ m_b`.
    pub masked_tokens: u64,
    /// `Σ_b (1/m_b) Σ_t CE_t`: the objective's MLM term.
    pub mlm_loss_sum: f64,
    /// `Σ_t CE_t` over every masked token (for a token-mean MLM loss).
    pub mlm_token_loss_sum: f64,
    /// `Σ_b CE_sop_b`.
    pub sop_loss_sum: f64,
    /// Masked tokens whose arg-max logit is the label.
    pub mlm_correct: u64,
    /// Samples whose SOP prediction is right.
    pub sop_correct: u64,
}

impl<B: TrainingBackend> AlbertForPreTraining<B> {
    /// The forward pass and summed objective of `batch`, each masked token weighted by
    /// `mlm_weights` (`1 / m_b` of its sample, in the order `batch.mlm_positions` lists them).
    ///
    /// # Errors
    /// [`ModelError::WrongSize`] when the weights do not match the masked tokens.
    pub fn summed_objective(
        &self,
        batch: &PretrainingBatch<B>,
        mlm_weights: &[f32],
    ) -> Result<SummedObjective<B>> {
        let masked = batch.masked_tokens;
        if mlm_weights.len() != masked {
            return Err(ModelError::WrongSize {
                what: "MLM weights".to_owned(),
                expected: format!("{masked} (one per masked token)"),
                actual: mlm_weights.len().to_string(),
            });
        }
        let (mlm_logits, sop_logits) = self.pretraining_logits(batch);
        let sop_sum = row_cross_entropy(sop_logits.clone(), batch.sop_labels.clone()).sum();
        let mut sums = ObjectiveSums {
            masked_tokens: masked as u64,
            sop_loss_sum: host_scalar(&sop_sum),
            sop_correct: correct(sop_logits.inner(), batch.sop_labels.clone().inner()),
            ..ObjectiveSums::default()
        };
        let loss = match mlm_logits {
            Some(logits) => {
                let device = logits.device();
                let weights = Tensor::<B, 1>::from_data(
                    TensorData::new(mlm_weights.to_vec(), [masked]),
                    &device,
                );
                let token_ce = row_cross_entropy(logits.clone(), batch.mlm_labels.clone());
                sums.mlm_token_loss_sum = host_scalar(&token_ce.clone().sum());
                sums.mlm_correct = correct(logits.inner(), batch.mlm_labels.clone().inner());
                let mlm_sum = (token_ce * weights).sum();
                sums.mlm_loss_sum = host_scalar(&mlm_sum);
                mlm_sum + sop_sum
            }
            None => sop_sum,
        };
        Ok(SummedObjective { loss, sums })
    }
}

/// How many rows of `logits` pick their label.
///
/// # Shapes
/// - `logits`: `[N, C]`, `labels`: `[N]`
fn correct<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> u64 {
    let n = labels.dims()[0];
    if n == 0 {
        return 0;
    }
    let hits = logits.argmax(1).reshape([n]).equal(labels).int().sum().into_scalar();
    u64::try_from(hits.elem::<i64>()).unwrap_or(0)
}

/// A `[1]` tensor's value, read without recording anything for the backward pass.
fn host_scalar<B: TrainingBackend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().inner().into_scalar().elem::<f64>()
}

#[cfg(test)]
mod tests {
    use crate::DefaultAutodiffBackend;
    use crate::albert::AlbertForPreTraining;
    use crate::albert::tests::{tiny, tiny_batch};
    use crate::batch::IGNORE_INDEX;
    use crate::error::ModelError;

    type B = DefaultAutodiffBackend;

    /// With every token weighted 1 / m (m masked tokens over the batch) the MLM term is the
    /// token mean, so the summed objective over B samples is `B · sop_mean + mlm_mean`.
    #[test]
    fn the_objective_sums_what_the_pretraining_loss_averages() {
        // No dropout, so that both forward passes compute the same logits.
        let config = crate::config::AlbertConfig { classifier_dropout_prob: 0.0, ..tiny() };
        let device = Default::default();
        let model = AlbertForPreTraining::<B>::init(&config, 11, &device).expect("init");
        let host = tiny_batch();
        let batch = host.to_device::<B>(&config, &device).expect("batch");
        let masked = host.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        let weights = vec![1.0 / masked as f32; masked];
        let objective = model.summed_objective(&batch, &weights).expect("objective");
        let report = model.pretraining_loss(&batch).report();
        let samples = host.batch as f64;
        let sums = objective.sums;
        assert_eq!(sums.masked_tokens, masked as u64);
        assert!((sums.mlm_loss_sum - f64::from(report.mlm_loss)).abs() < 1e-5, "{sums:?}");
        let token_mean = sums.mlm_token_loss_sum / masked as f64;
        assert!((token_mean - f64::from(report.mlm_loss)).abs() < 1e-5, "{sums:?}");
        let sop_mean = sums.sop_loss_sum / samples;
        assert!((sop_mean - f64::from(report.sop_loss)).abs() < 1e-5, "{sums:?} {report:?}");
        assert_eq!(sums.mlm_correct as f32 / masked as f32, report.mlm_accuracy);
        let loss = objective.loss.into_scalar();
        assert!((f64::from(loss) - (sums.mlm_loss_sum + sums.sop_loss_sum)).abs() < 1e-4);
    }

    #[test]
    fn weights_that_do_not_match_the_masked_tokens_are_refused() {
        let config = tiny();
        let device = Default::default();
        let model = AlbertForPreTraining::<B>::init(&config, 11, &device).expect("init");
        let batch = tiny_batch().to_device::<B>(&config, &device).expect("batch");
        let err = model.summed_objective(&batch, &[1.0]).expect_err("one weight for four tokens");
        assert!(matches!(err, ModelError::WrongSize { .. }), "{err}");
    }
}
