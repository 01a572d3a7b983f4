//! ALBERT in burn: the model, its pretraining losses, deterministic initialisation, the
//! parameter hash and the flat gradient buffer the all-reduce exchanges.
//!
//! Invariants:
//! - initialisation is a pure function of the seed, identical on every backend and process;
//! - parameter ids are derived from Hugging Face parameter names, so every process agrees;
//! - the gradient layout (names, shapes, offsets) has a fingerprint peers compare before
//!   exchanging bytes.
//!
//! Code is generic over the burn backend; [`DefaultBackend`] is the Flex CPU backend.

pub mod albert;
pub mod batch;
pub mod cancel;
pub mod config;
pub mod device;
pub mod embeddings;
pub mod error;
pub mod eval;
pub mod fixed_point;
pub mod flat;
pub mod fused;
pub mod grads;
pub mod hash;
pub mod heads;
pub mod hf;
pub mod info;
pub mod init;
pub mod kernel_set;
pub mod lamb;
pub mod layer;
pub mod loss;
pub mod objective;
pub mod params;
#[cfg(test)]
mod reference_test;

pub use albert::{AlbertForPreTraining, AlbertModel, ModelInput, PretrainingLogits};
pub use batch::{HostBatch, IGNORE_INDEX, MaskedBatch, PretrainingBatch};
pub use cancel::{CancelFlag, Cancelled, run_cancellable};
pub use config::{AlbertConfig, HiddenAct, PRESETS};
pub use device::{Device, DeviceKind, OnDevice, WgpuAdapter, run_on};
pub use error::{ModelError, Result};
pub use eval::{EvalInputs, EvalOutput, eval_hf_dir, evaluate};
pub use fixed_point::{FixedPoint, OutOfRange};
pub use fused::{FusedKernels, FusedOps, TrainingBackend};
pub use grads::{GradLayout, LayoutEntry};
pub use hash::{ParamEntry, collect_params, parameter_hash};
pub use hf::{
    CONFIG_FILE, HfTensor, TensorMap, WEIGHTS_FILE, export_hf, hf_state_dict,
    hf_tensors_from_entries, import_hf, read_hf_values, read_safetensors, write_safetensors,
};
pub use info::{ModelInfo, ModuleSize};
pub use init::{PathIdMapper, with_path_ids};
pub use kernel_set::kernel_set;
pub use lamb::{
    FlatState, FlatStateMut, Lamb, LambConfig, LrSchedule, ParamStep, clip_by_global_norm,
    clip_to_norm, moment_ranges,
};
pub use loss::{LossReport, PretrainingOutput, cross_entropy, row_cross_entropy};
pub use objective::{ObjectiveSums, SummedObjective};
pub use params::{ParamSpec, param_id, param_specs, parameter_breakdown, parameter_count};

/// The default CPU backend (Flex).
pub type DefaultBackend = burn::backend::Flex;
/// The default training backend: Flex with autodiff.
pub type DefaultAutodiffBackend = burn::backend::Autodiff<DefaultBackend>;
