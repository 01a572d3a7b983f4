use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::DefaultBackend;
use crate::albert::AlbertForPreTraining;
use crate::batch::{HostBatch, IGNORE_INDEX};
use crate::config::AlbertConfig;
use crate::config::HiddenAct;
use crate::hash::{collect_params, parameter_hash};
use crate::init::{normal_values, with_path_ids};
use crate::params::{hf_name, param_id, param_specs, parameter_count};
use crate::reference_test::Naive;

type B = DefaultBackend;

pub(crate) fn tiny() -> AlbertConfig {
    AlbertConfig::preset("tiny").expect("preset")
}

/// Two sequences of 8; the second has two padding tokens; four masked positions.
pub(crate) fn tiny_batch() -> HostBatch {
    let mut labels = vec![IGNORE_INDEX; 16];
    labels[2] = 17;
    labels[5] = 999;
    labels[9] = 3;
    labels[12] = 450;
    HostBatch {
        batch: 2,
        seq: 8,
        input_ids: vec![2, 15, 4, 77, 3, 4, 901, 3, 2, 4, 33, 5, 4, 3, 0, 0],
        token_type_ids: vec![0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
        labels,
        sentence_order_label: vec![0, 1],
    }
}

/// Adds seeded noise to every parameter, so biases and LayerNorm parameters are non-trivial.
#[derive(Debug, Default)]
pub(crate) struct Perturb {
    path: Vec<String>,
}

impl<Bk: Backend> ModuleMapper<Bk> for Perturb {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Bk, D>>) -> Param<Tensor<Bk, D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let noise = normal_values(99, &hf_name(&self.path), dims.iter().product(), 0.2);
        let noise = Tensor::<Bk, D>::from_data(TensorData::new(noise, dims), &tensor.device());
        // Detached and re-marked: the perturbed value is a new leaf, as a loaded weight would be.
        let value = (tensor + noise).detach().require_grad();
        Param::from_mapped_value(id, value, mapper)
    }
}

#[test]
fn visitor_order_names_shapes_and_ids_match_the_canonical_list() {
    let config = tiny();
    let model = AlbertForPreTraining::<B>::init(&config, 1, &Default::default()).expect("init");
    let seen = collect_params(&model, false).expect("collect");
    let specs = param_specs(&config);
    let seen_names: Vec<(&str, &[usize])> =
        seen.iter().map(|p| (p.name.as_str(), p.shape.as_slice())).collect();
    let spec_names: Vec<(&str, &[usize])> =
        specs.iter().map(|s| (s.name.as_str(), s.shape.as_slice())).collect();
    assert_eq!(seen_names, spec_names);
    assert!(seen.iter().all(|p| p.id == param_id(&p.name)));
    assert_eq!(model.num_params(), parameter_count(&config));
    assert_eq!(model.num_params(), 91_530);
}

#[test]
fn same_seed_gives_equal_hashes_and_ids_other_seed_does_not() {
    let config = tiny();
    let device = Default::default();
    let a = AlbertForPreTraining::<B>::init(&config, 42, &device).expect("init");
    let b = AlbertForPreTraining::<B>::init(&config, 42, &device).expect("init");
    let c = AlbertForPreTraining::<B>::init(&config, 43, &device).expect("init");
    let hash_a = parameter_hash(&a).expect("hash");
    assert_eq!(hash_a.len(), 64);
    assert_eq!(hash_a, parameter_hash(&b).expect("hash"));
    assert_ne!(hash_a, parameter_hash(&c).expect("hash"));
    let ids = |m: &AlbertForPreTraining<B>| -> Vec<ParamId> {
        collect_params(m, false).expect("collect").into_iter().map(|p| p.id).collect()
    };
    assert_eq!(ids(&a), ids(&b));
    // The padding row of the word embeddings is zero, the rest is N(0, 0.02).
    let word = a.word_embeddings().into_data().to_vec::<f32>().expect("f32");
    assert!(word[..32].iter().all(|&v| v == 0.0));
    assert!(word[32..64].iter().all(|&v| v != 0.0 && v.abs() < 0.2));
}

/// Replaces every id with a fresh random one (what burn's own `init` or a store load gives).
struct RandomIds;
impl<Bk: Backend> ModuleMapper<Bk> for RandomIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Bk, D>>) -> Param<Tensor<Bk, D>> {
        let (_, tensor, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), tensor, mapper)
    }
}

#[test]
fn path_id_mapper_restores_path_derived_ids() {
    let model = AlbertForPreTraining::<B>::init(&tiny(), 5, &Default::default()).expect("init");
    let scrambled = model.map(&mut RandomIds);
    let before = collect_params(&scrambled, false).expect("collect");
    assert!(before.iter().all(|p| p.id != param_id(&p.name)));
    let fixed = with_path_ids(scrambled);
    let after = collect_params(&fixed, false).expect("collect");
    assert!(after.iter().all(|p| p.id == param_id(&p.name)));
}

#[test]
fn init_rejects_unsupported_config() {
    let config = AlbertConfig { num_hidden_groups: 2, ..tiny() };
    let err =
        AlbertForPreTraining::<B>::init(&config, 1, &Default::default()).expect_err("rejected");
    assert!(err.to_string().contains("num_hidden_groups"), "{err}");
}

/// Tolerance: f32 burn vs f64 reference on O(1) activations through 2 layers: 1e-4 absolute.
fn assert_forward_matches_naive(act: HiddenAct) {
    let config = AlbertConfig { hidden_act: act, ..tiny() };
    let device = Default::default();
    let model = AlbertForPreTraining::<B>::init(&config, 3, &device).expect("init");
    let model = model.map(&mut Perturb::default());
    let batch = tiny_batch();
    let input = batch.to_device::<B>(&config, &device).expect("batch").input;
    let out = model.forward(&input);
    assert_eq!(out.prediction_logits.dims(), [2, 8, 1000]);
    assert_eq!(out.sop_logits.dims(), [2, 2]);
    let logits = out.prediction_logits.into_data().to_vec::<f32>().expect("f32");
    let sop = out.sop_logits.into_data().to_vec::<f32>().expect("f32");
    let entries = collect_params(&model, true).expect("collect");
    let naive = Naive::new(&config, &entries);
    let mut worst: f64 = 0.0;
    for b in 0..2 {
        let r = b * 8..(b + 1) * 8;
        let (ref_logits, ref_sop) = naive.forward(
            &batch.input_ids[r.clone()],
            &batch.token_type_ids[r.clone()],
            &batch.attention_mask[r],
        );
        for (s, row) in ref_logits.iter().enumerate() {
            for (v, &expected) in row.iter().enumerate() {
                let got = f64::from(logits[(b * 8 + s) * 1000 + v]);
                worst = worst.max((got - expected).abs());
            }
        }
        for (k, &expected) in ref_sop.iter().enumerate() {
            worst = worst.max((f64::from(sop[b * 2 + k]) - expected).abs());
        }
    }
    assert!(worst < 1e-4, "{act:?}: max abs diff {worst}");
}

#[test]
fn forward_matches_naive_reference_gelu_new() {
    assert_forward_matches_naive(HiddenAct::GeluNew);
}

#[test]
fn forward_matches_naive_reference_gelu_and_relu() {
    assert_forward_matches_naive(HiddenAct::Gelu);
    assert_forward_matches_naive(HiddenAct::Relu);
}

#[test]
fn masked_logits_equal_full_logits_at_masked_positions() {
    let config = tiny();
    let device = Default::default();
    let model = AlbertForPreTraining::<B>::init(&config, 8, &device).expect("init");
    let model = model.map(&mut Perturb::default());
    let batch = tiny_batch().to_device::<B>(&config, &device).expect("batch");
    let full = model.forward(&batch.input).prediction_logits.reshape([16, 1000]);
    let picked = full.select(0, batch.mlm_positions.clone());
    let (masked, _) = model.forward_masked(&batch.input, batch.mlm_positions.clone());
    assert_eq!(masked.dims(), [4, 1000]);
    let a = picked.into_data().to_vec::<f32>().expect("f32");
    let b = masked.into_data().to_vec::<f32>().expect("f32");
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "max abs diff {worst}");
}

#[test]
fn dropout_is_active_under_autodiff_and_off_for_evaluation() {
    type AB = crate::DefaultAutodiffBackend;
    let config = AlbertConfig { classifier_dropout_prob: 0.5, ..tiny() };
    let device = Default::default();
    fn sop<Bk: Backend>(logits: Tensor<Bk, 2>) -> Vec<f32> {
        logits.into_data().to_vec::<f32>().expect("f32")
    }
    let train = AlbertForPreTraining::<AB>::init(&config, 4, &device).expect("init");
    let input = tiny_batch().to_device::<AB>(&config, &device).expect("batch").input;
    let draws: Vec<Vec<f32>> = (0..4).map(|_| sop(train.forward(&input).sop_logits)).collect();
    assert!(draws.windows(2).any(|w| w[0] != w[1]), "dropout must change training outputs");
    let eval = AlbertForPreTraining::<B>::init(&config, 4, &device).expect("init");
    let input = tiny_batch().to_device::<B>(&config, &device).expect("batch").input;
    assert_eq!(sop(eval.forward(&input).sop_logits), sop(eval.forward(&input).sop_logits));
}
