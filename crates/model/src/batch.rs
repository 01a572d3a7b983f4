//! Batches: as host vectors in transformers' conventions ([`HostBatch`], labels marked in place),
//! with the masked tokens listed ([`MaskedBatch`], what the data pipeline emits), and on the
//! device ([`PretrainingBatch`]).

use burn::prelude::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::albert::ModelInput;
use crate::config::AlbertConfig;
use crate::error::{ModelError, Result};

/// The label transformers uses for "no MLM target here".
pub const IGNORE_INDEX: i64 = -100;

/// One batch as host vectors, in transformers' conventions (row-major `[B, S]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBatch {
    /// B.
    pub batch: usize,
    /// S.
    pub seq: usize,
    /// `[B, S]` token ids.
    pub input_ids: Vec<i64>,
    /// `[B, S]` segment ids.
    pub token_type_ids: Vec<i64>,
    /// `[B, S]` 1 = attend, 0 = padding.
    pub attention_mask: Vec<i64>,
    /// `[B, S]` original token at masked positions, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
    /// `[B]` 0 = in order, 1 = swapped.
    pub sentence_order_label: Vec<i64>,
}

/// A batch on the device, with the MLM targets gathered to the masked positions.
#[derive(Debug, Clone)]
pub struct PretrainingBatch<B: Backend> {
    /// Token-level inputs.
    pub input: ModelInput<B>,
    /// `[M]` flat positions `b * S + s` of the masked tokens.
    pub mlm_positions: Tensor<B, 1, Int>,
    /// `[M]` their labels.
    pub mlm_labels: Tensor<B, 1, Int>,
    /// `[B]` SOP labels.
    pub sop_labels: Tensor<B, 1, Int>,
    /// M.
    pub masked_tokens: usize,
}

fn check_range(what: &str, values: &[i64], lo: i64, hi: i64) -> Result<()> {
    match values.iter().position(|v| !(lo..hi).contains(v)) {
        None => Ok(()),
        Some(i) => Err(ModelError::InvalidInput {
            what: what.to_owned(),
            reason: format!("value {} at index {i} is outside [{lo}, {hi})", values[i]),
        }),
    }
}

impl HostBatch {
    /// Checks sizes and value ranges against `config`; every error names the field.
    pub fn validate(&self, config: &AlbertConfig) -> Result<()> {
        let tokens = self.batch * self.seq;
        let fields = [
            ("input_ids", self.input_ids.len(), tokens),
            ("token_type_ids", self.token_type_ids.len(), tokens),
            ("attention_mask", self.attention_mask.len(), tokens),
            ("labels", self.labels.len(), tokens),
            ("sentence_order_label", self.sentence_order_label.len(), self.batch),
        ];
        for (what, actual, expected) in fields {
            if actual != expected {
                return Err(ModelError::WrongSize {
                    what: what.to_owned(),
                    expected: format!("{expected} elements ({}x{})", self.batch, self.seq),
                    actual: format!("{actual} elements"),
                });
            }
        }
        check_shape(self.batch, self.seq, config)?;
        let vocab = config.vocab_size as i64;
        check_range("input_ids", &self.input_ids, 0, vocab)?;
        check_range("token_type_ids", &self.token_type_ids, 0, config.type_vocab_size as i64)?;
        check_range("attention_mask", &self.attention_mask, 0, 2)?;
        check_range("sentence_order_label", &self.sentence_order_label, 0, 2)?;
        let targets: Vec<i64> =
            self.labels.iter().copied().filter(|&l| l != IGNORE_INDEX).collect();
        check_range("labels", &targets, 0, vocab)
    }

    /// Validates, then uploads to `device`, gathering masked positions on the host.
    pub fn to_device<B: Backend>(
        &self,
        config: &AlbertConfig,
        device: &B::Device,
    ) -> Result<PretrainingBatch<B>> {
        self.validate(config)?;
        Ok(self.masked().upload(device))
    }

    /// The same batch with its masked tokens listed (flat positions ascending, as the device
    /// batch holds them) instead of marked in `labels`.
    pub fn masked(&self) -> MaskedBatch {
        let (mlm_positions, mlm_labels): (Vec<i64>, Vec<i64>) = self
            .labels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l != IGNORE_INDEX)
            .map(|(i, &l)| (i as i64, l))
            .unzip();
        MaskedBatch {
            batch: self.batch,
            seq: self.seq,
            input_ids: self.input_ids.clone(),
            token_type_ids: self.token_type_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            mlm_positions,
            mlm_labels,
            sop_labels: self.sentence_order_label.clone(),
        }
    }
}

/// One batch as host vectors with its masked tokens listed, the layout the data pipeline's
/// `collate` emits and the device batch holds: uploading it gathers nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedBatch {
    /// B.
    pub batch: usize,
    /// S.
    pub seq: usize,
    /// `[B, S]` token ids.
    pub input_ids: Vec<i64>,
    /// `[B, S]` segment ids.
    pub token_type_ids: Vec<i64>,
    /// `[B, S]` 1 = attend, 0 = padding.
    pub attention_mask: Vec<i64>,
    /// `[M]` flat positions `b * S + s` of the masked tokens, strictly ascending.
    pub mlm_positions: Vec<i64>,
    /// `[M]` their original tokens.
    pub mlm_labels: Vec<i64>,
    /// `[B]` 0 = in order, 1 = swapped.
    pub sop_labels: Vec<i64>,
}

impl MaskedBatch {
    /// Checks sizes, value ranges and positions against `config`; every error names the field.
    pub fn validate(&self, config: &AlbertConfig) -> Result<()> {
        let tokens = self.batch * self.seq;
        let masked = self.mlm_positions.len();
        let fields = [
            ("input_ids", self.input_ids.len(), tokens),
            ("token_type_ids", self.token_type_ids.len(), tokens),
            ("attention_mask", self.attention_mask.len(), tokens),
            ("mlm_labels", self.mlm_labels.len(), masked),
            ("sop_labels", self.sop_labels.len(), self.batch),
        ];
        for (what, actual, expected) in fields {
            if actual != expected {
                return Err(ModelError::WrongSize {
                    what: what.to_owned(),
                    expected: format!(
                        "{expected} elements ({}x{}, {masked} masked)",
                        self.batch, self.seq
                    ),
                    actual: format!("{actual} elements"),
                });
            }
        }
        check_shape(self.batch, self.seq, config)?;
        let vocab = config.vocab_size as i64;
        check_range("input_ids", &self.input_ids, 0, vocab)?;
        check_range("token_type_ids", &self.token_type_ids, 0, config.type_vocab_size as i64)?;
        check_range("attention_mask", &self.attention_mask, 0, 2)?;
        check_range("sop_labels", &self.sop_labels, 0, 2)?;
        check_range("mlm_labels", &self.mlm_labels, 0, vocab)?;
        check_range("mlm_positions", &self.mlm_positions, 0, tokens as i64)?;
        if let Some(i) = self.mlm_positions.windows(2).position(|w| w[0] >= w[1]) {
            return Err(ModelError::InvalidInput {
                what: "mlm_positions".to_owned(),
                reason: format!("not strictly ascending at index {}", i + 1),
            });
        }
        Ok(())
    }

    /// Validates, then uploads to `device`.
    pub fn to_device<B: Backend>(
        &self,
        config: &AlbertConfig,
        device: &B::Device,
    ) -> Result<PretrainingBatch<B>> {
        self.validate(config)?;
        Ok(self.upload(device))
    }

    fn upload<B: Backend>(&self, device: &B::Device) -> PretrainingBatch<B> {
        let shape = [self.batch, self.seq];
        let int2 =
            |v: &[i64]| Tensor::<B, 2, Int>::from_data(TensorData::new(v.to_vec(), shape), device);
        let int1 = |v: &[i64]| {
            Tensor::<B, 1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
        };
        PretrainingBatch {
            input: ModelInput {
                input_ids: int2(&self.input_ids),
                token_type_ids: int2(&self.token_type_ids),
                attention_mask: int2(&self.attention_mask),
            },
            mlm_positions: int1(&self.mlm_positions),
            mlm_labels: int1(&self.mlm_labels),
            sop_labels: int1(&self.sop_labels),
            masked_tokens: self.mlm_positions.len(),
        }
    }
}

/// `B ≥ 1` and `1 ≤ S ≤ max_position_embeddings`.
fn check_shape(batch: usize, seq: usize, config: &AlbertConfig) -> Result<()> {
    if batch == 0 || seq == 0 || seq > config.max_position_embeddings {
        return Err(ModelError::WrongSize {
            what: "batch shape".to_owned(),
            expected: format!("B ≥ 1 and 1 ≤ S ≤ {}", config.max_position_embeddings),
            actual: format!("{batch}x{seq}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::albert::tests::{tiny, tiny_batch};
    use crate::batch::IGNORE_INDEX;
    use crate::error::ModelError;

    #[test]
    fn a_host_batch_lists_its_masked_tokens_and_bad_lists_are_named() {
        let config = tiny();
        let host = tiny_batch();
        let masked = host.masked();
        let marked: Vec<i64> = (0..host.labels.len() as i64)
            .filter(|&i| host.labels[i as usize] != IGNORE_INDEX)
            .collect();
        assert_eq!(masked.mlm_positions, marked);
        assert!(masked.validate(&config).is_ok());

        let mut unsorted = masked.clone();
        unsorted.mlm_positions.swap(0, 1);
        let err = unsorted.validate(&config).expect_err("unsorted");
        assert!(err.to_string().contains("not strictly ascending"), "{err}");
        let mut outside = masked.clone();
        let last = outside.mlm_positions.len() - 1;
        outside.mlm_positions[last] = (host.batch * host.seq) as i64;
        let err = outside.validate(&config).expect_err("outside");
        assert!(err.to_string().contains("mlm_positions"), "{err}");
        let mut short = masked;
        short.mlm_labels.pop();
        let err = short.validate(&config).expect_err("one label short");
        assert!(matches!(err, ModelError::WrongSize { ref what, .. } if what == "mlm_labels"));
    }
}
