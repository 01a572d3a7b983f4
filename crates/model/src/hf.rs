//! Hugging Face interop: a transformers ALBERT checkpoint directory (`config.json` +
//! `model.safetensors`, transformers' parameter names, Linear weights `[out, in]`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::prelude::Backend;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::albert::AlbertForPreTraining;
use crate::config::AlbertConfig;
use crate::error::{ModelError, Result};
use crate::hash::{ParamEntry, collect_params};
use crate::params::{ParamSpec, param_specs};

/// The config file of a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file of a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// transformers' tied alias of `albert.embeddings.word_embeddings.weight`.
pub const DECODER_WEIGHT: &str = "predictions.decoder.weight";
/// transformers' tied alias of `predictions.bias`.
pub const DECODER_BIAS: &str = "predictions.decoder.bias";
/// A non-persistent buffer some older checkpoints carry; ignored on import.
const POSITION_IDS: &str = "albert.embeddings.position_ids";

/// One tensor as transformers names and lays it out.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// transformers parameter name.
    pub name: String,
    /// transformers shape (Linear weights `[out, in]`).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn hf_shape(spec: &ParamSpec) -> Vec<usize> {
    if spec.hf_transposed { spec.shape.iter().rev().copied().collect() } else { spec.shape.clone() }
}

/// The model's parameters as transformers' `AlbertForPreTraining.state_dict()` holds them,
/// tied aliases included, in canonical order.
pub fn hf_state_dict<B: Backend>(
    model: &AlbertForPreTraining<B>,
    config: &AlbertConfig,
) -> Result<Vec<HfTensor>> {
    hf_tensors_from_entries(collect_params(model, true)?, config)
}

/// [`hf_state_dict`] from parameters already taken out of a model (burn layout, with values),
/// e.g. a replica's flat training state cut by its layout; a checkpoint writer needs no model.
pub fn hf_tensors_from_entries(
    entries: Vec<ParamEntry>,
    config: &AlbertConfig,
) -> Result<Vec<HfTensor>> {
    let specs: HashMap<String, ParamSpec> =
        param_specs(config).into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut out = Vec::with_capacity(specs.len() + 2);
    for entry in entries {
        let spec = specs.get(&entry.name).filter(|s| s.shape == entry.shape).ok_or_else(|| {
            ModelError::ParamMismatch {
                name: entry.name.clone(),
                reason: format!("shape {:?} is not in the layout of this config", entry.shape),
            }
        })?;
        let values = entry.values.unwrap_or_default();
        let values = match (spec.hf_transposed, entry.shape.as_slice()) {
            (true, &[rows, cols]) => transpose(&values, rows, cols),
            _ => values,
        };
        out.push(HfTensor { name: entry.name, shape: hf_shape(spec), values });
    }
    let alias = |from: &str, to: &str, out: &Vec<HfTensor>| {
        out.iter().find(|t| t.name == from).map(|t| HfTensor { name: to.to_owned(), ..t.clone() })
    };
    let tied = [
        alias("albert.embeddings.word_embeddings.weight", DECODER_WEIGHT, &out),
        alias("predictions.bias", DECODER_BIAS, &out),
    ];
    out.extend(tied.into_iter().flatten());
    Ok(out)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |e| ModelError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

/// Writes `tensors` as an f32 safetensors file with transformers' `{"format": "pt"}` metadata.
pub fn write_safetensors(path: &Path, tensors: &[HfTensor]) -> Result<()> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let checkpoint_error = |reason: String| ModelError::Checkpoint { path: path.into(), reason };
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| checkpoint_error(format!("tensor {}: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| checkpoint_error(e.to_string()))
}

/// Tensors read from a file: name → (shape, row-major f32 values), sorted by name.
pub type TensorMap = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of an f32 safetensors file (other dtypes are rejected, naming the tensor).
pub fn read_safetensors(path: &Path) -> Result<TensorMap> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let checkpoint_error = |reason: String| ModelError::Checkpoint { path: path.into(), reason };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| checkpoint_error(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        if name == POSITION_IDS {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(checkpoint_error(format!(
                "tensor {name} has dtype {:?}; only F32 is supported",
                view.dtype()
            )));
        }
        let values =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        out.insert(name, (view.shape().to_vec(), values.collect()));
    }
    Ok(out)
}

/// Exports a checkpoint directory that `AlbertForPreTraining.from_pretrained(dir)` loads.
pub fn export_hf<B: Backend>(
    model: &AlbertForPreTraining<B>,
    config: &AlbertConfig,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, config.to_json_string()).map_err(io_error(&config_path))?;
    let tensors = hf_state_dict(model, config)?;
    write_safetensors(&dir.join(WEIGHTS_FILE), &tensors)?;
    tracing::info!(dir = %dir.display(), tensors = tensors.len(), "exported hugging face checkpoint");
    Ok(())
}

/// Loads a transformers ALBERT checkpoint directory. Tied `predictions.decoder.*` keys are
/// accepted (the bias stands in for `predictions.bias` when that is absent); a missing,
/// unexpected or mis-shaped tensor is an error naming it.
pub fn import_hf<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(AlbertConfig, AlbertForPreTraining<B>)> {
    let (config, values) = read_hf_values(dir)?;
    let model = AlbertForPreTraining::from_values(&config, &values, device)?;
    tracing::info!(dir = %dir.display(), "imported hugging face checkpoint");
    Ok((config, model))
}

/// The configuration and every parameter (burn layout, keyed by Hugging Face name) of a
/// transformers ALBERT checkpoint directory, checked as [`import_hf`] checks them.
pub fn read_hf_values(dir: &Path) -> Result<(AlbertConfig, HashMap<String, Vec<f32>>)> {
    let config = AlbertConfig::from_json_file(&dir.join(CONFIG_FILE))?;
    let path: PathBuf = dir.join(WEIGHTS_FILE);
    let mut tensors = read_safetensors(&path)?;
    let checkpoint_error = |reason: String| ModelError::Checkpoint { path: path.clone(), reason };
    let decoder_bias = tensors.remove(DECODER_BIAS);
    if let Some((shape, _)) = tensors.remove(DECODER_WEIGHT) {
        let expected = [config.vocab_size, config.embedding_size];
        if shape != expected {
            return Err(checkpoint_error(format!(
                "tensor {DECODER_WEIGHT} has shape {shape:?}, expected {expected:?}"
            )));
        }
    }
    if let Some(bias) = decoder_bias {
        tensors.entry("predictions.bias".to_owned()).or_insert(bias);
    }
    let mut values = HashMap::new();
    for spec in param_specs(&config) {
        let (shape, data) = tensors
            .remove(&spec.name)
            .ok_or_else(|| checkpoint_error(format!("tensor {} is missing", spec.name)))?;
        let expected = hf_shape(&spec);
        if shape != expected {
            return Err(checkpoint_error(format!(
                "tensor {} has shape {shape:?}, expected {expected:?}",
                spec.name
            )));
        }
        let data = match (spec.hf_transposed, shape.as_slice()) {
            (true, &[rows, cols]) => transpose(&data, rows, cols),
            _ => data,
        };
        values.insert(spec.name, data);
    }
    if let Some(name) = tensors.keys().next() {
        return Err(checkpoint_error(format!("unexpected tensor {name}")));
    }
    Ok((config, values))
}

#[cfg(test)]
#[path = "hf_test.rs"]
mod tests;
