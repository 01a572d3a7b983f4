//! `albatross model info`: sizes of a configuration, computed without allocating the model.

use serde::Serialize;

use crate::config::AlbertConfig;
use crate::grads::GradLayout;
use crate::params::{bert_equivalent_parameter_count, parameter_breakdown};

/// Sizes of one ALBERT configuration and of the BERT it replaces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Trainable parameters (tied decoder counted once).
    pub parameters: usize,
    /// f32 gradient bytes one step exchanges (one copy of the flat buffer).
    pub gradient_bytes: usize,
    /// Parameters per top-level module.
    pub modules: Vec<ModuleSize>,
    /// Number of parameter tensors.
    pub tensors: usize,
    /// Fingerprint of the gradient layout (hex SHA-256).
    pub layout_fingerprint: String,
    /// A BERT of the same V, H, L, FF (no factorisation or sharing), MLM + NSP heads.
    pub bert_equivalent_parameters: usize,
    /// Its f32 gradient bytes per step.
    pub bert_equivalent_gradient_bytes: usize,
    /// `bert_equivalent_gradient_bytes / gradient_bytes`: the saving of cross-layer sharing.
    pub communication_saving: f64,
    /// The configuration.
    pub config: AlbertConfig,
}

/// One row of the per-module breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleSize {
    /// `embeddings`, `encoder`, `pooler`, `predictions` or `sop_classifier`.
    pub module: String,
    /// Its parameters.
    pub parameters: usize,
}

impl ModelInfo {
    /// Computes the sizes of `config`.
    pub fn new(config: &AlbertConfig) -> Self {
        let layout = GradLayout::from_config(config);
        let bert = bert_equivalent_parameter_count(config);
        let bytes = layout.byte_len();
        Self {
            parameters: layout.len(),
            gradient_bytes: bytes,
            modules: parameter_breakdown(config)
                .into_iter()
                .map(|(module, parameters)| ModuleSize { module, parameters })
                .collect(),
            tensors: layout.entries().len(),
            layout_fingerprint: layout.fingerprint_hex(),
            bert_equivalent_parameters: bert,
            bert_equivalent_gradient_bytes: bert * 4,
            communication_saving: (bert * 4) as f64 / bytes.max(1) as f64,
            config: config.clone(),
        }
    }

    /// Pretty JSON for `--json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_info_json_has_the_cli_contract_fields() {
        let info = ModelInfo::new(&AlbertConfig::preset("base").expect("preset"));
        let json: serde_json::Value = serde_json::from_str(&info.to_json()).expect("json");
        assert_eq!(json["parameters"], 11_813_810);
        assert_eq!(json["gradient_bytes"], 47_255_240);
        assert_eq!(json["modules"][0]["module"], "embeddings");
        let total: u64 = json["modules"]
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["parameters"].as_u64().expect("count"))
            .sum();
        assert_eq!(total, 11_813_810);
        // BERT-base-sized (V 30000) exchanges ~9.3x the bytes.
        assert_eq!(info.bert_equivalent_parameters, 109_705_010);
        assert!((info.communication_saving - 9.286).abs() < 1e-3, "{}", info.communication_saving);
    }
}
