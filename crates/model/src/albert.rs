//! `AlbertModel` and `AlbertForPreTraining`, with transformers' module names.

use std::collections::HashMap;

use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::Backend;
use burn::tensor::{Int, Tensor};

use crate::config::AlbertConfig;
use crate::embeddings::AlbertEmbeddings;
use crate::error::{ModelError, Result};
use crate::fused::FusedOps;
use crate::heads::{AlbertMlmHead, AlbertSopHead};
use crate::init::ParamFactory;
use crate::layer::AlbertTransformer;
use crate::params::param_specs;

/// Token-level inputs of one batch, already on the device.
#[derive(Debug, Clone)]
pub struct ModelInput<B: Backend> {
    /// `[B, S]` token ids (< V).
    pub input_ids: Tensor<B, 2, Int>,
    /// `[B, S]` segment ids (< `type_vocab_size`).
    pub token_type_ids: Tensor<B, 2, Int>,
    /// `[B, S]`, 1 for tokens to attend to, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
}

/// The logits transformers' `AlbertForPreTraining` returns.
#[derive(Debug, Clone)]
pub struct PretrainingLogits<B: Backend> {
    /// `[B, S, V]` MLM logits at every position.
    pub prediction_logits: Tensor<B, 3>,
    /// `[B, 2]` sentence-order logits.
    pub sop_logits: Tensor<B, 2>,
}

/// `albert`: embeddings, shared-layer encoder, tanh pooler on `[CLS]`.
#[derive(Module, Debug)]
pub struct AlbertModel<B: Backend> {
    /// `albert.embeddings`.
    pub embeddings: AlbertEmbeddings<B>,
    /// `albert.encoder`.
    pub encoder: AlbertTransformer<B>,
    /// `albert.pooler` H→H (followed by tanh).
    pub pooler: Linear<B>,
}

impl<B: FusedOps> AlbertModel<B> {
    /// Encodes a batch.
    ///
    /// # Shapes
    /// - inputs: `[B, S]` each
    /// - output: (`[B, S, H]` sequence output, `[B, H]` pooled output)
    pub fn forward(&self, input: &ModelInput<B>) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let [batch, seq] = input.input_ids.dims();
        let embedded =
            self.embeddings.forward(input.input_ids.clone(), input.token_type_ids.clone());
        // transformers: (1 - mask) * finfo(f32).min, added to the attention scores.
        let mask_bias = (input.attention_mask.clone().float().neg().add_scalar(1.0))
            .mul_scalar(f32::MIN)
            .reshape([batch, 1, 1, seq]);
        let sequence = self.encoder.forward(embedded, mask_bias);
        let hidden = sequence.dims()[2];
        let cls = sequence.clone().narrow(1, 0, 1).reshape([batch, hidden]);
        let pooled = crate::fused::linear(&self.pooler, cls).tanh();
        (sequence, pooled)
    }
}

/// `AlbertForPreTraining`: the encoder with MLM and SOP heads.
#[derive(Module, Debug)]
pub struct AlbertForPreTraining<B: Backend> {
    /// The encoder.
    pub albert: AlbertModel<B>,
    /// MLM head (decoder tied to `albert.embeddings.word_embeddings`).
    pub predictions: AlbertMlmHead<B>,
    /// SOP head.
    pub sop_classifier: AlbertSopHead<B>,
}

impl<B: Backend> AlbertForPreTraining<B> {
    /// Builds the model with deterministic weights from `seed` (see [`crate::init`]) and
    /// path-derived parameter ids. Rejects configurations [`AlbertConfig::validate`] rejects.
    pub fn init(config: &AlbertConfig, seed: u64, device: &B::Device) -> Result<Self> {
        let f = ParamFactory::<B> { seed, std: config.initializer_range, device, loaded: None };
        let model = Self::build(config, &f)?;
        tracing::debug!(seed, parameters = model.num_params(), "albert initialised");
        Ok(model)
    }

    /// Builds the model from values in burn layout keyed by Hugging Face name; every name of
    /// [`crate::param_specs`] must be present with the right number of elements.
    pub fn from_values(
        config: &AlbertConfig,
        values: &HashMap<String, Vec<f32>>,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate()?;
        for spec in param_specs(config) {
            let got = values.get(&spec.name).map(Vec::len);
            if got != Some(spec.numel()) {
                return Err(ModelError::ParamMismatch {
                    reason: match got {
                        None => "missing".to_owned(),
                        Some(n) => format!("{n} values for shape {:?}", spec.shape),
                    },
                    name: spec.name,
                });
            }
        }
        let f = ParamFactory::<B> {
            seed: 0,
            std: config.initializer_range,
            device,
            loaded: Some(values),
        };
        Self::build(config, &f)
    }

    fn build(config: &AlbertConfig, f: &ParamFactory<'_, B>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            albert: AlbertModel {
                embeddings: AlbertEmbeddings::new(config, f),
                encoder: AlbertTransformer::new(config, f),
                pooler: f.linear("albert.pooler", config.hidden_size, config.hidden_size),
            },
            predictions: AlbertMlmHead::new(config, f),
            sop_classifier: AlbertSopHead::new(config, f),
        })
    }

    /// The tied decoder weight `[V, E]`.
    pub fn word_embeddings(&self) -> Tensor<B, 2> {
        self.albert.embeddings.word_embeddings.weight.val()
    }
}

impl<B: FusedOps> AlbertForPreTraining<B> {
    /// Full logits, as transformers' `AlbertForPreTraining.forward` (for evaluation/export).
    ///
    /// # Shapes
    /// - inputs: `[B, S]`; output: `prediction_logits` `[B, S, V]`, `sop_logits` `[B, 2]`
    pub fn forward(&self, input: &ModelInput<B>) -> PretrainingLogits<B> {
        let (sequence, pooled) = self.albert.forward(input);
        let [batch, seq, hidden] = sequence.dims();
        let flat = sequence.reshape([batch * seq, hidden]);
        let logits = self.predictions.forward(flat, self.word_embeddings());
        let vocab = logits.dims()[1];
        PretrainingLogits {
            prediction_logits: logits.reshape([batch, seq, vocab]),
            sop_logits: self.sop_classifier.forward(pooled),
        }
    }

    /// MLM logits at the given flat positions only (`b * S + s`), plus SOP logits.
    ///
    /// # Shapes
    /// - `positions`: `[M]`; output: (`[M, V]`, `[B, 2]`)
    pub fn forward_masked(
        &self,
        input: &ModelInput<B>,
        positions: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let (sequence, pooled) = self.albert.forward(input);
        let [batch, seq, hidden] = sequence.dims();
        let picked = sequence.reshape([batch * seq, hidden]).select(0, positions);
        let mlm = self.predictions.forward(picked, self.word_embeddings());
        (mlm, self.sop_classifier.forward(pooled))
    }
}

#[cfg(test)]
#[path = "albert_test.rs"]
pub(crate) mod tests;
