//! Deterministic, backend-independent initialisation and path-derived parameter ids.
//!
//! Every parameter's values come from its own random stream, seeded by SHA-256(seed ‖ name) and
//! generated on the host in f64 (SplitMix64 + Box–Muller), so the values depend on neither the
//! backend, nor the order parameters are touched in, nor the process. Parameters are created
//! initialised (never lazily) with the id [`param_id`] gives their Hugging Face name.

use std::collections::HashMap;

use albatross_rng::SplitMix64;
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};
use sha2::{Digest, Sha256};

use crate::params::{InitRule, hf_name, param_id};

/// The stream seed of one parameter.
pub(crate) fn stream_seed(seed: u64, name: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"albatross.init/")
        .chain_update(seed.to_le_bytes())
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// `n` samples of Normal(0, std) from the stream of `name`.
pub(crate) fn normal_values(seed: u64, name: &str, n: usize, std: f64) -> Vec<f32> {
    let mut rng = SplitMix64::new(stream_seed(seed, name));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u1 = 1.0 - rng.next_f64(); // (0, 1]: ln is finite
        let u2 = rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        out.push((r * theta.cos() * std) as f32);
        if out.len() < n {
            out.push((r * theta.sin() * std) as f32);
        }
    }
    out
}

/// Host values of one parameter under `rule`.
pub(crate) fn init_values(
    seed: u64,
    std: f64,
    name: &str,
    shape: &[usize],
    rule: InitRule,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    match rule {
        InitRule::Zeros => vec![0.0; n],
        InitRule::Ones => vec![1.0; n],
        InitRule::Normal => normal_values(seed, name, n, std),
        InitRule::NormalZeroRow(row) => {
            let mut values = normal_values(seed, name, n, std);
            let width = shape.get(1).copied().unwrap_or(1);
            if let Some(row) = row
                && let Some(slot) = values.get_mut(row * width..(row + 1) * width)
            {
                slot.fill(0.0);
            }
            values
        }
    }
}

/// Creates named, initialised parameters on one device: from `loaded` values (burn layout,
/// keyed by Hugging Face name) when present there, else from the seed.
#[derive(Debug)]
pub(crate) struct ParamFactory<'a, B: Backend> {
    pub(crate) seed: u64,
    pub(crate) std: f64,
    pub(crate) device: &'a B::Device,
    pub(crate) loaded: Option<&'a HashMap<String, Vec<f32>>>,
}

impl<B: Backend> ParamFactory<'_, B> {
    pub(crate) fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        rule: InitRule,
    ) -> Param<Tensor<B, D>> {
        let values = match self.loaded.and_then(|m| m.get(name)) {
            Some(values) => values.clone(),
            None => init_values(self.seed, self.std, name, &shape, rule),
        };
        let tensor = Tensor::<B, D>::from_data(TensorData::new(values, shape), self.device);
        Param::initialized(param_id(name), tensor.require_grad())
    }

    pub(crate) fn linear(&self, prefix: &str, d_in: usize, d_out: usize) -> Linear<B> {
        Linear {
            weight: self.param(&format!("{prefix}.weight"), [d_in, d_out], InitRule::Normal),
            bias: Some(self.param(&format!("{prefix}.bias"), [d_out], InitRule::Zeros)),
        }
    }

    pub(crate) fn layer_norm(&self, prefix: &str, d: usize, eps: f64) -> LayerNorm<B> {
        let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(self.device);
        norm.gamma = self.param(&format!("{prefix}.weight"), [d], InitRule::Ones);
        norm.beta = Some(self.param(&format!("{prefix}.bias"), [d], InitRule::Zeros));
        norm
    }

    pub(crate) fn embedding(&self, name: &str, n: usize, d: usize, rule: InitRule) -> Embedding<B> {
        Embedding { weight: self.param(name, [n, d], rule) }
    }
}

/// Re-keys every parameter of a module to the id derived from its Hugging Face name.
///
/// Apply it to a module that did not come from [`crate::albert::AlbertForPreTraining::init`] (a module
/// loaded by a store or built by burn's own `init`) so every process agrees on ids.
#[derive(Debug, Default)]
pub struct PathIdMapper {
    path: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for PathIdMapper {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        Param::from_mapped_value(param_id(&hf_name(&self.path)), tensor, mapper)
    }
}

/// Applies [`PathIdMapper`] to `module`.
pub fn with_path_ids<B: Backend, M: Module<B>>(module: M) -> M {
    module.map(&mut PathIdMapper::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_stream_has_the_right_moments_and_is_reproducible() {
        let a = normal_values(7, "x", 100_000, 0.02);
        assert_eq!(a, normal_values(7, "x", 100_000, 0.02));
        assert_ne!(a[..8], normal_values(8, "x", 8, 0.02)[..]);
        assert_ne!(a[..8], normal_values(7, "y", 8, 0.02)[..]);
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = a.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        // Standard error of the mean is 0.02/sqrt(1e5) ≈ 6.3e-5; of the std ≈ 4.5e-5.
        assert!(mean.abs() < 3e-4, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 3e-4, "std {}", var.sqrt());
    }

    #[test]
    fn padding_row_is_zero_and_other_rules_are_constant() {
        let values = init_values(1, 0.02, "w", &[4, 3], InitRule::NormalZeroRow(Some(2)));
        assert_eq!(values[6..9], [0.0, 0.0, 0.0]);
        assert!(values[..6].iter().all(|&v| v != 0.0));
        assert_eq!(init_values(1, 0.02, "b", &[3], InitRule::Zeros), vec![0.0; 3]);
        assert_eq!(init_values(1, 0.02, "g", &[2], InitRule::Ones), vec![1.0; 2]);
    }
}
