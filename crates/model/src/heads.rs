//! Pretraining heads: masked-LM (decoder tied to the word embeddings) and sentence-order.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::config::{AlbertConfig, HiddenAct};
use crate::fused::{self, FusedOps};
use crate::init::ParamFactory;
use crate::layer::activate;
use crate::params::InitRule;

/// `predictions`: dense H→E, activation, LayerNorm, then logits against the word embeddings.
#[derive(Module, Debug)]
pub struct AlbertMlmHead<B: Backend> {
    /// `predictions.bias` `[V]` (transformers also exposes it as `predictions.decoder.bias`).
    pub bias: Param<Tensor<B, 1>>,
    /// `predictions.LayerNorm` over E.
    pub layer_norm: LayerNorm<B>,
    /// `predictions.dense` H→E.
    pub dense: Linear<B>,
    /// Transform activation (`hidden_act`).
    #[module(skip)]
    pub activation: HiddenAct,
    /// The LayerNorm's epsilon (burn keeps its own private; the fused norm needs it).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> AlbertMlmHead<B> {
    pub(crate) fn new(config: &AlbertConfig, f: &ParamFactory<'_, B>) -> Self {
        Self {
            bias: f.param("predictions.bias", [config.vocab_size], InitRule::Zeros),
            layer_norm: f.layer_norm(
                "predictions.LayerNorm",
                config.embedding_size,
                config.layer_norm_eps,
            ),
            dense: f.linear("predictions.dense", config.hidden_size, config.embedding_size),
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        }
    }
}

impl<B: FusedOps> AlbertMlmHead<B> {
    /// Vocabulary logits for the given hidden states.
    ///
    /// # Shapes
    /// - `hidden`: `[N, H]` (only the positions that need logits)
    /// - `word_embeddings`: `[V, E]` (the tied decoder weight)
    /// - output: `[N, V]`
    pub fn forward(&self, hidden: Tensor<B, 2>, word_embeddings: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = activate(self.activation, fused::linear(&self.dense, hidden));
        let x = fused::layer_norm(&self.layer_norm, self.layer_norm_eps, x);
        // The decoder is a linear map whose weight is the transposed embedding matrix, read
        // in place through strides.
        fused::linear_with(x, word_embeddings.transpose(), Some(self.bias.val()))
    }
}

/// `sop_classifier`: dropout, then H→2 on the pooled output.
#[derive(Module, Debug)]
pub struct AlbertSopHead<B: Backend> {
    /// `sop_classifier.classifier` H→2.
    pub classifier: Linear<B>,
    /// Dropout with `classifier_dropout_prob`.
    pub dropout: Dropout,
}

impl<B: Backend> AlbertSopHead<B> {
    pub(crate) fn new(config: &AlbertConfig, f: &ParamFactory<'_, B>) -> Self {
        Self {
            classifier: f.linear("sop_classifier.classifier", config.hidden_size, 2),
            dropout: DropoutConfig::new(config.classifier_dropout_prob).init(),
        }
    }
}

impl<B: FusedOps> AlbertSopHead<B> {
    /// # Shapes
    /// - `pooled`: `[B, H]`, output: `[B, 2]`
    pub fn forward(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        fused::linear(&self.classifier, self.dropout.forward(pooled))
    }
}
