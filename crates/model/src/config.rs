//! `AlbertConfig`: mirrors Hugging Face's `config.json` for ALBERT, plus the paper's presets.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The activation named by `hidden_act` (used in the FFN and the MLM head transform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// Tanh-approximated GELU (transformers `gelu_new`; `gelu_pytorch_tanh` is the same function).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluNew,
    /// Exact erf GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// ReLU.
    #[serde(rename = "relu")]
    Relu,
}

/// ALBERT hyper-parameters, field for field as in transformers' `AlbertConfig`.
///
/// Missing keys take transformers' defaults, unknown keys (`architectures`, `torch_dtype`,
/// `transformers_version`, …) are ignored, so a checkpoint's `config.json` loads as is. Values
/// the model cannot honour are rejected by [`AlbertConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlbertConfig {
    /// Vocabulary size V.
    pub vocab_size: usize,
    /// Factorized embedding size E.
    pub embedding_size: usize,
    /// Hidden size H.
    pub hidden_size: usize,
    /// Number of times the shared layer is applied, L.
    pub num_hidden_layers: usize,
    /// Number of distinct layer groups (only 1 is supported: full cross-layer sharing).
    pub num_hidden_groups: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// FFN inner size.
    pub intermediate_size: usize,
    /// Layers inside a group (only 1 is supported).
    pub inner_group_num: usize,
    /// FFN / MLM-transform activation.
    pub hidden_act: HiddenAct,
    /// Dropout after embeddings and after the attention output projection.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the SOP classifier.
    pub classifier_dropout_prob: f64,
    /// Number of learned positions.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    pub type_vocab_size: usize,
    /// Std of the normal initialisation.
    pub initializer_range: f64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    pub position_embedding_type: String,
    /// Padding token; its word-embedding row is initialised to zero.
    pub pad_token_id: Option<usize>,
    /// Beginning-of-sequence token id (kept for round trips).
    pub bos_token_id: Option<usize>,
    /// End-of-sequence token id (kept for round trips).
    pub eos_token_id: Option<usize>,
    /// The MLM decoder is tied to the word embeddings; `false` is not supported.
    pub tie_word_embeddings: bool,
}

impl Default for AlbertConfig {
    /// transformers' `AlbertConfig()` defaults (which are albert-xxlarge).
    fn default() -> Self {
        Self {
            vocab_size: 30000,
            embedding_size: 128,
            hidden_size: 4096,
            num_hidden_layers: 12,
            num_hidden_groups: 1,
            num_attention_heads: 64,
            intermediate_size: 16384,
            inner_group_num: 1,
            hidden_act: HiddenAct::GeluNew,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            classifier_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            position_embedding_type: "absolute".to_owned(),
            pad_token_id: Some(0),
            bos_token_id: Some(2),
            eos_token_id: Some(3),
            tie_word_embeddings: true,
        }
    }
}

/// The preset names accepted by [`AlbertConfig::preset`].
pub const PRESETS: [&str; 5] = ["tiny", "base", "large", "xlarge", "xxlarge"];

impl AlbertConfig {
    /// A named preset: `tiny` (V 1000, E 32, H 64, L 2, 2 heads, FF 128) for tests, or the
    /// ALBERT paper's `base`, `large`, `xlarge`, `xxlarge` (V 30000, E 128, shared layer).
    pub fn preset(name: &str) -> Result<Self> {
        let (v, e, h, l, heads, ff) = match name {
            "tiny" => (1000, 32, 64, 2, 2, 128),
            "base" => (30000, 128, 768, 12, 12, 3072),
            "large" => (30000, 128, 1024, 24, 16, 4096),
            "xlarge" => (30000, 128, 2048, 24, 16, 8192),
            "xxlarge" => (30000, 128, 4096, 12, 64, 16384),
            other => return Err(ModelError::UnknownPreset(other.to_owned())),
        };
        Ok(Self {
            vocab_size: v,
            embedding_size: e,
            hidden_size: h,
            num_hidden_layers: l,
            num_attention_heads: heads,
            intermediate_size: ff,
            ..Self::default()
        })
    }

    /// Parses `config.json` text and validates it.
    pub fn from_json_str(json: &str) -> Result<Self> {
        let config = serde_json::from_str::<Self>(json).map_err(|e| ModelError::ConfigFile {
            path: "<inline config.json>".into(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Loads and validates a Hugging Face `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let file_error =
            |reason: String| ModelError::ConfigFile { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let config = serde_json::from_str::<Self>(&text).map_err(|e| file_error(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Serialises as a `config.json` that transformers' `AlbertConfig` reads.
    pub fn to_json_string(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert("model_type".into(), "albert".into());
            map.insert("architectures".into(), serde_json::json!(["AlbertForPreTraining"]));
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// Rejects configurations this implementation would otherwise mis-build.
    pub fn validate(&self) -> Result<()> {
        fn reject(field: &'static str, value: impl ToString, reason: &'static str) -> Result<()> {
            Err(ModelError::UnsupportedConfig { field, value: value.to_string(), reason })
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                return reject(field, value, "must be positive");
            }
        }
        if self.num_hidden_groups != 1 {
            return reject(
                "num_hidden_groups",
                self.num_hidden_groups,
                "only one hidden group (full cross-layer sharing) is supported",
            );
        }
        if self.inner_group_num != 1 {
            return reject(
                "inner_group_num",
                self.inner_group_num,
                "only one layer per group is supported",
            );
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return reject(
                "num_attention_heads",
                self.num_attention_heads,
                "must divide hidden_size",
            );
        }
        if self.position_embedding_type != "absolute" {
            return reject(
                "position_embedding_type",
                &self.position_embedding_type,
                "only absolute position embeddings are supported",
            );
        }
        if !self.tie_word_embeddings {
            return reject(
                "tie_word_embeddings",
                false,
                "the MLM decoder is always tied to the word embeddings",
            );
        }
        let probs = [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
            ("classifier_dropout_prob", self.classifier_dropout_prob),
        ];
        for (field, p) in probs {
            if !(0.0..1.0).contains(&p) {
                return reject(field, p, "must be in [0, 1)");
            }
        }
        if !(self.initializer_range.is_finite() && self.initializer_range >= 0.0) {
            return reject("initializer_range", self.initializer_range, "must be ≥ 0");
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return reject("layer_norm_eps", self.layer_norm_eps, "must be > 0");
        }
        if let Some(pad) = self.pad_token_id
            && pad >= self.vocab_size
        {
            return reject("pad_token_id", pad, "must be < vocab_size");
        }
        Ok(())
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_config_json_loads_as_is_and_ignores_unknown_keys() {
        let json = r#"{
          "architectures": ["AlbertForMaskedLM"],
          "attention_probs_dropout_prob": 0, "bos_token_id": 2, "classifier_dropout_prob": 0.1,
          "down_scale_factor": 1, "embedding_size": 128, "eos_token_id": 3, "gap_size": 0,
          "hidden_act": "gelu_new", "hidden_dropout_prob": 0, "hidden_size": 768,
          "initializer_range": 0.02, "inner_group_num": 1, "intermediate_size": 3072,
          "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "albert",
          "net_structure_type": 0, "num_attention_heads": 12, "num_hidden_groups": 1,
          "num_hidden_layers": 12, "num_memory_blocks": 0, "pad_token_id": 0,
          "type_vocab_size": 2, "vocab_size": 30000
        }"#;
        let config = AlbertConfig::from_json_str(json).expect("parses and validates");
        assert_eq!(config, AlbertConfig::preset("base").expect("preset"));
    }

    #[test]
    fn json_round_trip_preserves_every_field() {
        let config = AlbertConfig::preset("tiny").expect("preset");
        let back = AlbertConfig::from_json_str(&config.to_json_string()).expect("parses");
        assert_eq!(config, back);
    }

    #[test]
    fn unsupported_values_are_rejected_with_the_field_named() {
        let base = AlbertConfig::preset("tiny").expect("preset");
        let cases: Vec<(AlbertConfig, &str)> = vec![
            (AlbertConfig { num_hidden_groups: 2, ..base.clone() }, "num_hidden_groups = 2"),
            (AlbertConfig { inner_group_num: 3, ..base.clone() }, "inner_group_num = 3"),
            (AlbertConfig { num_attention_heads: 3, ..base.clone() }, "num_attention_heads = 3"),
            (
                AlbertConfig { position_embedding_type: "relative_key".into(), ..base.clone() },
                "position_embedding_type = relative_key",
            ),
            (AlbertConfig { tie_word_embeddings: false, ..base.clone() }, "tie_word_embeddings"),
            (AlbertConfig { hidden_dropout_prob: 1.5, ..base.clone() }, "hidden_dropout_prob"),
            (AlbertConfig { vocab_size: 0, ..base.clone() }, "vocab_size = 0"),
        ];
        for (config, needle) in cases {
            let message = config.validate().expect_err("must be rejected").to_string();
            assert!(message.contains(needle), "{message:?} should mention {needle:?}");
        }
    }

    #[test]
    fn unknown_activation_is_a_parse_error_naming_the_value() {
        let message = AlbertConfig::from_json_str(r#"{"hidden_act": "swish"}"#)
            .expect_err("swish is not supported")
            .to_string();
        assert!(message.contains("swish"), "{message}");
        let tanh =
            AlbertConfig::from_json_str(r#"{"hidden_act": "gelu_pytorch_tanh"}"#).expect("alias");
        assert_eq!(tanh.hidden_act, HiddenAct::GeluNew);
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = std::env::temp_dir().join(format!("albatross-model-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("config.json");
        std::fs::write(&path, r#"{"num_hidden_groups": 2}"#).expect("write");
        let message = AlbertConfig::from_json_file(&path).expect_err("rejected").to_string();
        assert!(message.contains("num_hidden_groups = 2"), "{message}");
        let missing = AlbertConfig::from_json_file(&dir.join("nope.json")).expect_err("missing");
        assert!(missing.to_string().contains("nope.json"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_preset_is_rejected() {
        let message = AlbertConfig::preset("huge").expect_err("unknown").to_string();
        assert!(message.contains("\"huge\""), "{message}");
    }
}
