//! Host-side input of a step: the samples a rank reads for its position ranges, masked on read,
//! cut into micro-batches padded to the longest sample, with the per-token MLM weights the
//! per-sample normalisation needs (see the `trainer` module doc).

use std::sync::Arc;

use albatross_data::{
    Dataset, EpochSampler, MaskedExample, MaskingConfig, MaskingVocab, collate,
    tokenizer::SpecialTokens,
};
use albatross_model::MaskedBatch;
use albatross_proto::domain::SampleRange;

use crate::error::{Result, WorkerError};

/// Reads a rank's samples: positions → sample ids through the epoch permutation, then masking,
/// both pure functions of (seed, epoch, position/id), so a retried step reads the same inputs.
#[derive(Debug)]
pub struct SampleReader {
    dataset: Arc<Dataset>,
    sampler: EpochSampler,
    masking: MaskingConfig,
    special: SpecialTokens,
    word_starts: Vec<bool>,
}

impl SampleReader {
    /// A reader over `dataset` for a job with `seed` and `max_seq_length`, checking that the
    /// dataset's tokenizer is intact and its sequences fit.
    pub fn new(dataset: Arc<Dataset>, seed: u64, max_seq_length: usize) -> Result<Self> {
        let prepared = dataset.manifest().examples.max_seq_length;
        if prepared > max_seq_length as u64 {
            return Err(WorkerError::Incompatible {
                field: "data.max_seq_length",
                value: max_seq_length.to_string(),
                reason: format!("the dataset was prepared with sequences of up to {prepared}"),
            });
        }
        // The tokenizer's special ids and word starts drive masking; the copy stored with the
        // dataset is checked against the manifest's fingerprint on load.
        let tokenizer = dataset.load_tokenizer()?;
        let sampler = EpochSampler::new(dataset.len(), seed)?;
        Ok(Self {
            sampler,
            masking: MaskingConfig::for_seq_len(max_seq_length, seed),
            special: tokenizer.special(),
            word_starts: tokenizer.word_starts().to_vec(),
            dataset,
        })
    }

    /// The dataset read.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The masked samples of `ranges`, in range order then position order.
    pub fn read(&self, ranges: &[SampleRange]) -> Result<Vec<MaskedExample>> {
        let vocab = MaskingVocab { special: self.special, word_starts: &self.word_starts };
        let mut samples = Vec::with_capacity(ranges.iter().map(|r| r.len() as usize).sum());
        for range in ranges {
            for id in self.sampler.ids(range.epoch, range.start..range.end)? {
                samples.push(self.dataset.sample(id, range.epoch, &self.masking, &vocab)?);
            }
        }
        Ok(samples)
    }

    /// The padding token id.
    pub fn pad_id(&self) -> u32 {
        self.special.pad
    }
}

/// One micro-batch ready for upload.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// Inputs padded to the longest sample of this micro-batch, and the masked tokens listed.
    pub host: MaskedBatch,
    /// `[M]` weight of each masked token, in `host.mlm_positions` order: `1 / m_b`, where `m_b`
    /// is the number of masked tokens of the token's own sample.
    pub mlm_weights: Vec<f32>,
    /// Real (non-padding) tokens.
    pub tokens: u64,
}

/// Pads `samples` (at least one) into a micro-batch: `collate`'s arrays, moved as they are.
pub fn micro_batch(samples: &[MaskedExample], pad_id: u32) -> Result<MicroBatch> {
    let seq = samples.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
    if samples.is_empty() || seq == 0 {
        return Err(WorkerError::InvalidStep("a micro-batch needs a non-empty sample".to_owned()));
    }
    let padded = collate(samples, seq, pad_id)?;
    Ok(MicroBatch {
        host: MaskedBatch {
            batch: padded.batch_size,
            seq,
            input_ids: padded.input_ids,
            token_type_ids: padded.token_type_ids,
            attention_mask: padded.attention_mask,
            mlm_positions: padded.mlm_positions,
            mlm_labels: padded.mlm_labels,
            sop_labels: padded.sop_labels,
        },
        mlm_weights: padded.mlm_weights,
        tokens: padded.tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, masked: &[(u32, u32)], sop: u8) -> MaskedExample {
        MaskedExample {
            input_ids: (0..len as u32).map(|i| 10 + i).collect(),
            token_type_ids: vec![0; len],
            masked_positions: masked.iter().map(|m| m.0).collect(),
            masked_labels: masked.iter().map(|m| m.1).collect(),
            sop_label: sop,
        }
    }

    #[test]
    fn pads_to_the_longest_sample_and_weights_each_token_by_its_own_sample() {
        let a = sample(3, &[(1, 77)], 0);
        let b = sample(5, &[(1, 70), (2, 71), (4, 72)], 1);
        let mb = micro_batch(&[a, b], 0).expect("batch");
        assert_eq!((mb.host.batch, mb.host.seq), (2, 5));
        assert_eq!(&mb.host.input_ids[..5], &[10, 11, 12, 0, 0]);
        assert_eq!(&mb.host.attention_mask[..5], &[1, 1, 1, 0, 0]);
        assert_eq!(mb.host.mlm_positions, vec![1, 6, 7, 9]);
        assert_eq!(mb.host.mlm_labels, vec![77, 70, 71, 72]);
        assert_eq!(mb.mlm_weights, vec![1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(mb.host.sop_labels, vec![0, 1]);
        assert_eq!(mb.tokens, 8);
        // Each sample's weights sum to one: its MLM term is the mean over its own tokens.
        assert!((mb.mlm_weights[1..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_sample_without_masked_tokens_contributes_no_mlm_weight() {
        let mb = micro_batch(&[sample(4, &[], 1), sample(4, &[(2, 9)], 0)], 0).expect("batch");
        assert_eq!(mb.mlm_weights, vec![1.0]);
        assert!(micro_batch(&[], 0).is_err(), "an empty micro-batch is refused");
    }
}
