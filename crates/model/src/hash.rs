//! Walking parameters in canonical order, and the SHA-256 parameter hash replicas compare.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::params::hf_name;

/// One parameter as the visitor saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamEntry {
    /// Hugging Face name.
    pub name: String,
    /// Its id in this module.
    pub id: ParamId,
    /// burn shape.
    pub shape: Vec<usize>,
    /// Values as f32 (row-major), when requested.
    pub values: Option<Vec<f32>>,
}

#[derive(Debug)]
struct Collector {
    path: Vec<String>,
    with_values: bool,
    entries: Vec<ParamEntry>,
    error: Option<ModelError>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let name = hf_name(&self.path);
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let values = if self.with_values {
            match tensor.into_data().convert::<f32>().into_vec::<f32>() {
                Ok(v) => Some(v),
                Err(e) => {
                    self.error.get_or_insert(ModelError::TensorData {
                        name: name.clone(),
                        reason: format!("{e:?}"),
                    });
                    None
                }
            }
        } else {
            None
        };
        self.entries.push(ParamEntry { name, id: param.id, shape, values });
    }
}

/// Every float parameter of `module` in canonical (visitor) order, optionally with values.
pub fn collect_params<B: Backend, M: Module<B>>(
    module: &M,
    with_values: bool,
) -> Result<Vec<ParamEntry>> {
    let mut collector =
        Collector { path: Vec::new(), with_values, entries: Vec::new(), error: None };
    module.visit(&mut collector);
    match collector.error {
        Some(e) => Err(e),
        None => Ok(collector.entries),
    }
}

/// SHA-256 over, for each parameter in canonical order: name length (u64 LE), name bytes,
/// rank (u64 LE), each dim (u64 LE), then the f32 values (LE bytes). Hex-encoded.
pub fn parameter_hash<B: Backend, M: Module<B>>(module: &M) -> Result<String> {
    let mut hasher = Sha256::new();
    for entry in collect_params(module, true)? {
        hasher.update((entry.name.len() as u64).to_le_bytes());
        hasher.update(entry.name.as_bytes());
        hasher.update((entry.shape.len() as u64).to_le_bytes());
        for d in &entry.shape {
            hasher.update((*d as u64).to_le_bytes());
        }
        for v in entry.values.unwrap_or_default() {
            hasher.update(v.to_le_bytes());
        }
    }
    Ok(hex_string(&hasher.finalize()))
}

pub(crate) fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
