//! The job spec names a preset plus Hugging Face overrides; the model crate wants a full
//! `AlbertConfig`. This is the one place that maps one onto the other.

use albatross_model::{AlbertConfig, HiddenAct, ModelError};
use albatross_proto::job::{self, ModelPreset, ModelSpec};

/// The model configuration a job trains: the preset with the spec's overrides applied, validated
/// by the model crate (so combinations the spec cannot judge alone, such as a hidden size the
/// preset's head count does not divide, are caught before any worker starts).
///
/// # Errors
/// [`ModelError::UnsupportedConfig`] naming the offending field.
pub fn albert_config(spec: &ModelSpec) -> Result<AlbertConfig, ModelError> {
    let mut config = AlbertConfig::preset(preset_name(spec.preset))?;
    let set = |target: &mut usize, value: Option<u32>| {
        if let Some(value) = value {
            *target = value as usize;
        }
    };
    set(&mut config.vocab_size, spec.vocab_size);
    set(&mut config.embedding_size, spec.embedding_size);
    set(&mut config.hidden_size, spec.hidden_size);
    set(&mut config.num_hidden_layers, spec.num_hidden_layers);
    set(&mut config.num_attention_heads, spec.num_attention_heads);
    set(&mut config.intermediate_size, spec.intermediate_size);
    set(&mut config.max_position_embeddings, spec.max_position_embeddings);
    if let Some(act) = spec.hidden_act {
        config.hidden_act = match act {
            job::Activation::GeluNew => HiddenAct::GeluNew,
            job::Activation::Gelu => HiddenAct::Gelu,
            job::Activation::Relu => HiddenAct::Relu,
        };
    }
    if let Some(p) = spec.hidden_dropout_prob {
        config.hidden_dropout_prob = p;
    }
    if let Some(p) = spec.attention_probs_dropout_prob {
        config.attention_probs_dropout_prob = p;
    }
    config.validate()?;
    Ok(config)
}

fn preset_name(preset: ModelPreset) -> &'static str {
    match preset {
        ModelPreset::Tiny => "tiny",
        ModelPreset::Base => "base",
        ModelPreset::Large => "large",
        ModelPreset::Xlarge => "xlarge",
        ModelPreset::Xxlarge => "xxlarge",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(preset: ModelPreset) -> ModelSpec {
        let text = "[model]\npreset = \"tiny\"\n[data]\ndir = \"d\"\n";
        let mut spec =
            albatross_proto::job::JobSpec::from_toml_str(text, "test").expect("valid spec").model;
        spec.preset = preset;
        spec
    }

    #[test]
    fn every_preset_maps_to_the_model_crates_preset() {
        for (preset, name) in [
            (ModelPreset::Tiny, "tiny"),
            (ModelPreset::Base, "base"),
            (ModelPreset::Large, "large"),
            (ModelPreset::Xlarge, "xlarge"),
            (ModelPreset::Xxlarge, "xxlarge"),
        ] {
            let expected = AlbertConfig::preset(name).expect("preset");
            assert_eq!(albert_config(&spec(preset)).expect("maps"), expected, "{name}");
        }
    }

    #[test]
    fn overrides_replace_preset_fields() {
        let mut spec = spec(ModelPreset::Tiny);
        spec.vocab_size = Some(8000);
        spec.num_hidden_layers = Some(4);
        spec.hidden_act = Some(job::Activation::Relu);
        spec.hidden_dropout_prob = Some(0.1);
        let config = albert_config(&spec).expect("maps");
        assert_eq!(config.vocab_size, 8000);
        assert_eq!(config.num_hidden_layers, 4);
        assert_eq!(config.hidden_act, HiddenAct::Relu);
        assert!((config.hidden_dropout_prob - 0.1).abs() < f64::EPSILON);
        assert_eq!(config.hidden_size, 64, "fields not overridden keep the preset's value");
    }

    #[test]
    fn combinations_the_spec_cannot_judge_alone_are_rejected_by_name() {
        // tiny has 2 heads; 63 is not a multiple of 2.
        let mut spec = spec(ModelPreset::Tiny);
        spec.hidden_size = Some(63);
        let err = albert_config(&spec).expect_err("63 is not divisible by 2 heads");
        assert!(err.to_string().contains("hidden_size"), "{err}");
    }
}
