use burn::module::Module;

use super::{
    DECODER_BIAS, DECODER_WEIGHT, HfTensor, WEIGHTS_FILE, export_hf, import_hf, read_safetensors,
    write_safetensors,
};
use crate::DefaultBackend;
use crate::albert::AlbertForPreTraining;
use crate::albert::tests::{Perturb, tiny, tiny_batch};
use crate::config::AlbertConfig;
use crate::error::ModelError;
use crate::hash::parameter_hash;
use crate::params::param_specs;

type B = DefaultBackend;

fn exported_tiny(dir: &std::path::Path) -> AlbertForPreTraining<B> {
    let model = AlbertForPreTraining::<B>::init(&tiny(), 21, &Default::default())
        .expect("init")
        .map(&mut Perturb::default());
    export_hf(&model, &tiny(), dir).expect("export");
    model
}

#[test]
fn export_then_import_gives_the_same_hash_and_logits() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = exported_tiny(dir.path());
    let (config, back) = import_hf::<B>(dir.path(), &Default::default()).expect("import");
    assert_eq!(config, tiny());
    assert_eq!(parameter_hash(&back).expect("hash"), parameter_hash(&model).expect("hash"));
    let input = tiny_batch().to_device::<B>(&config, &Default::default()).expect("batch").input;
    let a = model.forward(&input).prediction_logits.into_data().to_vec::<f32>().expect("f32");
    let b = back.forward(&input).prediction_logits.into_data().to_vec::<f32>().expect("f32");
    assert_eq!(a, b);
    // Import → export → import is a fixed point too.
    let again = tempfile::tempdir().expect("tmp");
    export_hf(&back, &config, again.path()).expect("export");
    let (_, third) = import_hf::<B>(again.path(), &Default::default()).expect("import");
    assert_eq!(parameter_hash(&third).expect("hash"), parameter_hash(&model).expect("hash"));
}

#[test]
fn exported_keys_and_shapes_are_transformers() {
    let dir = tempfile::tempdir().expect("tmp");
    exported_tiny(dir.path());
    let tensors = read_safetensors(&dir.path().join(WEIGHTS_FILE)).expect("read");
    let mut expected: Vec<String> = param_specs(&tiny()).into_iter().map(|s| s.name).collect();
    expected.push(DECODER_WEIGHT.into());
    expected.push(DECODER_BIAS.into());
    expected.sort();
    assert_eq!(tensors.keys().cloned().collect::<Vec<_>>(), expected);
    let shape = |name: &str| tensors[name].0.clone();
    assert_eq!(shape("albert.encoder.embedding_hidden_mapping_in.weight"), [64, 32]);
    assert_eq!(shape("predictions.dense.weight"), [32, 64]);
    assert_eq!(shape("sop_classifier.classifier.weight"), [2, 64]);
    assert_eq!(shape(DECODER_WEIGHT), [1000, 32]);
    assert_eq!(tensors[DECODER_WEIGHT], tensors["albert.embeddings.word_embeddings.weight"]);
    assert_eq!(tensors[DECODER_BIAS], tensors["predictions.bias"]);
    let raw = std::fs::read(dir.path().join(WEIGHTS_FILE)).expect("read");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&raw).expect("header");
    let format = meta.metadata().as_ref().and_then(|m| m.get("format").cloned());
    assert_eq!(format.as_deref(), Some("pt"));
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(config["model_type"], "albert");
    assert_eq!(config["hidden_act"], "gelu_new");
}

/// Rewrites the exported weights through `edit`, then imports and returns the error text.
fn import_error_after(edit: impl FnOnce(&mut Vec<HfTensor>)) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    exported_tiny(dir.path());
    let path = dir.path().join(WEIGHTS_FILE);
    let mut tensors: Vec<HfTensor> = read_safetensors(&path)
        .expect("read")
        .into_iter()
        .map(|(name, (shape, values))| HfTensor { name, shape, values })
        .collect();
    edit(&mut tensors);
    write_safetensors(&path, &tensors).expect("write");
    match import_hf::<B>(dir.path(), &Default::default()) {
        Ok(_) => panic!("import must fail"),
        Err(e @ ModelError::Checkpoint { .. }) => e.to_string(),
        Err(other) => panic!("unexpected error kind {other:?}"),
    }
}

#[test]
fn bad_checkpoints_are_rejected_naming_the_tensor() {
    let missing = import_error_after(|t| t.retain(|t| t.name != "albert.pooler.bias"));
    assert!(missing.contains("albert.pooler.bias is missing"), "{missing}");
    let unexpected = import_error_after(|t| {
        t.push(HfTensor { name: "cls.extra".into(), shape: vec![1], values: vec![0.0] })
    });
    assert!(unexpected.contains("unexpected tensor cls.extra"), "{unexpected}");
    let misshaped = import_error_after(|t| {
        let pooler = t.iter_mut().find(|t| t.name == "albert.pooler.bias").expect("pooler");
        pooler.shape = vec![32, 2];
    });
    assert!(
        misshaped.contains("albert.pooler.bias has shape [32, 2], expected [64]"),
        "{misshaped}"
    );
}

#[test]
fn checkpoint_without_predictions_bias_uses_the_decoder_alias() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = exported_tiny(dir.path());
    let path = dir.path().join(WEIGHTS_FILE);
    let tensors: Vec<HfTensor> = read_safetensors(&path)
        .expect("read")
        .into_iter()
        .filter(|(name, _)| name != "predictions.bias")
        .map(|(name, (shape, values))| HfTensor { name, shape, values })
        .collect();
    write_safetensors(&path, &tensors).expect("write");
    let (_, back) = import_hf::<B>(dir.path(), &Default::default()).expect("import");
    assert_eq!(parameter_hash(&back).expect("hash"), parameter_hash(&model).expect("hash"));
}

#[test]
fn unsupported_config_in_checkpoint_is_rejected() {
    let dir = tempfile::tempdir().expect("tmp");
    exported_tiny(dir.path());
    let config = AlbertConfig { num_hidden_groups: 2, ..tiny() };
    std::fs::write(dir.path().join("config.json"), serde_json::to_string(&config).expect("json"))
        .expect("write");
    let err = import_hf::<B>(dir.path(), &Default::default()).expect_err("rejected");
    assert!(err.to_string().contains("num_hidden_groups = 2"), "{err}");
}

#[test]
fn non_f32_tensors_are_rejected_naming_the_tensor() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join(WEIGHTS_FILE);
    let bytes = [0u8; 4];
    let view = TensorView::new(Dtype::F16, vec![2], &bytes).expect("view");
    safetensors::serialize_to_file(vec![("albert.pooler.bias", view)], None, &path).expect("write");
    let err = read_safetensors(&path).expect_err("f16 rejected").to_string();
    assert!(err.contains("albert.pooler.bias has dtype F16"), "{err}");
}
