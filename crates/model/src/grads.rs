//! The flat gradient buffer the all-reduce exchanges, and its layout.
//!
//! Gradients leave burn's `GradientsParams` (tensors on the inner, non-autodiff backend) in
//! canonical parameter order, packed into one contiguous f32 buffer; the reduced buffer is
//! written back into a fresh `GradientsParams` for `optimizer.step`. The same layout places
//! parameters in the flat state LAMB updates, and [`GradLayout::write_params`] copies a flat
//! parameter section back into a module's tensors.
//!
//! On a backend whose tensors live in device memory ([`FusedOps::DEVICE_MEMORY`]) each
//! direction is one transfer per step: the gradients are gathered into one device buffer and
//! read once, and the parameters are uploaded as one buffer whose slices become the tensors.

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use sha2::{Digest, Sha256};

use crate::config::AlbertConfig;
use crate::error::{ModelError, Result};
use crate::fused::FusedOps;
use crate::hash::{collect_params, hex_string};
use crate::params::{param_id, param_specs};

/// Where one parameter's gradient lives in the flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutEntry {
    /// Hugging Face name.
    pub name: String,
    /// Parameter id in the model.
    pub id: ParamId,
    /// burn shape.
    pub shape: Vec<usize>,
    /// First element in the buffer.
    pub offset: usize,
    /// Number of elements.
    pub numel: usize,
}

/// Names, shapes and offsets of every gradient, with a fingerprint peers compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradLayout {
    entries: Vec<LayoutEntry>,
    total: usize,
    fingerprint: [u8; 32],
}

impl GradLayout {
    fn from_parts(parts: impl IntoIterator<Item = (String, ParamId, Vec<usize>)>) -> Self {
        let mut hasher = Sha256::new().chain_update(b"albatross.grad-layout/v1");
        let mut entries = Vec::new();
        let mut offset = 0;
        for (name, id, shape) in parts {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((shape.len() as u64).to_le_bytes());
            for d in &shape {
                hasher.update((*d as u64).to_le_bytes());
            }
            let numel = shape.iter().product();
            entries.push(LayoutEntry { name, id, shape, offset, numel });
            offset += numel;
        }
        Self { entries, total: offset, fingerprint: hasher.finalize().into() }
    }

    /// The layout of a model built from `config`, without building it.
    pub fn from_config(config: &AlbertConfig) -> Self {
        Self::from_parts(
            param_specs(config)
                .into_iter()
                .map(|s| (param_id(&s.name), s))
                .map(|(id, s)| (s.name, id, s.shape)),
        )
    }

    /// The layout of an actual module (its own ids, its visitor order).
    pub fn from_module<B: Backend, M: Module<B>>(module: &M) -> Result<Self> {
        let params = collect_params(module, false)?;
        Ok(Self::from_parts(params.into_iter().map(|p| (p.name, p.id, p.shape))))
    }

    /// Entries in buffer order.
    pub fn entries(&self) -> &[LayoutEntry] {
        &self.entries
    }

    /// Total number of f32 elements.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the layout has no elements.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Bytes one copy of the buffer takes (f32).
    pub fn byte_len(&self) -> usize {
        self.total * std::mem::size_of::<f32>()
    }

    /// SHA-256 over names and shapes in order.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Hex form of [`Self::fingerprint`].
    pub fn fingerprint_hex(&self) -> String {
        hex_string(&self.fingerprint)
    }

    /// Errors unless a peer's fingerprint equals ours.
    pub fn check_peer(&self, peer: &[u8; 32]) -> Result<()> {
        if *peer == self.fingerprint {
            Ok(())
        } else {
            Err(ModelError::LayoutMismatch {
                expected: self.fingerprint_hex(),
                actual: hex_string(peer),
            })
        }
    }

    fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len == self.total {
            Ok(())
        } else {
            Err(ModelError::WrongSize {
                what: what.to_owned(),
                expected: format!("{} f32 elements", self.total),
                actual: format!("{len} elements"),
            })
        }
    }

    /// Moves every gradient out of `grads` (with `remove`, which avoids a copy) into `out`.
    /// A parameter without a gradient (not reached by this loss) gets zeros.
    ///
    /// `B` is the backend the gradients live on: the inner backend of the autodiff one.
    pub fn flatten_into<B: FusedOps>(
        &self,
        grads: &mut GradientsParams,
        out: &mut [f32],
    ) -> Result<()> {
        self.check_len("gradient buffer", out.len())?;
        if B::DEVICE_MEMORY {
            return self.gather_into::<B>(grads, out);
        }
        for entry in &self.entries {
            let slot = &mut out[entry.offset..entry.offset + entry.numel];
            let data = match entry.shape.len() {
                1 => grads.remove::<B, 1>(entry.id).map(Tensor::into_data),
                2 => grads.remove::<B, 2>(entry.id).map(Tensor::into_data),
                rank => {
                    return Err(ModelError::ParamMismatch {
                        name: entry.name.clone(),
                        reason: format!("rank {rank} is not supported (1 or 2)"),
                    });
                }
            };
            let Some(data) = data else {
                tracing::debug!(name = %entry.name, "no gradient for parameter, sending zeros");
                slot.fill(0.0);
                continue;
            };
            if data.shape.to_vec() != entry.shape {
                return Err(ModelError::ParamMismatch {
                    name: entry.name.clone(),
                    reason: format!(
                        "gradient shape {:?}, layout {:?}",
                        data.shape.to_vec(),
                        entry.shape
                    ),
                });
            }
            copy_f32s(&entry.name, data, slot)?;
        }
        Ok(())
    }

    /// [`Self::flatten_into`] for device memory: every gradient, flattened, is concatenated
    /// into one device buffer (zeros for a parameter without one), which is read once.
    fn gather_into<B: FusedOps>(&self, grads: &mut GradientsParams, out: &mut [f32]) -> Result<()> {
        match self.gather::<B>(grads)? {
            Some(flat) => self.read_flat(flat, out),
            None => {
                tracing::debug!("no parameter has a gradient, sending zeros");
                out.fill(0.0);
                Ok(())
            }
        }
    }

    /// Moves every gradient out of `grads` into one flat tensor in this layout, on the device
    /// the gradients live on (zeros for a parameter without one): what a device-memory
    /// backend sums over micro-batches before [`Self::read_flat`] reads it once. `None` when
    /// no parameter has a gradient.
    pub fn gather<B: Backend>(&self, grads: &mut GradientsParams) -> Result<Option<Tensor<B, 1>>> {
        let mut parts = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let shape_error = |dims: &[usize]| ModelError::ParamMismatch {
                name: entry.name.clone(),
                reason: format!("gradient shape {dims:?}, layout {:?}", entry.shape),
            };
            let part = match entry.shape.len() {
                1 => grads.remove::<B, 1>(entry.id),
                2 => grads
                    .remove::<B, 2>(entry.id)
                    .map(|t| {
                        let dims = t.dims();
                        if dims.as_slice() == entry.shape.as_slice() {
                            Ok(t.reshape([entry.numel]))
                        } else {
                            Err(shape_error(&dims))
                        }
                    })
                    .transpose()?,
                rank => {
                    return Err(ModelError::ParamMismatch {
                        name: entry.name.clone(),
                        reason: format!("rank {rank} is not supported (1 or 2)"),
                    });
                }
            };
            if let Some(part) = &part
                && part.dims()[0] != entry.numel
            {
                return Err(shape_error(&part.dims()));
            }
            parts.push(part);
        }
        let Some(device) = parts.iter().flatten().next().map(Tensor::device) else {
            return Ok(None);
        };
        let parts = parts
            .into_iter()
            .zip(&self.entries)
            .map(|(part, entry)| {
                part.unwrap_or_else(|| {
                    tracing::debug!(name = %entry.name, "no gradient for parameter, sending zeros");
                    Tensor::zeros([entry.numel], &device)
                })
            })
            .collect();
        Ok(Some(Tensor::cat(parts, 0)))
    }

    /// Reads a flat tensor in this layout (from [`Self::gather`]) into `out`: one transfer.
    pub fn read_flat<B: Backend>(&self, flat: Tensor<B, 1>, out: &mut [f32]) -> Result<()> {
        self.check_len("gradient buffer", out.len())?;
        copy_f32s("gathered gradients", flat.into_data(), out)
    }

    /// [`Self::flatten_into`] a new buffer.
    pub fn flatten<B: FusedOps>(&self, grads: &mut GradientsParams) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.total];
        self.flatten_into::<B>(grads, &mut out)?;
        Ok(out)
    }

    /// Builds `GradientsParams` (on `device`) from a reduced buffer, keyed by the layout's ids.
    pub fn unflatten<B: Backend>(
        &self,
        buffer: &[f32],
        device: &B::Device,
    ) -> Result<GradientsParams> {
        self.check_len("reduced gradient buffer", buffer.len())?;
        let mut grads = GradientsParams::new();
        for entry in &self.entries {
            let values = buffer[entry.offset..entry.offset + entry.numel].to_vec();
            match *entry.shape.as_slice() {
                [a] => grads.register(
                    entry.id,
                    Tensor::<B, 1>::from_data(TensorData::new(values, [a]), device),
                ),
                [a, b] => grads.register(
                    entry.id,
                    Tensor::<B, 2>::from_data(TensorData::new(values, [a, b]), device),
                ),
                _ => {
                    return Err(ModelError::ParamMismatch {
                        name: entry.name.clone(),
                        reason: format!("rank {} is not supported (1 or 2)", entry.shape.len()),
                    });
                }
            }
        }
        Ok(grads)
    }
}

impl GradLayout {
    /// The flat parameter section of `module` in this layout (what [`Self::write_params`]
    /// writes back).
    ///
    /// # Errors
    /// [`ModelError::WrongSize`] when the module's values do not fill the layout.
    pub fn read_params<B: Backend, M: Module<B>>(&self, module: &M) -> Result<Vec<f32>> {
        let mut values = Vec::with_capacity(self.total);
        for entry in collect_params(module, true)? {
            values.extend_from_slice(&entry.values.unwrap_or_default());
        }
        self.check_len("parameter section", values.len())?;
        Ok(values)
    }

    /// Replaces every parameter value of `module` with its slice of `values` (a flat parameter
    /// section in this layout), keeping ids and whether each tensor requires a gradient.
    ///
    /// # Errors
    /// [`ModelError::WrongSize`] when `values` does not fit the layout, and
    /// [`ModelError::ParamMismatch`] when the module's parameters (ids, shapes, count) are not
    /// this layout's; the module is then partly overwritten and must be discarded.
    pub fn write_params<B: FusedOps, M: Module<B>>(
        &self,
        module: M,
        values: &[f32],
        device: &B::Device,
    ) -> Result<M> {
        self.check_len("parameter section", values.len())?;
        // Device memory: one upload, whose slices (views, no copies) become the parameters.
        let uploaded = B::DEVICE_MEMORY.then(|| {
            Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
        });
        let mut writer =
            ParamWriter { layout: self, values, uploaded, device, next: 0, error: None };
        let module = module.map(&mut writer);
        if let Some(e) = writer.error {
            return Err(e);
        }
        if writer.next != self.entries.len() {
            let nearest = self.entries.get(writer.next).or(self.entries.last());
            return Err(ModelError::ParamMismatch {
                name: nearest.map_or_else(|| "(none)".to_owned(), |e| e.name.clone()),
                reason: format!(
                    "the module has {} parameters, the layout {}",
                    writer.next,
                    self.entries.len()
                ),
            });
        }
        Ok(module)
    }
}

/// Writes flat values into parameters, in visitor order (the layout's order).
struct ParamWriter<'a, B: Backend> {
    layout: &'a GradLayout,
    values: &'a [f32],
    /// `values` already on the device, where the backend has device memory.
    uploaded: Option<Tensor<B, 1>>,
    device: &'a B::Device,
    next: usize,
    error: Option<ModelError>,
}

impl<B: Backend> ModuleMapper<B> for ParamWriter<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let index = self.next;
        self.next += 1;
        if self.error.is_some() {
            return param;
        }
        let Some(entry) = self.layout.entries.get(index) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.dims();
        if id != entry.id || shape.as_slice() != entry.shape.as_slice() {
            self.error = Some(ModelError::ParamMismatch {
                name: entry.name.clone(),
                reason: format!(
                    "the module's parameter {index} has id {id} and shape {shape:?}, the layout \
                     id {} and shape {:?}",
                    entry.id, entry.shape
                ),
            });
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let range = entry.offset..entry.offset + entry.numel;
        let fresh = match &self.uploaded {
            Some(all) => all.clone().slice([range]).reshape(shape),
            None => Tensor::<B, D>::from_data(
                TensorData::new(self.values[range].to_vec(), shape),
                self.device,
            ),
        }
        .set_require_grad(tensor.is_require_grad());
        Param::from_mapped_value(id, fresh, mapper)
    }
}

/// Copies `data`'s elements (converted to f32 if they are not) into `out`, which must be as long.
fn copy_f32s(name: &str, data: TensorData, out: &mut [f32]) -> Result<()> {
    let data = if data.dtype == DType::F32 { data } else { data.convert::<f32>() };
    let values = data
        .as_slice::<f32>()
        .map_err(|e| ModelError::TensorData { name: name.to_owned(), reason: format!("{e:?}") })?;
    if values.len() != out.len() {
        return Err(ModelError::TensorData {
            name: name.to_owned(),
            reason: format!("{} elements read into a buffer of {}", values.len(), out.len()),
        });
    }
    out.copy_from_slice(values);
    Ok(())
}

#[cfg(test)]
#[path = "grads_test.rs"]
mod tests;
