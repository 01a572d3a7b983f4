use super::data::DataCursor;
use super::digest::Sha256Digest;

/// A checkpoint written after a committed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    pub step: u64,
    pub path: String,
    pub manifest_sha256: Sha256Digest,
    pub cursor: DataCursor,
}

/// The coordinator asks one member to write a checkpoint after applying `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDirective {
    pub step: u64,
    pub path: String,
}
