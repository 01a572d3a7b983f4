//! The one error type of `albatross-model`.

use std::path::PathBuf;

/// Everything that can go wrong building, feeding or exchanging an ALBERT model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value the model cannot honour; fix the config, do not retry.
    #[error("unsupported config: {field} = {value}: {reason}")]
    UnsupportedConfig {
        /// The `config.json` key at fault.
        field: &'static str,
        /// The offending value, as text.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A `config.json` that could not be read or parsed.
    #[error("cannot load config {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What failed (I/O or JSON, with line and column).
        reason: String,
    },
    /// A device this binary cannot use: its backend is not built in, or it does not open.
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable {
        /// The device asked for, as it is written (`cuda:1`).
        device: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A preset name that is not one of `tiny`, `base`, `large`, `xlarge`, `xxlarge`.
    #[error("unknown preset {0:?}: expected one of tiny, base, large, xlarge, xxlarge")]
    UnknownPreset(String),
    /// A buffer or tensor whose size does not match what the model expects.
    #[error("wrong size for {what}: expected {expected}, got {actual}")]
    WrongSize {
        /// What was being checked (`input_ids`, `gradient buffer`, …).
        what: String,
        /// The expected element count or shape.
        expected: String,
        /// What was given.
        actual: String,
    },
    /// An input value outside its valid range (a token id ≥ vocab size, a label that is not 0/1).
    #[error("invalid input {what}: {reason}")]
    InvalidInput {
        /// The input at fault.
        what: String,
        /// Why it is invalid, with the offending value.
        reason: String,
    },
    /// Two gradient layouts differ: the peers do not run the same model.
    #[error("gradient layout mismatch: expected fingerprint {expected}, got {actual}")]
    LayoutMismatch {
        /// This side's fingerprint (hex).
        expected: String,
        /// The other side's fingerprint (hex).
        actual: String,
    },
    /// A parameter of the model does not appear in the layout, or has another shape.
    #[error("parameter {name} does not match the layout: {reason}")]
    ParamMismatch {
        /// Canonical (Hugging Face) parameter name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("i/o error on {path}: {reason}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A checkpoint whose content does not fit the model (missing, unexpected or mis-shaped
    /// tensor, unsupported dtype, corrupt file).
    #[error("checkpoint {path} does not fit the model: {reason}")]
    Checkpoint {
        /// The weights file.
        path: PathBuf,
        /// What is wrong, naming the tensor.
        reason: String,
    },
    /// Tensor data could not be read back as f32.
    #[error("tensor {name} is not readable as f32: {reason}")]
    TensorData {
        /// Canonical parameter name.
        name: String,
        /// The conversion error.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
