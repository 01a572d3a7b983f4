use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};

use crate::albert::AlbertForPreTraining;
use crate::albert::tests::{Perturb, tiny, tiny_batch};
use crate::config::AlbertConfig;
use crate::error::ModelError;
use crate::grads::GradLayout;
use crate::hash::parameter_hash;
use crate::{DefaultAutodiffBackend, DefaultBackend};

type AB = DefaultAutodiffBackend;
type B = DefaultBackend;

/// The tiny preset without dropout (the SOP head's `classifier_dropout_prob` is 0.1 by
/// default, and dropout is on under autodiff), so gradients are a function of the weights.
fn tiny_no_dropout() -> AlbertConfig {
    AlbertConfig { classifier_dropout_prob: 0.0, ..tiny() }
}

fn model_and_grads(seed: u64) -> (AlbertForPreTraining<AB>, GradientsParams) {
    let config = tiny_no_dropout();
    let device = Default::default();
    let model = AlbertForPreTraining::<AB>::init(&config, seed, &device)
        .expect("init")
        .map(&mut Perturb::default());
    let batch = tiny_batch().to_device::<AB>(&config, &device).expect("batch");
    let out = model.pretraining_loss(&batch);
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    (model, grads)
}

#[test]
fn layout_from_config_equals_layout_of_the_model() {
    let config = tiny();
    let model = AlbertForPreTraining::<B>::init(&config, 1, &Default::default()).expect("init");
    let from_model = GradLayout::from_module(&model).expect("layout");
    let from_config = GradLayout::from_config(&config);
    assert_eq!(from_model, from_config);
    assert_eq!(from_config.len(), 91_530);
    assert_eq!(from_config.byte_len(), 366_120);
    let last = from_config.entries().last().expect("entries");
    assert_eq!(last.offset + last.numel, from_config.len());
    // albert-base exchanges 47,255,240 bytes per step (FIGURES.md).
    let base = GradLayout::from_config(&AlbertConfig::preset("base").expect("preset"));
    assert_eq!(base.byte_len(), 47_255_240);
    let err = base.check_peer(&from_config.fingerprint()).expect_err("different models");
    assert!(matches!(err, ModelError::LayoutMismatch { .. }));
    from_config.check_peer(&from_model.fingerprint()).expect("same model");
}

#[test]
fn flatten_then_unflatten_is_bit_exact() {
    let (model, mut grads) = model_and_grads(4);
    let layout = GradLayout::from_module(&model).expect("layout");
    // Reference values taken with `get` before `flatten` moves them out.
    let mut reference = Vec::new();
    for e in layout.entries() {
        let data = match e.shape.len() {
            1 => grads.get::<B, 1>(e.id).expect("grad").into_data(),
            _ => grads.get::<B, 2>(e.id).expect("grad").into_data(),
        };
        reference.extend(data.to_vec::<f32>().expect("f32"));
    }
    assert!(reference.iter().any(|&g| g != 0.0));
    let buffer = layout.flatten::<B>(&mut grads).expect("flatten");
    assert!(grads.is_empty(), "flatten moves every gradient out");
    let bits = |v: &[f32]| v.iter().map(|g| g.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&buffer), bits(&reference));

    let mut back = layout.unflatten::<B>(&buffer, &Default::default()).expect("unflatten");
    assert_eq!(back.len(), layout.entries().len());
    let again = layout.flatten::<B>(&mut back).expect("flatten again");
    assert_eq!(bits(&again), bits(&buffer));
}

#[test]
fn optimizer_step_with_written_back_gradients_is_identical() {
    let (model, mut grads) = model_and_grads(6);
    let layout = GradLayout::from_module(&model).expect("layout");
    let snapshot = {
        let mut copy = GradientsParams::new();
        for e in layout.entries() {
            match e.shape.len() {
                1 => copy.register(e.id, grads.get::<B, 1>(e.id).expect("grad")),
                _ => copy.register(e.id, grads.get::<B, 2>(e.id).expect("grad")),
            }
        }
        copy
    };
    let buffer = layout.flatten::<B>(&mut grads).expect("flatten");
    let written_back = layout.unflatten::<B>(&buffer, &Default::default()).expect("unflatten");

    let mut adam_a = AdamConfig::new().init::<AB, AlbertForPreTraining<AB>>();
    let mut adam_b = AdamConfig::new().init::<AB, AlbertForPreTraining<AB>>();
    let stepped_a = adam_a.step(1e-3, model.clone(), snapshot);
    let stepped_b = adam_b.step(1e-3, model.clone(), written_back);
    let hash_a = parameter_hash(&stepped_a.valid()).expect("hash");
    assert_eq!(hash_a, parameter_hash(&stepped_b.valid()).expect("hash"));
    assert_ne!(hash_a, parameter_hash(&model.valid()).expect("hash"), "the step changed weights");
}

#[test]
fn wrong_sized_buffers_are_rejected() {
    let layout = GradLayout::from_config(&tiny());
    let err = layout.unflatten::<B>(&[0.0; 10], &Default::default()).expect_err("too short");
    assert!(err.to_string().contains("expected 91530 f32 elements, got 10"), "{err}");
    let mut grads = GradientsParams::new();
    let mut short = vec![0.0; 5];
    assert!(layout.flatten_into::<B>(&mut grads, &mut short).is_err());
}

#[test]
fn missing_gradients_flatten_to_zeros() {
    let layout = GradLayout::from_config(&tiny());
    let buffer = layout.flatten::<B>(&mut GradientsParams::new()).expect("flatten");
    assert_eq!(buffer.len(), layout.len());
    assert!(buffer.iter().all(|&g| g == 0.0));
}

/// Autodiff gradients against central finite differences (h = 1e-2, f32 model) for one element
/// of several parameters across the model, tied decoder included. Tolerance 2e-3 + 2% relative.
#[test]
fn autodiff_gradients_match_finite_differences() {
    use std::collections::HashMap;

    use crate::hash::collect_params;

    let config = tiny_no_dropout();
    let device = Default::default();
    let base = AlbertForPreTraining::<B>::init(&config, 12, &device)
        .expect("init")
        .map(&mut Perturb::default());
    let values: HashMap<String, Vec<f32>> = collect_params(&base, true)
        .expect("collect")
        .into_iter()
        .map(|p| (p.name, p.values.expect("values")))
        .collect();
    let host = tiny_batch();
    let loss_of = |values: &HashMap<String, Vec<f32>>| -> f64 {
        let model =
            AlbertForPreTraining::<B>::from_values(&config, values, &device).expect("model");
        let batch = host.to_device::<B>(&config, &device).expect("batch");
        f64::from(model.pretraining_loss(&batch).report().loss)
    };
    let trained =
        AlbertForPreTraining::<AB>::from_values(&config, &values, &device).expect("model");
    let batch = host.to_device::<AB>(&config, &device).expect("batch");
    let mut grads =
        GradientsParams::from_grads(trained.pretraining_loss(&batch).loss.backward(), &trained);
    let layout = GradLayout::from_module(&trained).expect("layout");
    let buffer = layout.flatten::<B>(&mut grads).expect("flatten");

    let layer = crate::params::SHARED_LAYER;
    let probes = [
        ("albert.embeddings.word_embeddings.weight".to_owned(), 17 * 32 + 3),
        ("albert.embeddings.position_embeddings.weight".to_owned(), 2 * 32 + 5),
        ("albert.embeddings.LayerNorm.weight".to_owned(), 7),
        (format!("{layer}.attention.query.weight"), 5 * 64 + 9),
        (format!("{layer}.attention.value.bias"), 11),
        (format!("{layer}.ffn.weight"), 3 * 128 + 40),
        (format!("{layer}.full_layer_layer_norm.bias"), 4),
        ("albert.pooler.weight".to_owned(), 10 * 64 + 2),
        ("predictions.bias".to_owned(), 999),
        ("predictions.dense.weight".to_owned(), 6 * 32 + 1),
        ("sop_classifier.classifier.bias".to_owned(), 1),
    ];
    let h = 1e-2f32;
    for (name, index) in probes {
        let entry = layout.entries().iter().find(|e| e.name == name).expect("in layout");
        let analytic = f64::from(buffer[entry.offset + index]);
        let mut plus = values.clone();
        plus.get_mut(&name).expect("param")[index] += h;
        let mut minus = values.clone();
        minus.get_mut(&name).expect("param")[index] -= h;
        let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * f64::from(h));
        let tolerance = 2e-3 + 0.02 * analytic.abs();
        assert!(
            (numeric - analytic).abs() < tolerance,
            "{name}[{index}]: autodiff {analytic} vs finite difference {numeric}"
        );
    }
}

/// Flex backward is bit-deterministic for this model (every rank must compute the same bytes
/// for the same batch), including the embedding tables whose rows repeat in a batch.
#[test]
fn gradients_are_bit_identical_run_to_run() {
    let run = || {
        let (model, mut grads) = model_and_grads(13);
        let layout = GradLayout::from_module(&model).expect("layout");
        let buffer = layout.flatten::<B>(&mut grads).expect("flatten");
        (layout, buffer)
    };
    let (layout, first) = run();
    for _ in 0..3 {
        let (_, again) = run();
        let differing: Vec<&str> = layout
            .entries()
            .iter()
            .filter(|e| {
                let r = e.offset..e.offset + e.numel;
                first[r.clone()].iter().zip(&again[r]).any(|(a, b)| a.to_bits() != b.to_bits())
            })
            .map(|e| e.name.as_str())
            .collect();
        assert!(differing.is_empty(), "gradients differ run to run: {differing:?}");
    }
}
