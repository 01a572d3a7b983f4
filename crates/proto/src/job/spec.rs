//! The job spec's fields and their defaults. Rules live in `validate.rs`.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// A training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Shown in status and logs; a DNS label so it can name Kubernetes objects.
    #[serde(default = "default_name")]
    pub name: String,
    /// Seeds parameter initialisation, the sampler's permutation and masking.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub model: ModelSpec,
    pub data: DataSpec,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub batch: BatchSpec,
    #[serde(default)]
    pub fault_tolerance: FaultToleranceSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// Left out of the canonical text when unset, so jobs written before it existed keep
    /// their fingerprints.
    #[serde(default, skip_serializing_if = "ComputeSpec::is_unset")]
    pub compute: ComputeSpec,
    /// Bit-exact training; left out of the canonical text when off, as `compute` is.
    #[serde(default, skip_serializing_if = "DeterminismSpec::is_unset")]
    pub determinism: DeterminismSpec,
}

fn default_name() -> String {
    "albatross".to_owned()
}

fn default_seed() -> u64 {
    42
}

/// ALBERT sizes from the paper (embedding size 128 except `tiny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelPreset {
    /// V 1000, E 32, H 64, L 2, 2 heads, FF 128: for tests and the local demo.
    Tiny,
    Base,
    Large,
    Xlarge,
    Xxlarge,
}

/// Activation of the feed-forward block and the MLM head (Hugging Face `hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    GeluNew,
    Gelu,
    Relu,
}

/// The model: a preset plus optional overrides of its Hugging Face config fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub preset: ModelPreset,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_hidden_layers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_attention_heads: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<Activation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_dropout_prob: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_probs_dropout_prob: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<u32>,
}

/// Where the prepared (tokenised, sharded) data lives and how it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Directory of prepared shards (the output of `albatross prepare-data`).
    pub dir: PathBuf,
    /// Tokens per example, `[CLS] A [SEP] B [SEP]` included.
    #[serde(default = "default_max_seq_length")]
    pub max_seq_length: u32,
}

fn default_max_seq_length() -> u32 {
    512
}

/// LAMB with linear warm-up then linear decay to zero at `total_steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSpec {
    pub learning_rate: f64,
    pub warmup_steps: u64,
    /// Training ends after this many committed steps.
    pub total_steps: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Clip the global gradient norm to this value.
    pub clip_norm: f64,
}

impl Default for OptimizerSpec {
    /// The ALBERT paper's recipe (batch 4096, 125k steps).
    fn default() -> Self {
        Self {
            learning_rate: 0.00176,
            warmup_steps: 3125,
            total_steps: 125_000,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            clip_norm: 1.0,
        }
    }
}

/// Batch geometry. The global batch is split across the ranks of each step's quorum; each rank
/// accumulates gradients over micro-batches so memory stays bounded when its slice grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSpec {
    pub global_batch_size: u32,
    pub micro_batch_size: u32,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self { global_batch_size: 4096, micro_batch_size: 32 }
    }
}

/// Membership, failure detection and deadlines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultToleranceSpec {
    /// No step runs with fewer live workers.
    pub min_workers: u32,
    /// Workers beyond this wait as spares.
    pub max_workers: u32,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A worker silent for this long is declared dead.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// A step not committed within this time is aborted.
    #[serde(with = "humantime_serde")]
    pub step_deadline: Duration,
    /// How long a quorum waits for stragglers once `min_workers` are ready.
    #[serde(with = "humantime_serde")]
    pub join_grace: Duration,
}

impl Default for FaultToleranceSpec {
    fn default() -> Self {
        Self {
            min_workers: 1,
            max_workers: 64,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(5),
            step_deadline: Duration::from_secs(300),
            join_grace: Duration::from_secs(2),
        }
    }
}

/// Where the model runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeSpec {
    /// The device kind every worker must use; a worker started with a `--device` of another
    /// kind is refused. Unset: each worker runs on its own `--device` (the CPU by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<ComputeDevice>,
}

impl ComputeSpec {
    fn is_unset(&self) -> bool {
        self == &Self::default()
    }
}

/// Bit-exact training: the parameters and optimizer state after every step are the same bits
/// whatever the number of workers, whichever worker computes which samples, and whatever fails.
///
/// The global batch is cut into fixed micro-batches (`batch.micro_batch_size` samples each, in
/// the step's sample order); each micro-batch's gradient is computed on its own, turned into
/// fixed-point integers with [`Self::fraction_bits`] bits after the binary point, and summed
/// with integer (associative) addition, within a rank and across ranks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeterminismSpec {
    /// Exact mode on (off by default: normal mode sums in f32, in whatever order the ring has).
    pub exact: bool,
    /// In exact mode, every element of a micro-batch's summed gradient must lie below
    /// `2^range_bits` in magnitude; a step where one does not is skipped on every worker, as a
    /// step with a non-finite gradient is. The rest of the 63 bits (less the bits the
    /// micro-batch count needs) resolve the fraction.
    pub range_bits: u32,
    /// The kernel set every worker must run (e.g. `cpu/flex/x86-64-v4`); unset, the first
    /// worker to join fixes it for the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_set: Option<String>,
}

impl Default for DeterminismSpec {
    fn default() -> Self {
        Self { exact: false, range_bits: 20, kernel_set: None }
    }
}

impl DeterminismSpec {
    fn is_unset(&self) -> bool {
        self == &Self::default()
    }
}

/// Bits of an i64 a fixed-point sum may use: one is the sign, one is kept free so that the
/// conversion back can tell an in-range sum from an overflow.
const EXACT_VALUE_BITS: u32 = 62;

impl JobSpec {
    /// Micro-batches in one step's global batch (the last may be short).
    pub fn micro_batches_per_step(&self) -> u64 {
        let micro = u64::from(self.batch.micro_batch_size.max(1));
        u64::from(self.batch.global_batch_size).div_ceil(micro)
    }

    /// In exact mode, the bits after the binary point of the fixed-point gradient: what is
    /// left of [`EXACT_VALUE_BITS`] after the range and the headroom for summing every
    /// micro-batch of a step (so the step's sum cannot overflow when each term is in range).
    /// Negative when the range and micro-batch count leave no room (validation refuses that).
    pub fn fraction_bits(&self) -> i64 {
        let headroom = self.micro_batches_per_step().next_power_of_two().trailing_zeros();
        i64::from(EXACT_VALUE_BITS) - i64::from(headroom) - i64::from(self.determinism.range_bits)
    }
}

/// A backend family (the worker's `--device` picks the device within it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDevice {
    /// burn's CPU backend.
    Cpu,
    /// burn-wgpu: Vulkan, Metal or DX12.
    Wgpu,
    /// burn-cuda: NVIDIA GPUs.
    Cuda,
}

/// Periodic checkpoints, written by one member after a committed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSpec {
    /// Root directory of checkpoints (a shared volume when workers run on several machines).
    pub dir: PathBuf,
    pub every_steps: u64,
    /// How many of the newest checkpoints to keep.
    pub keep: u32,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self { dir: PathBuf::from("checkpoints"), every_steps: 1000, keep: 3 }
    }
}
