//! Factorized embeddings: word (V×E) + position + token type, LayerNorm, dropout.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm};
use burn::prelude::Backend;
use burn::tensor::{Int, Tensor};

use crate::config::AlbertConfig;
use crate::fused::{self, FusedOps};
use crate::init::ParamFactory;
use crate::params::InitRule;

/// `albert.embeddings`: sums word, position and token-type embeddings of size E.
#[derive(Module, Debug)]
pub struct AlbertEmbeddings<B: Backend> {
    /// `word_embeddings.weight` [V, E]; also the tied MLM decoder.
    pub word_embeddings: Embedding<B>,
    /// `position_embeddings.weight` [P, E].
    pub position_embeddings: Embedding<B>,
    /// `token_type_embeddings.weight` [T, E].
    pub token_type_embeddings: Embedding<B>,
    /// `LayerNorm` over E.
    pub layer_norm: LayerNorm<B>,
    /// Dropout with `hidden_dropout_prob`.
    pub dropout: Dropout,
    /// Lookups of this id pass no gradient to its row (transformers' `padding_idx`).
    #[module(skip)]
    pub pad_token_id: Option<usize>,
    /// The LayerNorm's epsilon (burn keeps its own private; the fused norm needs it).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> AlbertEmbeddings<B> {
    pub(crate) fn new(config: &AlbertConfig, f: &ParamFactory<'_, B>) -> Self {
        let p = "albert.embeddings";
        let e = config.embedding_size;
        Self {
            word_embeddings: f.embedding(
                &format!("{p}.word_embeddings.weight"),
                config.vocab_size,
                e,
                InitRule::NormalZeroRow(config.pad_token_id),
            ),
            position_embeddings: f.embedding(
                &format!("{p}.position_embeddings.weight"),
                config.max_position_embeddings,
                e,
                InitRule::Normal,
            ),
            token_type_embeddings: f.embedding(
                &format!("{p}.token_type_embeddings.weight"),
                config.type_vocab_size,
                e,
                InitRule::Normal,
            ),
            layer_norm: f.layer_norm(&format!("{p}.LayerNorm"), e, config.layer_norm_eps),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            pad_token_id: config.pad_token_id,
            layer_norm_eps: config.layer_norm_eps,
        }
    }
}

impl<B: FusedOps> AlbertEmbeddings<B> {
    /// Embeds token ids; positions are `0..S`.
    ///
    /// As transformers' `nn.Embedding(padding_idx = pad_token_id)`, a lookup of the pad id
    /// passes no gradient to the pad row (its value is used as is). At padded positions that
    /// gradient is 0 anyway; this matters only where the pad id is attended to.
    ///
    /// Position embeddings are the first S rows of the table broadcast over the batch (a slice:
    /// no index tensor, no gather, and the backward is a sum over the batch, not a scatter-add).
    ///
    /// # Shapes
    /// - `input_ids`: `[B, S]`
    /// - `token_type_ids`: `[B, S]`
    /// - output: `[B, S, E]`
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let seq = input_ids.dims()[1];
        let positions = self.position_embeddings.weight.val().narrow(0, 0, seq).unsqueeze::<3>();
        let words = self.word_embeddings.forward(input_ids.clone());
        let words = match self.pad_token_id {
            Some(pad) => {
                let [batch, seq, e] = words.dims();
                let is_pad =
                    input_ids.equal_elem(pad as i64).unsqueeze_dim::<3>(2).expand([batch, seq, e]);
                words.clone().mask_where(is_pad, words.detach())
            }
            None => words,
        };
        let x = words + self.token_type_embeddings.forward(token_type_ids) + positions;
        self.dropout.forward(fused::layer_norm(&self.layer_norm, self.layer_norm_eps, x))
    }
}
