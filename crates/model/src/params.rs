//! The canonical parameter list: Hugging Face names, burn shapes, init rule, weight-decay flag.
//!
//! Derived from the config alone, so parameter counts, the gradient layout and its fingerprint
//! are known without allocating a model. The order is the model's visitor order (struct field
//! order), which a test checks against a built model.

use burn::module::ParamId;
use sha2::{Digest, Sha256};

use crate::config::AlbertConfig;

/// How a parameter is initialised (transformers' `AlbertPreTrainedModel._init_weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitRule {
    /// Normal(0, `initializer_range`).
    Normal,
    /// Normal(0, `initializer_range`) with the row of `pad_token_id` set to zero.
    NormalZeroRow(Option<usize>),
    /// All zeros (biases).
    Zeros,
    /// All ones (LayerNorm weights).
    Ones,
}

/// One parameter of `AlbertForPreTraining` (tied decoder weights counted once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Hugging Face name, e.g. `albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight`.
    pub name: String,
    /// Shape in burn's layout (a Linear weight is `[in, out]`).
    pub shape: Vec<usize>,
    /// Whether the Hugging Face tensor is the transpose (`[out, in]`) of the burn one.
    pub hf_transposed: bool,
    /// Initialisation rule.
    pub init: InitRule,
    /// Whether LAMB applies weight decay (not to LayerNorm and bias parameters).
    pub weight_decay: bool,
}

impl ParamSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Top-level group for breakdowns: `embeddings`, `encoder`, `pooler`, `predictions`,
    /// `sop_classifier`.
    pub fn group(&self) -> &str {
        let mut parts = self.name.split('.');
        match parts.next() {
            Some("albert") => parts.next().unwrap_or("albert"),
            Some(first) => first,
            None => "",
        }
    }
}

/// Builds the list in canonical order.
#[derive(Debug, Default)]
struct SpecBuilder {
    specs: Vec<ParamSpec>,
}

impl SpecBuilder {
    fn push(&mut self, name: String, shape: Vec<usize>, init: InitRule, transposed: bool) {
        let is_bias = name.ends_with(".bias") || name == "predictions.bias";
        let is_norm = name.contains("LayerNorm") || name.contains("layer_norm");
        self.specs.push(ParamSpec {
            name,
            shape,
            hf_transposed: transposed,
            init,
            weight_decay: !(is_bias || is_norm),
        });
    }

    fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize) {
        self.push(format!("{prefix}.weight"), vec![d_in, d_out], InitRule::Normal, true);
        self.push(format!("{prefix}.bias"), vec![d_out], InitRule::Zeros, false);
    }

    fn layer_norm(&mut self, prefix: &str, d: usize) {
        self.push(format!("{prefix}.weight"), vec![d], InitRule::Ones, false);
        self.push(format!("{prefix}.bias"), vec![d], InitRule::Zeros, false);
    }
}

/// Prefix of the one shared transformer layer.
pub const SHARED_LAYER: &str = "albert.encoder.albert_layer_groups.0.albert_layers.0";

/// Every parameter of `AlbertForPreTraining` for `config`, in canonical order.
pub fn param_specs(config: &AlbertConfig) -> Vec<ParamSpec> {
    let (v, e, h, ff) =
        (config.vocab_size, config.embedding_size, config.hidden_size, config.intermediate_size);
    let mut b = SpecBuilder::default();
    let emb = "albert.embeddings";
    b.push(
        format!("{emb}.word_embeddings.weight"),
        vec![v, e],
        InitRule::NormalZeroRow(config.pad_token_id),
        false,
    );
    b.push(
        format!("{emb}.position_embeddings.weight"),
        vec![config.max_position_embeddings, e],
        InitRule::Normal,
        false,
    );
    b.push(
        format!("{emb}.token_type_embeddings.weight"),
        vec![config.type_vocab_size, e],
        InitRule::Normal,
        false,
    );
    b.layer_norm(&format!("{emb}.LayerNorm"), e);
    b.linear("albert.encoder.embedding_hidden_mapping_in", e, h);
    let layer = SHARED_LAYER;
    b.layer_norm(&format!("{layer}.full_layer_layer_norm"), h);
    for proj in ["query", "key", "value", "dense"] {
        b.linear(&format!("{layer}.attention.{proj}"), h, h);
    }
    b.layer_norm(&format!("{layer}.attention.LayerNorm"), h);
    b.linear(&format!("{layer}.ffn"), h, ff);
    b.linear(&format!("{layer}.ffn_output"), ff, h);
    b.linear("albert.pooler", h, h);
    b.push("predictions.bias".into(), vec![v], InitRule::Zeros, false);
    b.layer_norm("predictions.LayerNorm", e);
    b.linear("predictions.dense", h, e);
    b.linear("sop_classifier.classifier", h, 2);
    b.specs
}

/// Total trainable parameters (tied decoder counted once), without allocating anything.
pub fn parameter_count(config: &AlbertConfig) -> usize {
    param_specs(config).iter().map(ParamSpec::numel).sum()
}

/// Parameters per top-level group, in canonical order of first appearance.
pub fn parameter_breakdown(config: &AlbertConfig) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for spec in param_specs(config) {
        let group = spec.group().to_owned();
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, n)) => *n += spec.numel(),
            None => out.push((group, spec.numel())),
        }
    }
    out
}

/// Parameters of a BERT with the same V, H, L, FF and heads (no factorisation, no sharing) with
/// MLM + NSP heads, the MLM decoder tied: the size of what BERT's all-reduce exchanges.
pub fn bert_equivalent_parameter_count(config: &AlbertConfig) -> usize {
    let (v, h, ff, l) =
        (config.vocab_size, config.hidden_size, config.intermediate_size, config.num_hidden_layers);
    let embeddings = (v + config.max_position_embeddings + config.type_vocab_size) * h + 2 * h;
    let layer = 4 * (h * h + h) + 2 * h + (h * ff + ff) + (ff * h + h) + 2 * h;
    let pooler = h * h + h;
    let mlm = (h * h + h) + 2 * h + v;
    let nsp = 2 * h + 2;
    embeddings + l * layer + pooler + mlm + nsp
}

/// The burn module path of a parameter mapped to its Hugging Face name: `layer_norm` →
/// `LayerNorm`, LayerNorm `gamma`/`beta` → `weight`/`bias`.
pub fn hf_name(burn_path: &[String]) -> String {
    let last = burn_path.len().saturating_sub(1);
    let mut parent_is_norm = false;
    let mut parts = Vec::with_capacity(burn_path.len());
    for (i, seg) in burn_path.iter().enumerate() {
        let mapped = match seg.as_str() {
            "layer_norm" => "LayerNorm",
            "gamma" if i == last && parent_is_norm => "weight",
            "beta" if i == last && parent_is_norm => "bias",
            other => other,
        };
        parent_is_norm = seg == "layer_norm" || seg.ends_with("layer_norm");
        parts.push(mapped);
    }
    parts.join(".")
}

/// The parameter id of a canonical name: the first 8 bytes (little endian) of
/// SHA-256(`albatross.param/` ‖ name). The same in every process.
pub fn param_id(name: &str) -> ParamId {
    let digest =
        Sha256::new().chain_update(b"albatross.param/").chain_update(name.as_bytes()).finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    ParamId::from(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_transformers_exactly() {
        let expected = [
            ("tiny", 91_530),
            ("base", 11_813_810),
            ("large", 17_847_474),
            ("xlarge", 59_021_490),
            ("xxlarge", 223_158_450),
        ];
        for (preset, count) in expected {
            let config = AlbertConfig::preset(preset).expect("preset");
            assert_eq!(parameter_count(&config), count, "{preset}");
            let by_group: usize = parameter_breakdown(&config).iter().map(|(_, n)| n).sum();
            assert_eq!(by_group, count, "{preset} breakdown");
        }
    }

    #[test]
    fn base_has_32_float_params_and_bert_base_matches_its_known_count() {
        let base = AlbertConfig::preset("base").expect("preset");
        assert_eq!(param_specs(&base).len(), 32);
        // BERT-base (V 30522) with MLM + NSP heads, decoder tied, as transformers counts it.
        let bert = AlbertConfig { vocab_size: 30522, ..base };
        assert_eq!(bert_equivalent_parameter_count(&bert), 110_106_428);
    }

    #[test]
    fn weight_decay_excludes_layer_norm_and_bias() {
        let specs = param_specs(&AlbertConfig::preset("tiny").expect("preset"));
        let decayed: Vec<&str> =
            specs.iter().filter(|s| s.weight_decay).map(|s| s.name.as_str()).collect();
        assert_eq!(decayed.len(), 13, "{decayed:?}");
        assert!(decayed.iter().all(|n| n.ends_with(".weight") && !n.contains("LayerNorm")));
        assert!(!decayed.iter().any(|n| n.contains("full_layer_layer_norm")));
    }

    #[test]
    fn burn_paths_map_to_hf_names() {
        let path = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            hf_name(&path("albert.embeddings.layer_norm.gamma")),
            "albert.embeddings.LayerNorm.weight"
        );
        assert_eq!(
            hf_name(&path(
                "albert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.beta"
            )),
            format!("{SHARED_LAYER}.full_layer_layer_norm.bias")
        );
        assert_eq!(hf_name(&path("predictions.dense.weight")), "predictions.dense.weight");
    }

    #[test]
    fn param_ids_are_stable_and_distinct() {
        let specs = param_specs(&AlbertConfig::preset("tiny").expect("preset"));
        let mut ids: Vec<u64> = specs.iter().map(|s| param_id(&s.name).val()).collect();
        assert_eq!(param_id("predictions.bias"), param_id("predictions.bias"));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), specs.len());
    }
}
