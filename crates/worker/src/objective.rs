//! The training objective of one micro-batch, as a *sum over samples* of per-sample losses:
//!
//! `L_mb = Σ_{b ∈ mb} ( (1/m_b) Σ_{t masked in b} CE_t  +  CE_sop_b )`
//!
//! A sum (not a mean) so that gradients of micro-batches and ranks simply add up; the trainer
//! divides the all-reduced sum by the global sample count once (see the `trainer` module doc).

use albatross_model::TrainingBackend;
use albatross_model::{AlbertConfig, AlbertForPreTraining};
use burn::prelude::Backend;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::batches::MicroBatch;
use crate::error::{Result, WorkerError};
use crate::gradients::ComputeStats;

/// The summed loss of a micro-batch (what `backward` runs on) and its statistics.
#[derive(Debug)]
pub(crate) struct MicroLoss<B: Backend> {
    /// `[1]` `L_mb` above.
    pub loss: Tensor<B, 1>,
    /// Sums for statistics, already read back to the host.
    pub stats: ComputeStats,
}

/// Per-row cross-entropy of `logits` against `labels`.
///
/// # Shapes
/// - `logits`: `[N, C]`, `labels`: `[N]`; output: `[N]`
fn row_cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let n = labels.dims()[0];
    log_softmax(logits, 1).gather(1, labels.reshape([n, 1])).reshape([n]).neg()
}

/// How many rows of `logits` (on the inner backend) pick their label.
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

fn scalar<B: AutodiffBackend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().inner().into_scalar().elem::<f64>()
}

/// Forward pass and summed loss of `mb` on `model`.
pub(crate) fn micro_loss<B: TrainingBackend>(
    model: &AlbertForPreTraining<B>,
    config: &AlbertConfig,
    mb: &MicroBatch,
    device: &B::Device,
) -> Result<MicroLoss<B>> {
    let batch = mb.host.to_device::<B>(config, device)?;
    let masked = batch.masked_tokens;
    if mb.mlm_weights.len() != masked {
        return Err(WorkerError::InvalidStep(format!(
            "{} MLM weights for {masked} masked tokens",
            mb.mlm_weights.len()
        )));
    }
    let (mlm_logits, sop_logits) = if masked > 0 {
        let (mlm, sop) = model.forward_masked(&batch.input, batch.mlm_positions.clone());
        (Some(mlm), sop)
    } else {
        let (_, pooled) = model.albert.forward(&batch.input);
        (None, model.sop_classifier.forward(pooled))
    };
    let sop_ce = row_cross_entropy(sop_logits.clone(), batch.sop_labels.clone());
    let sop_sum = sop_ce.sum();
    let mut stats = ComputeStats {
        samples: mb.host.batch as u64,
        tokens: mb.tokens,
        masked_tokens: masked as u64,
        sop_loss_sum: scalar(&sop_sum),
        sop_correct: correct(sop_logits.inner(), batch.sop_labels.inner()),
        ..ComputeStats::default()
    };
    let loss = match mlm_logits {
        Some(logits) => {
            let weights = Tensor::<B, 1>::from_data(
                TensorData::new(mb.mlm_weights.clone(), [masked]),
                device,
            );
            let token_ce = row_cross_entropy(logits.clone(), batch.mlm_labels.clone());
            stats.mlm_token_loss_sum = scalar(&token_ce.clone().sum());
            stats.mlm_correct = correct(logits.inner(), batch.mlm_labels.inner());
            let mlm_sum = (token_ce * weights).sum();
            stats.mlm_loss_sum = scalar(&mlm_sum);
            mlm_sum + sop_sum
        }
        None => sop_sum,
    };
    Ok(MicroLoss { loss, stats })
}
