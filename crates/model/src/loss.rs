//! Pretraining losses: MLM cross-entropy over masked positions only, plus SOP cross-entropy.

use burn::prelude::Backend;
use burn::tensor::activation::log_softmax;
use burn::tensor::{ElementConversion, Int, Tensor};

use crate::albert::AlbertForPreTraining;
use crate::batch::PretrainingBatch;

/// Cross-entropy of each row of `logits` against its class label.
///
/// # Shapes
/// - `logits`: `[N, C]`, `labels`: `[N]`; output: `[N]`
pub fn row_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let n = labels.dims()[0];
    log_softmax(logits, 1).gather(1, labels.reshape([n, 1])).reshape([n]).neg()
}

/// Mean cross-entropy of `logits` against class `labels`.
///
/// # Shapes
/// - `logits`: `[N, C]`, `labels`: `[N]` (N ≥ 1); output: `[1]`
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let n = labels.dims()[0];
    log_softmax(logits, 1).gather(1, labels.reshape([n, 1])).mean().neg()
}

/// Losses and logits of one pretraining step.
#[derive(Debug, Clone)]
pub struct PretrainingOutput<B: Backend> {
    /// `mlm_loss + sop_loss`, `[1]`: what `backward` is called on.
    pub loss: Tensor<B, 1>,
    /// Mean MLM cross-entropy over masked tokens (0 when the batch has none), `[1]`.
    pub mlm_loss: Tensor<B, 1>,
    /// Mean SOP cross-entropy, `[1]`.
    pub sop_loss: Tensor<B, 1>,
    /// `[M, V]` logits at masked positions (`None` when M = 0).
    pub mlm_logits: Option<Tensor<B, 2>>,
    /// `[B, 2]`.
    pub sop_logits: Tensor<B, 2>,
    /// `[M]` MLM labels.
    pub mlm_labels: Tensor<B, 1, Int>,
    /// `[B]` SOP labels.
    pub sop_labels: Tensor<B, 1, Int>,
}

/// Scalar metrics of one step, read back to the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossReport {
    /// Total loss.
    pub loss: f32,
    /// MLM loss.
    pub mlm_loss: f32,
    /// SOP loss.
    pub sop_loss: f32,
    /// Fraction of masked tokens whose arg-max logit is the label (0 when none are masked).
    pub mlm_accuracy: f32,
    /// Fraction of SOP predictions that are right.
    pub sop_accuracy: f32,
    /// Number of masked tokens M.
    pub masked_tokens: usize,
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f32 {
    t.clone().into_scalar().elem::<f32>()
}

fn accuracy<B: Backend>(logits: &Tensor<B, 2>, labels: &Tensor<B, 1, Int>) -> f32 {
    let n = labels.dims()[0];
    if n == 0 {
        return 0.0;
    }
    let predicted = logits.clone().argmax(1).reshape([n]);
    let correct = predicted.equal(labels.clone()).int().sum().into_scalar().elem::<i64>();
    correct as f32 / n as f32
}

impl<B: Backend> PretrainingOutput<B> {
    /// Reads the scalar metrics back (a device sync).
    pub fn report(&self) -> LossReport {
        LossReport {
            loss: scalar(&self.loss),
            mlm_loss: scalar(&self.mlm_loss),
            sop_loss: scalar(&self.sop_loss),
            mlm_accuracy: self.mlm_logits.as_ref().map_or(0.0, |l| accuracy(l, &self.mlm_labels)),
            sop_accuracy: accuracy(&self.sop_logits, &self.sop_labels),
            masked_tokens: self.mlm_labels.dims()[0],
        }
    }
}

impl<B: crate::fused::FusedOps> AlbertForPreTraining<B> {
    /// The logits both heads score: `[M, V]` MLM logits at the masked positions (`None` when
    /// the batch has none) and `[B, 2]` SOP logits.
    pub fn pretraining_logits(
        &self,
        batch: &PretrainingBatch<B>,
    ) -> (Option<Tensor<B, 2>>, Tensor<B, 2>) {
        if batch.masked_tokens > 0 {
            let (mlm, sop) = self.forward_masked(&batch.input, batch.mlm_positions.clone());
            (Some(mlm), sop)
        } else {
            let (_, pooled) = self.albert.forward(&batch.input);
            (None, self.sop_classifier.forward(pooled))
        }
    }

    /// Pretraining loss as transformers computes it (`masked_lm_loss + sentence_order_loss`),
    /// with MLM logits computed only at the masked positions.
    pub fn pretraining_loss(&self, batch: &PretrainingBatch<B>) -> PretrainingOutput<B> {
        let (mlm_logits, sop_logits) = self.pretraining_logits(batch);
        let sop_loss = cross_entropy(sop_logits.clone(), batch.sop_labels.clone());
        let mlm_loss = match &mlm_logits {
            Some(logits) => cross_entropy(logits.clone(), batch.mlm_labels.clone()),
            None => Tensor::zeros([1], &sop_loss.device()),
        };
        PretrainingOutput {
            loss: mlm_loss.clone() + sop_loss.clone(),
            mlm_loss,
            sop_loss,
            mlm_logits,
            sop_logits,
            mlm_labels: batch.mlm_labels.clone(),
            sop_labels: batch.sop_labels.clone(),
        }
    }
}

#[cfg(test)]
#[path = "loss_test.rs"]
mod tests;
