//! A prepared dataset opened for training: the manifest, every shard verified against it, and
//! samples by global id, masked on read.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::example::Example;
use crate::manifest::Manifest;
use crate::masking::{MaskedExample, MaskingConfig, MaskingVocab, mask_example};
use crate::shard::Shard;
use crate::tokenizer::AlbertTokenizer;

/// A verified dataset in memory.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<Shard>,
    /// First sample id of each shard, then the total.
    starts: Vec<u64>,
}

impl Dataset {
    /// Opens `dir`: reads the manifest and every shard, checking each file's SHA-256, size and
    /// counts against the manifest. Any mismatch is an error naming the file.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = vec![0u64];
        for info in &manifest.shards {
            let path = dir.join(&info.file);
            let shard = Shard::open(&path, Some(&info.sha256))?;
            if shard.len() as u64 != info.examples {
                return Err(DataError::Malformed {
                    path,
                    format: "shard",
                    location: "header".to_owned(),
                    reason: format!(
                        "{} examples, the manifest says {}",
                        shard.len(),
                        info.examples
                    ),
                });
            }
            let last = starts.last().copied().unwrap_or(0);
            starts.push(last + info.examples);
            shards.push(shard);
        }
        let samples = starts.last().copied().unwrap_or(0);
        tracing::info!(dir = %dir.display(), shards = shards.len(), samples, "dataset verified");
        Ok(Self { dir: dir.to_path_buf(), manifest, shards, starts })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Whether the dataset has no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the tokenizer copy stored with the dataset, checking its fingerprint.
    pub fn load_tokenizer(&self) -> Result<AlbertTokenizer> {
        let tokenizer = AlbertTokenizer::from_file(&self.dir.join(&self.manifest.tokenizer.file))?;
        self.check_tokenizer(&tokenizer)?;
        Ok(tokenizer)
    }

    /// Fails unless `tokenizer` is the one the shards were made with.
    pub fn check_tokenizer(&self, tokenizer: &AlbertTokenizer) -> Result<()> {
        if tokenizer.fingerprint() == self.manifest.tokenizer.fingerprint {
            return Ok(());
        }
        Err(DataError::InvalidArgument(format!(
            "tokenizer {} differs from the one {} was prepared with ({})",
            tokenizer.fingerprint(),
            self.dir.display(),
            self.manifest.tokenizer.fingerprint
        )))
    }

    /// The unmasked example with global id `id`.
    pub fn example(&self, id: u64) -> Result<Example> {
        let out_of_range = || {
            DataError::InvalidArgument(format!(
                "sample {id} is out of range: {} has {} samples",
                self.dir.display(),
                self.len()
            ))
        };
        if id >= self.len() {
            return Err(out_of_range());
        }
        let shard = self.starts.partition_point(|start| *start <= id) - 1;
        let index = usize::try_from(id - self.starts[shard]).map_err(|_| out_of_range())?;
        self.shards.get(shard).ok_or_else(out_of_range)?.example(index)?.ok_or_else(out_of_range)
    }

    /// Sample `id` as read in `epoch`: masked, deterministically in (seed, epoch, id).
    pub fn sample(
        &self,
        id: u64,
        epoch: u64,
        masking: &MaskingConfig,
        vocab: &MaskingVocab<'_>,
    ) -> Result<MaskedExample> {
        Ok(mask_example(&self.example(id)?, epoch, id, masking, vocab))
    }
}
