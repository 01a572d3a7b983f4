//! The shared post-LN transformer layer: self-attention and FFN, each followed by residual +
//! LayerNorm, named as transformers' `AlbertLayer`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::config::{AlbertConfig, HiddenAct};
use crate::fused::{self, FusedOps, RepeatedLinear};
use crate::init::ParamFactory;

/// Applies `act` element-wise.
pub fn activate<B: FusedOps, const D: usize>(act: HiddenAct, x: Tensor<B, D>) -> Tensor<B, D> {
    match act {
        HiddenAct::GeluNew => fused::gelu_new(x),
        HiddenAct::Gelu => burn::tensor::activation::gelu(x),
        HiddenAct::Relu => burn::tensor::activation::relu(x),
    }
}

/// `attention`: multi-head self-attention, output projection `dense`, residual, `LayerNorm`.
#[derive(Module, Debug)]
pub struct AlbertAttention<B: Backend> {
    /// Query projection H→H.
    pub query: Linear<B>,
    /// Key projection H→H.
    pub key: Linear<B>,
    /// Value projection H→H.
    pub value: Linear<B>,
    /// Output projection H→H.
    pub dense: Linear<B>,
    /// Post-residual LayerNorm.
    pub layer_norm: LayerNorm<B>,
    /// Dropout on attention probabilities.
    pub attention_dropout: Dropout,
    /// Dropout on the projected output.
    pub output_dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
    /// The LayerNorm's epsilon (burn keeps its own private; the fused norm needs it).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> AlbertAttention<B> {
    fn new(config: &AlbertConfig, f: &ParamFactory<'_, B>, prefix: &str) -> Self {
        let h = config.hidden_size;
        Self {
            query: f.linear(&format!("{prefix}.query"), h, h),
            key: f.linear(&format!("{prefix}.key"), h, h),
            value: f.linear(&format!("{prefix}.value"), h, h),
            dense: f.linear(&format!("{prefix}.dense"), h, h),
            layer_norm: f.layer_norm(&format!("{prefix}.LayerNorm"), h, config.layer_norm_eps),
            attention_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            output_dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            num_heads: config.num_attention_heads,
            layer_norm_eps: config.layer_norm_eps,
        }
    }
}

impl<B: FusedOps> AlbertAttention<B> {
    /// The four projections, prepared for the applications of one forward pass.
    pub fn prepare(&self) -> PreparedAttention<'_, B> {
        PreparedAttention {
            query: RepeatedLinear::new(&self.query),
            key: RepeatedLinear::new(&self.key),
            value: RepeatedLinear::new(&self.value),
            dense: RepeatedLinear::new(&self.dense),
        }
    }

    /// Self-attention with the projections `prepared` by [`Self::prepare`] in this pass. Rows
    /// are tokens: linear maps run as one 2-D matmul over all B·S tokens (a 3-D input would
    /// make burn broadcast the weight and reduce a `[B, in, out]` weight gradient).
    ///
    /// # Shapes
    /// - `x`: `[B·S, H]`
    /// - `mask_bias`: `[B, 1, 1, S]`, 0 where attended, a large negative number at padding
    /// - output: `[B·S, H]`
    pub fn forward(
        &self,
        prepared: &PreparedAttention<'_, B>,
        x: Tensor<B, 2>,
        mask_bias: Tensor<B, 4>,
    ) -> Tensor<B, 2> {
        let batch = mask_bias.dims()[0];
        let hidden = x.dims()[1];
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let split = |t: Tensor<B, 2>| fused::split_heads(t, batch, heads);
        let q = split(prepared.query.forward(x.clone()));
        let k = split(prepared.key.forward(x.clone()));
        let v = split(prepared.value.forward(x.clone()));
        let scale = 1.0 / (head_dim as f32).sqrt();
        let scores = fused::attention_matmul(q, k.swap_dims(2, 3));
        let probs = fused::attention_probs(scores, mask_bias, scale);
        let probs = self.attention_dropout.forward(probs);
        let context = fused::merge_heads(fused::attention_matmul(probs, v));
        let projected = self.output_dropout.forward(prepared.dense.forward(context));
        fused::layer_norm(&self.layer_norm, self.layer_norm_eps, x + projected)
    }
}

/// [`AlbertAttention`]'s projections prepared for one forward pass.
#[derive(Debug)]
pub struct PreparedAttention<'a, B: FusedOps> {
    query: RepeatedLinear<'a, B>,
    key: RepeatedLinear<'a, B>,
    value: RepeatedLinear<'a, B>,
    dense: RepeatedLinear<'a, B>,
}

/// `albert_layers.0`: the one shared layer.
#[derive(Module, Debug)]
pub struct AlbertLayer<B: Backend> {
    /// LayerNorm after the FFN residual.
    pub full_layer_layer_norm: LayerNorm<B>,
    /// Self-attention block.
    pub attention: AlbertAttention<B>,
    /// FFN in: H→FF.
    pub ffn: Linear<B>,
    /// FFN out: FF→H.
    pub ffn_output: Linear<B>,
    /// FFN activation.
    #[module(skip)]
    pub activation: HiddenAct,
    /// The LayerNorm's epsilon.
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> AlbertLayer<B> {
    fn new(config: &AlbertConfig, f: &ParamFactory<'_, B>, prefix: &str) -> Self {
        let (h, ff) = (config.hidden_size, config.intermediate_size);
        Self {
            full_layer_layer_norm: f.layer_norm(
                &format!("{prefix}.full_layer_layer_norm"),
                h,
                config.layer_norm_eps,
            ),
            attention: AlbertAttention::new(config, f, &format!("{prefix}.attention")),
            ffn: f.linear(&format!("{prefix}.ffn"), h, ff),
            ffn_output: f.linear(&format!("{prefix}.ffn_output"), ff, h),
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        }
    }
}

impl<B: FusedOps> AlbertLayer<B> {
    /// The layer's six linear maps prepared for the forward pass that is about to apply the
    /// layer `num_hidden_layers` times (see [`RepeatedLinear`]).
    pub fn prepare(&self) -> PreparedLayer<'_, B> {
        PreparedLayer {
            attention: self.attention.prepare(),
            ffn: RepeatedLinear::new(&self.ffn),
            ffn_output: RepeatedLinear::new(&self.ffn_output),
        }
    }

    /// Post-LN layer as transformers' `AlbertLayer` (no dropout after the FFN, as there), with
    /// the linear maps `prepared` by [`Self::prepare`] in this pass.
    ///
    /// # Shapes
    /// - `x`: `[B·S, H]`, `mask_bias`: `[B, 1, 1, S]`, output: `[B·S, H]`
    pub fn forward(
        &self,
        prepared: &PreparedLayer<'_, B>,
        x: Tensor<B, 2>,
        mask_bias: Tensor<B, 4>,
    ) -> Tensor<B, 2> {
        let attended = self.attention.forward(&prepared.attention, x, mask_bias);
        let inner = activate(self.activation, prepared.ffn.forward(attended.clone()));
        let out = prepared.ffn_output.forward(inner);
        fused::layer_norm(&self.full_layer_layer_norm, self.layer_norm_eps, out + attended)
    }
}

/// [`AlbertLayer`]'s linear maps prepared for one forward pass.
#[derive(Debug)]
pub struct PreparedLayer<'a, B: FusedOps> {
    attention: PreparedAttention<'a, B>,
    ffn: RepeatedLinear<'a, B>,
    ffn_output: RepeatedLinear<'a, B>,
}

/// `albert_layer_groups.0`: a group holding the one layer.
#[derive(Module, Debug)]
pub struct AlbertLayerGroup<B: Backend> {
    /// Exactly one layer.
    pub albert_layers: Vec<AlbertLayer<B>>,
}

/// `albert.encoder`: E→H projection, then the shared layer applied L times.
#[derive(Module, Debug)]
pub struct AlbertTransformer<B: Backend> {
    /// `embedding_hidden_mapping_in`: E→H.
    pub embedding_hidden_mapping_in: Linear<B>,
    /// Exactly one group (validated config).
    pub albert_layer_groups: Vec<AlbertLayerGroup<B>>,
    /// L: how many times the shared layer is applied.
    pub num_hidden_layers: usize,
}

impl<B: Backend> AlbertTransformer<B> {
    pub(crate) fn new(config: &AlbertConfig, f: &ParamFactory<'_, B>) -> Self {
        let layer = AlbertLayer::new(config, f, crate::params::SHARED_LAYER);
        Self {
            embedding_hidden_mapping_in: f.linear(
                "albert.encoder.embedding_hidden_mapping_in",
                config.embedding_size,
                config.hidden_size,
            ),
            albert_layer_groups: vec![AlbertLayerGroup { albert_layers: vec![layer] }],
            num_hidden_layers: config.num_hidden_layers,
        }
    }
}

impl<B: FusedOps> AlbertTransformer<B> {
    /// # Shapes
    /// - `embedded`: `[B, S, E]`, `mask_bias`: `[B, 1, 1, S]`, output: `[B, S, H]`
    pub fn forward(&self, embedded: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, seq, width] = embedded.dims();
        let flat = embedded.reshape([batch * seq, width]);
        let mut x = fused::linear(&self.embedding_hidden_mapping_in, flat);
        for layer in self.albert_layer_groups.iter().flat_map(|g| g.albert_layers.iter()) {
            let prepared = layer.prepare();
            for _ in 0..self.num_hidden_layers {
                x = layer.forward(&prepared, x, mask_bias.clone());
            }
        }
        let hidden = x.dims()[1];
        x.reshape([batch, seq, hidden])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DefaultBackend as B;
    use burn::tensor::TensorData;

    /// The sigmoid form against the tanh formula in f64, on [-8, 8]: 1e-6 absolute.
    #[test]
    fn gelu_new_matches_the_tanh_formula() {
        let xs: Vec<f32> = (0..=1600).map(|i| -8.0 + i as f32 * 0.01).collect();
        let n = xs.len();
        let t = Tensor::<B, 1>::from_data(TensorData::new(xs.clone(), [n]), &Default::default());
        let got = fused::gelu_new(t).into_data().to_vec::<f32>().expect("f32");
        let c = (2.0 / std::f64::consts::PI).sqrt();
        for (x, g) in xs.iter().map(|&x| f64::from(x)).zip(got) {
            let expected = 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh());
            assert!((f64::from(g) - expected).abs() < 1e-6, "x {x}: {g} vs {expected}");
        }
    }
}
