//! The dataset manifest (`manifest.json`): how the shards were made and their checksums.
//! It holds no timestamp, so preparing the same inputs twice gives identical bytes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the tokenizer copy inside a dataset directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Manifest format version written by this crate.
pub const MANIFEST_VERSION: u32 = 1;

/// Everything about a prepared dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`] when written.
    pub format_version: u32,
    /// The tokenizer the shards were made with.
    pub tokenizer: TokenizerInfo,
    /// How examples were built.
    pub examples: ExampleSettings,
    /// The inputs, in the order read.
    pub sources: Vec<SourceInfo>,
    /// The shards, in sample-id order.
    pub shards: Vec<ShardInfo>,
    /// Totals.
    pub stats: Stats,
}

/// The tokenizer's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// The copy of `tokenizer.json` inside the dataset directory.
    pub file: String,
    /// SHA-256 of the `tokenizer.json` bytes.
    pub fingerprint: String,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Bytes per stored token id (2 or 4).
    pub token_width: u8,
}

/// Example-building settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleSettings {
    /// Maximum sequence length.
    pub max_seq_length: u64,
    /// Short-sequence probability.
    pub short_seq_prob: f64,
    /// SOP swap probability.
    pub swap_prob: f64,
    /// Seed of example building.
    pub seed: u64,
}

/// One input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The path as given.
    pub path: String,
    /// The format it was read as.
    pub format: String,
    /// Its size on disk.
    pub bytes: u64,
    /// Documents read from it.
    pub documents: u64,
}

/// One shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the dataset directory.
    pub file: String,
    /// Examples in it.
    pub examples: u64,
    /// Tokens in it.
    pub tokens: u64,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

/// Dataset totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Documents with at least one sentence.
    pub documents: u64,
    /// Sentences.
    pub sentences: u64,
    /// UTF-8 bytes of sentence text.
    pub text_bytes: u64,
    /// Examples (samples).
    pub examples: u64,
    /// Tokens in examples, special tokens included.
    pub tokens: u64,
    /// Examples whose segments were swapped (SOP label 1).
    pub swapped: u64,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let manifest: Self = serde_json::from_str(&text).map_err(|e| DataError::Malformed {
            path: path.clone(),
            format: "manifest",
            location: format!("line {} column {}", e.line(), e.column()),
            reason: e.to_string(),
        })?;
        if manifest.format_version != MANIFEST_VERSION {
            return Err(DataError::Malformed {
                path,
                format: "manifest",
                location: "format_version".to_owned(),
                reason: format!(
                    "version {}, this build reads {MANIFEST_VERSION}",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` (pretty-printed, trailing newline).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| DataError::InvalidArgument(format!("cannot serialise manifest: {e}")))?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))
    }
}
