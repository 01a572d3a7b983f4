//! One micro-batch's forward pass and summed objective (the objective itself is the model
//! crate's, see `albatross_model::objective`), with the statistics the worker reports.

use albatross_model::{AlbertConfig, AlbertForPreTraining, TrainingBackend};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::batches::MicroBatch;
use crate::error::{Result, WorkerError};
use crate::gradients::ComputeStats;

/// The summed loss of a micro-batch (what `backward` runs on) and its statistics.
#[derive(Debug)]
pub(crate) struct MicroLoss<B: Backend> {
    /// `[1]` the micro-batch's summed objective.
    pub loss: Tensor<B, 1>,
    /// Sums for statistics, already read back to the host.
    pub stats: ComputeStats,
}

/// Forward pass and summed loss of `mb` on `model`.
pub(crate) fn micro_loss<B: TrainingBackend>(
    model: &AlbertForPreTraining<B>,
    config: &AlbertConfig,
    mb: &MicroBatch,
    device: &B::Device,
) -> Result<MicroLoss<B>> {
    let batch = mb.host.to_device::<B>(config, device)?;
    let objective = model
        .summed_objective(&batch, &mb.mlm_weights)
        .map_err(|e| WorkerError::InvalidStep(e.to_string()))?;
    let sums = objective.sums;
    let stats = ComputeStats {
        samples: mb.host.batch as u64,
        tokens: mb.tokens,
        masked_tokens: sums.masked_tokens,
        mlm_loss_sum: sums.mlm_loss_sum,
        mlm_token_loss_sum: sums.mlm_token_loss_sum,
        sop_loss_sum: sums.sop_loss_sum,
        mlm_correct: sums.mlm_correct,
        sop_correct: sums.sop_correct,
    };
    Ok(MicroLoss { loss: objective.loss, stats })
}
