//! The training-step engine a worker drives once per step: `compute` this rank's gradient sum,
//! (the loop all-reduces it), then `apply` on commit or `discard` on abort. No networking here.
//!
//! # Normalisation: per-sample losses, summed, divided by the global sample count
//!
//! The objective of a step over a global batch `G` is the mean over samples of a per-sample
//! loss:
//!
//! `L(G) = (1/|G|) Σ_{b ∈ G} ℓ_b`, `ℓ_b = (1/m_b) Σ_{t masked in b} CE_t + CE_sop_b`
//!
//! where `m_b` is the number of masked tokens of sample `b` (every sample has at least one; a
//! sample without any contributes only its SOP term). Each rank computes, over micro-batches,
//! `Σ_{b ∈ its slice} ∇ℓ_b` and adds the micro-batch gradients into one flat f32 buffer; the
//! all-reduce sums the buffers; `apply` divides by `|G|`. Every term depends on its own sample
//! only, so the result is `∇L(G)` whatever the number of ranks and micro-batches — exact up to
//! f32 summation order, with no count to agree on before the backward pass.
//!
//! This differs slightly from transformers' MLM loss, a mean over all masked tokens of the
//! batch, which weights samples by their masked-token count; that scheme would need the global
//! masked-token count all-reduced before any backward pass. The stats carry both sums
//! ([`ComputeStats::mlm_loss_sum`], [`ComputeStats::mlm_token_loss_sum`]) for reporting.
//!
//! # Determinism
//! The model is built from the job seed with path-derived parameter ids (same parameter hash in
//! every process); sample ids and masks are pure functions of (seed, epoch, position). Dropout
//! would make steps random: the SOP head's `classifier_dropout_prob` (a fine-tuning setting in
//! Hugging Face's config) is set to 0 for training, as in the original ALBERT pretraining;
//! hidden and attention dropout stay as the job says (0 by default) and are warned about.
//!
//! Exact mode (`[determinism] exact`) makes the step itself a pure function of (state, seed,
//! step): the coordinator gives each rank whole micro-batches, each micro-batch's gradient is
//! computed alone and added as fixed-point integers (see `albatross_model::fixed_point`), and its
//! loss sums are rounded to a grid on which f64 sums are exact, so neither the split into ranks
//! nor the order of additions changes a bit. Dropout is refused by the job's validation.

use std::sync::Arc;

use albatross_data::Dataset;
use std::collections::HashMap;

use albatross_model::TrainingBackend;
use albatross_model::cancel::{self, CancelFlag, Cancelled, run_cancellable};
use albatross_model::flat::{add_assign, divide_and_sum_squares};
use albatross_model::{
    AlbertConfig, AlbertForPreTraining, FixedPoint, FlatState, FlatStateMut, GradLayout, Lamb,
    LambConfig, LrSchedule, ModelError, OutOfRange, clip_to_norm, parameter_hash,
};
use albatross_proto::domain::{SampleRange, StateHash};
use albatross_proto::job::JobSpec;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;

use crate::batches::{SampleReader, micro_batch};
use crate::error::{Result, WorkerError};
use crate::gradients::{ComputeStats, GradientSum, StepGradients, non_finite};
use crate::model_config::albert_config;
use crate::objective::micro_loss;
use crate::state::TrainerState;

type Model<B> = AlbertForPreTraining<B>;

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApplyReport {
    /// Global L2 norm of the mean gradient before clipping.
    pub grad_norm: f32,
    /// Whether clipping scaled the gradient down.
    pub clipped: bool,
    /// The learning rate used.
    pub learning_rate: f64,
}

/// The computed-but-not-yet-applied step.
#[derive(Debug, Clone, Copy)]
struct Pending {
    samples: u64,
}

/// One replica's model, optimizer and input pipeline.
///
/// The flat [`TrainerState`] (parameters and LAMB moments) is the replica's state of record:
/// LAMB updates it on the host and the new parameters are written back into the model's
/// tensors, so the state that votes hash, peers fetch and checkpoints store is shared, never
/// exported. Each step writes a fresh state and keeps the previous one readable (it may be
/// published to peers); its buffers are reused two steps later when nobody holds them any more.
pub struct Trainer<B: AutodiffBackend> {
    config: AlbertConfig,
    /// `None` only if an update failed half-way (see [`WorkerError::Poisoned`]).
    model: Option<Model<B>>,
    /// Parameters (equal to the model's) and moments, in layout order.
    state: Arc<TrainerState>,
    /// The state before the last update, kept so its buffers can be reused.
    retired: Option<Arc<TrainerState>>,
    lamb: Lamb,
    layout: GradLayout,
    schedule: LrSchedule,
    clip_norm: f32,
    micro_batch_size: usize,
    /// Exact mode's fixed-point format (`None`: normal mode, f32 sums).
    exact: Option<FixedPoint>,
    /// The job's seed: the initial parameters are a pure function of it.
    seed: u64,
    reader: SampleReader,
    device: B::Device,
    /// Reused per micro-batch after the first, so accumulation allocates once.
    scratch: Vec<f32>,
    pending: Option<Pending>,
    applied_steps: u64,
    inject_non_finite: bool,
    /// Test hook: extra time each `compute` takes, as a larger model would (cancellable).
    compute_delay: std::time::Duration,
}

impl<B: AutodiffBackend> std::fmt::Debug for Trainer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("parameters", &self.layout.len())
            .field("micro_batch_size", &self.micro_batch_size)
            .field("schedule", &self.schedule)
            .field("clip_norm", &self.clip_norm)
            .field("pending", &self.pending)
            .field("applied_steps", &self.applied_steps)
            .finish_non_exhaustive()
    }
}

impl<B: TrainingBackend> Trainer<B> {
    /// Builds the model from the job's model spec and seed, LAMB from its optimizer settings,
    /// and the input pipeline over `dataset` (whose tokenizer must fit the model's vocabulary).
    pub fn new(job: &JobSpec, dataset: Arc<Dataset>, device: B::Device) -> Result<Self> {
        let mut config = albert_config(&job.model)?;
        config.classifier_dropout_prob = 0.0;
        if config.hidden_dropout_prob > 0.0 || config.attention_probs_dropout_prob > 0.0 {
            tracing::warn!(
                hidden = config.hidden_dropout_prob,
                attention = config.attention_probs_dropout_prob,
                "dropout is on: steps are not reproducible and splits only agree in expectation"
            );
        }
        let vocab = dataset.manifest().tokenizer.vocab_size;
        if (config.vocab_size as u64) < vocab {
            return Err(WorkerError::Incompatible {
                field: "model.vocab_size",
                value: config.vocab_size.to_string(),
                reason: format!("the dataset's tokenizer has {vocab} ids"),
            });
        }
        let max_seq_length = job.data.max_seq_length as usize;
        if max_seq_length > config.max_position_embeddings {
            return Err(WorkerError::Incompatible {
                field: "data.max_seq_length",
                value: max_seq_length.to_string(),
                reason: format!(
                    "the model has {} position embeddings",
                    config.max_position_embeddings
                ),
            });
        }
        let reader = SampleReader::new(dataset, job.seed, max_seq_length)?;
        let model = Model::<B>::init(&config, job.seed, &device)?;
        let layout = GradLayout::from_module(&model)?;
        let o = &job.optimizer;
        let lamb = LambConfig {
            beta_1: o.beta1,
            beta_2: o.beta2,
            epsilon: o.epsilon,
            weight_decay_rate: o.weight_decay,
        };
        let schedule = LrSchedule {
            peak_lr: o.learning_rate,
            warmup_steps: o.warmup_steps,
            total_steps: o.total_steps,
            power: 1.0,
        };
        let state = TrainerState { parameters: layout.read_params(&model)?, optimizer: Vec::new() };
        let trainer = Self {
            state: Arc::new(state),
            retired: None,
            lamb: Lamb::new(lamb),
            model: Some(model),
            scratch: vec![0.0; layout.len()],
            layout,
            schedule,
            clip_norm: o.clip_norm as f32,
            micro_batch_size: job.batch.micro_batch_size.max(1) as usize,
            exact: exact_format(job)?,
            seed: job.seed,
            reader,
            device,
            config,
            pending: None,
            applied_steps: 0,
            inject_non_finite: false,
            compute_delay: std::time::Duration::ZERO,
        };
        tracing::info!(
            parameters = trainer.layout.len(),
            layout = %trainer.layout.fingerprint_hex(),
            seed = job.seed,
            "trainer ready"
        );
        Ok(trainer)
    }

    fn model_ref(&self) -> Result<&Model<B>> {
        self.model.as_ref().ok_or(WorkerError::Poisoned)
    }

    /// The model (for hashing, export and checkpoints).
    pub fn model(&self) -> Result<&Model<B>> {
        self.model_ref()
    }

    /// The model configuration trained (the job's, with the SOP head's dropout off).
    pub fn config(&self) -> &AlbertConfig {
        &self.config
    }

    /// The flat buffer's layout; peers compare its fingerprint before exchanging bytes.
    pub fn layout(&self) -> &GradLayout {
        &self.layout
    }

    /// The learning rate `apply` uses for global step `step`.
    pub fn learning_rate(&self, step: u64) -> f64 {
        self.schedule.lr_at(step)
    }

    /// Optimizer steps applied since construction.
    pub fn applied_steps(&self) -> u64 {
        self.applied_steps
    }

    /// Test hook for fault tests: the next `compute` writes a NaN into its buffer, as a
    /// diverging model would, so the cluster-wide skip can be exercised.
    pub fn inject_non_finite_once(&mut self) {
        self.inject_non_finite = true;
    }

    /// Test hook for fault tests at real step lengths: every `compute` takes `delay` longer,
    /// spent between micro-batches in short slices that each check for cancellation, as the
    /// layers of a larger model would.
    pub fn slow_down_compute(&mut self, delay: std::time::Duration) {
        self.compute_delay = delay;
    }

    /// [`Self::compute`] that gives up soon after `flag` is set: the model's fused operations
    /// then skip their arithmetic, so the pass under way runs out at once (see
    /// [`albatross_model::cancel`]), and no further micro-batch starts.
    ///
    /// # Errors
    /// [`WorkerError::Cancelled`] when stopped (partial gradients are dropped and nothing in
    /// the trainer changed), or what `compute` returns.
    pub fn compute_cancellable(
        &mut self,
        ranges: &[SampleRange],
        flag: &CancelFlag,
    ) -> Result<StepGradients> {
        match run_cancellable(flag, || self.compute(ranges)) {
            Ok(result) => result,
            Err(Cancelled) => {
                self.pending = None;
                tracing::debug!("computation cancelled");
                Err(WorkerError::Cancelled)
            }
        }
    }

    /// Reads this rank's samples for `ranges` (positions in each range's epoch order) and
    /// returns the sum over them of per-sample loss gradients (see the module doc), computed
    /// in micro-batches of `batch.micro_batch_size` so memory does not grow with the slice.
    /// An empty slice gives a zero buffer: the rank still joins the all-reduce.
    pub fn compute(&mut self, ranges: &[SampleRange]) -> Result<StepGradients> {
        let samples = self.reader.read(ranges)?;
        let mut sum = Accumulator::new(self.exact, self.layout.len());
        let mut stats = ComputeStats::default();
        let pad = self.reader.pad_id();
        let model = self.model.as_ref().ok_or(WorkerError::Poisoned)?;
        let micro_batches = samples.len().div_ceil(self.micro_batch_size).max(1);
        let delay_each = self.compute_delay / u32::try_from(micro_batches).unwrap_or(u32::MAX);
        for (index, chunk) in samples.chunks(self.micro_batch_size).enumerate() {
            delay_cancellably(delay_each);
            if cancel::requested() {
                // Cancelled (see `compute_cancellable`): no new pass starts.
                break;
            }
            let mb = micro_batch(chunk, pad)?;
            let out = micro_loss(model, &self.config, &mb, &self.device)?;
            let mut grads = GradientsParams::from_grads(out.loss.backward(), model);
            match &mut sum {
                Accumulator::Fixed { sums, format, out_of_range } => {
                    // Each micro-batch on its own, read to the host and added as integers: the
                    // same bits whichever rank computes it, beside whichever others.
                    self.layout.flatten_into::<B::InnerBackend>(&mut grads, &mut self.scratch)?;
                    if out_of_range.is_none()
                        && let Err(e) = format.accumulate(sums, &self.scratch)
                    {
                        *out_of_range = Some(e);
                    }
                    stats.merge(&out.stats.on_grid());
                    continue;
                }
                Accumulator::Float { on_device, .. } if B::DEVICE_MEMORY => {
                    // Summed on the device and read once after the last micro-batch: one
                    // transfer per step, whatever the number of micro-batches.
                    if let Some(flat) = self.layout.gather::<B::InnerBackend>(&mut grads)? {
                        *on_device = Some(match on_device.take() {
                            Some(sum) => sum.add(flat),
                            None => flat,
                        });
                    }
                }
                Accumulator::Float { buffer, .. } if index == 0 => {
                    // The first micro-batch lands directly in the buffer, so a slice that fits
                    // one micro-batch gives exactly the unaccumulated gradient.
                    self.layout.flatten_into::<B::InnerBackend>(&mut grads, buffer)?;
                }
                Accumulator::Float { buffer, .. } => {
                    self.layout.flatten_into::<B::InnerBackend>(&mut grads, &mut self.scratch)?;
                    add_assign(buffer, &self.scratch);
                }
            }
            stats.merge(&out.stats);
        }
        let inject = std::mem::take(&mut self.inject_non_finite);
        if inject {
            tracing::warn!("test hook: injecting a NaN into the gradient buffer");
        }
        let (sum, bad) = sum.finish(&self.layout, inject)?;
        let losses = [stats.mlm_loss_sum, stats.mlm_token_loss_sum, stats.sop_loss_sum];
        let non_finite = bad.is_some() || losses.iter().any(|l| !l.is_finite());
        if non_finite {
            tracing::warn!(problem = ?bad, loss = ?stats.mean_loss(), "gradient or loss not usable: the step will be skipped");
        }
        tracing::debug!(
            samples = stats.samples,
            micro_batches = samples.len().div_ceil(self.micro_batch_size),
            loss = ?stats.mean_loss(),
            "gradients computed"
        );
        self.pending = Some(Pending { samples: stats.samples });
        Ok(StepGradients { sum, stats, non_finite })
    }

    /// After a commit: divides the all-reduced sum `reduced` by `global_samples`, clips it by
    /// global norm, and takes a LAMB step with the learning rate of global step `step`.
    /// `reduced` holds the clipped mean gradient afterwards. A non-finite buffer is refused
    /// (and the step stays pending, to be discarded): it must never reach the parameters.
    pub fn apply(
        &mut self,
        reduced: &mut [f32],
        global_samples: u64,
        step: u64,
    ) -> Result<ApplyReport> {
        let Some(pending) = self.pending else {
            return Err(WorkerError::InvalidStep(format!(
                "apply of step {step} without a computed step"
            )));
        };
        if global_samples == 0 || global_samples < pending.samples {
            return Err(WorkerError::InvalidStep(format!(
                "global sample count {global_samples} is below this rank's {}",
                pending.samples
            )));
        }
        if reduced.len() != self.layout.len() {
            return Err(ModelError::WrongSize {
                what: "reduced gradient buffer".to_owned(),
                expected: format!("{} f32 elements", self.layout.len()),
                actual: format!("{} elements", reduced.len()),
            }
            .into());
        }
        // Division (not multiplication by a rounded reciprocal) keeps the mean as exact as f32
        // allows; every rank does the same operations on the same bytes, so results agree. The
        // same pass sums the squares for the norm, which is finite exactly when every value is.
        let squares = divide_and_sum_squares(reduced, global_samples as f32);
        if !squares.is_finite() {
            // Dividing by a count ≥ 1 keeps finite values finite and the others not.
            let (count, first) = non_finite(reduced).unwrap_or((0, 0));
            return Err(WorkerError::NonFinite { count, first });
        }
        let grad_norm = squares.sqrt() as f32;
        clip_to_norm(reduced, grad_norm, self.clip_norm);
        let learning_rate = self.schedule.lr_at(step);
        let mut next = self.spare_state();
        let old = FlatState { parameters: &self.state.parameters, moments: &self.state.optimizer };
        let new = FlatStateMut { parameters: &mut next.parameters, moments: &mut next.optimizer };
        self.lamb.step(learning_rate, &self.layout, reduced, old, new)?;
        // Without a model the trainer is poisoned until a state is loaded: a failed write-back
        // leaves tensors that match neither the old state nor the new one.
        let model = self.model.take().ok_or(WorkerError::Poisoned)?;
        self.model = Some(self.layout.write_params(model, &next.parameters, &self.device)?);
        self.retired = Some(std::mem::replace(&mut self.state, Arc::new(next)));
        self.pending = None;
        self.applied_steps += 1;
        let clipped = grad_norm > self.clip_norm;
        tracing::debug!(step, global_samples, grad_norm, clipped, learning_rate, "step applied");
        Ok(ApplyReport { grad_norm, clipped, learning_rate })
    }

    /// Buffers for the next state: the retired state's when no one holds it any more (its
    /// pages are already mapped), otherwise new ones.
    fn spare_state(&mut self) -> TrainerState {
        let n = self.layout.len();
        let mut spare = self
            .retired
            .take()
            .and_then(|retired| Arc::try_unwrap(retired).ok())
            .unwrap_or(TrainerState { parameters: Vec::new(), optimizer: Vec::new() });
        spare.parameters.resize(n, 0.0);
        spare.optimizer.resize(2 * n, 0.0);
        spare
    }

    /// After an abort: forgets the computed step; parameters and optimizer state are untouched.
    pub fn discard(&mut self) {
        if self.pending.take().is_some() {
            tracing::debug!("computed step discarded");
        }
    }

    /// SHA-256 of the parameters (the model crate's `parameter_hash`), hex.
    pub fn parameter_hash(&self) -> Result<String> {
        Ok(parameter_hash(self.model_ref()?)?)
    }

    /// The hash of [`Self::export_state`] (see [`TrainerState::hash`]): what replicas compare
    /// in votes (equal parameters but different moments would diverge later).
    pub fn state_hash(&self) -> StateHash {
        self.state.hash(&self.layout.fingerprint())
    }

    /// Parameters and LAMB moments as flat f32 sections in layout order, shared (no copy).
    pub fn export_state(&self) -> Arc<TrainerState> {
        Arc::clone(&self.state)
    }

    /// Goes back to the initial parameters of the job's seed, with no optimizer state: the
    /// state of step 0 on every history. A worker whose state was undone by a rollback takes
    /// it when no checkpoint of the resumed history is at hand. A computed-but-unapplied step
    /// is dropped.
    pub fn reset_to_initial(&mut self) -> Result<()> {
        let model = Model::<B>::init(&self.config, self.seed, &self.device)?;
        let state =
            TrainerState { parameters: self.layout.read_params(&model)?, optimizer: Vec::new() };
        self.model = Some(model);
        self.state = Arc::new(state);
        self.retired = None;
        self.pending = None;
        Ok(())
    }

    /// Replaces parameters and optimizer state with `state` (from a peer or a checkpoint).
    /// A computed-but-unapplied step is dropped. A state of the wrong size is refused and the
    /// trainer is unchanged.
    pub fn load_state(&mut self, state: TrainerState) -> Result<()> {
        state.check_sizes(self.layout.len())?;
        // The parameters are written into the model in place, in layout order, as `apply`
        // does: no model is built (a heal is on the recovery path).
        // A poisoned trainer (no model) gets a new one; so would a write that failed, which
        // cannot happen with our own layout and checked sizes.
        let written = self.model.take().and_then(|model| {
            self.layout.write_params(model, &state.parameters, &self.device).ok()
        });
        let model = match written {
            Some(model) => model,
            None => self.model_from(&state.parameters)?,
        };
        self.model = Some(model);
        self.state = Arc::new(state);
        self.retired = None;
        self.pending = None;
        Ok(())
    }

    /// A model holding `parameters` (layout order), built from scratch.
    fn model_from(&self, parameters: &[f32]) -> Result<Model<B>> {
        let values: HashMap<String, Vec<f32>> = self
            .layout
            .entries()
            .iter()
            .map(|e| (e.name.clone(), parameters[e.offset..e.offset + e.numel].to_vec()))
            .collect();
        let model = Model::<B>::from_values(&self.config, &values, &self.device)?;
        // Ids derive from names, so the built model must have exactly our layout.
        let layout = GradLayout::from_module(&model)?;
        self.layout.check_peer(&layout.fingerprint())?;
        Ok(model)
    }
}

/// Exact mode's fixed-point format for `job`, or `None` in normal mode.
fn exact_format(job: &JobSpec) -> Result<Option<FixedPoint>> {
    if !job.determinism.exact {
        return Ok(None);
    }
    let range = job.determinism.range_bits;
    match u32::try_from(job.fraction_bits()) {
        Ok(fraction) if fraction + range <= 62 => Ok(Some(FixedPoint::new(fraction, range))),
        _ => Err(WorkerError::Incompatible {
            field: "determinism.range_bits",
            value: range.to_string(),
            reason: format!(
                "it leaves {} fraction bits for {} micro-batches per step",
                job.fraction_bits(),
                job.micro_batches_per_step()
            ),
        }),
    }
}

/// A step's gradient sum while its micro-batches are computed.
enum Accumulator<B: burn::prelude::Backend> {
    Float { buffer: Vec<f32>, on_device: Option<burn::tensor::Tensor<B, 1>> },
    Fixed { sums: Vec<i64>, format: FixedPoint, out_of_range: Option<OutOfRange> },
}

impl<B: burn::prelude::Backend> Accumulator<B> {
    fn new(exact: Option<FixedPoint>, len: usize) -> Self {
        match exact {
            Some(format) => Self::Fixed { sums: vec![0; len], format, out_of_range: None },
            None => Self::Float { buffer: vec![0.0; len], on_device: None },
        }
    }

    /// The sum, and what makes it unusable (non-finite or out of exact mode's range), if
    /// anything. `poison` is the test hook that makes a step non-finite.
    fn finish(self, layout: &GradLayout, poison: bool) -> Result<(GradientSum, Option<String>)> {
        match self {
            Self::Float { mut buffer, on_device } => {
                if let Some(sum) = on_device {
                    layout.read_flat(sum, &mut buffer)?;
                }
                if poison && let Some(first) = buffer.first_mut() {
                    *first = f32::NAN;
                }
                let bad = non_finite(&buffer).map(|(count, first)| {
                    format!("{count} non-finite values, the first at {first}")
                });
                Ok((GradientSum::Float(buffer), bad))
            }
            Self::Fixed { sums, format, out_of_range } => {
                let bad = match out_of_range {
                    Some(e) => Some(e.to_string()),
                    None => poison.then(|| "test hook: a NaN in the gradient".to_owned()),
                };
                Ok((GradientSum::Fixed { sums, format }, bad))
            }
        }
    }
}

/// Sleeps `delay` in slices of at most 10 ms, until cancelled.
fn delay_cancellably(delay: std::time::Duration) {
    let slice = std::time::Duration::from_millis(10);
    let mut left = delay;
    while !left.is_zero() && !cancel::requested() {
        let now = left.min(slice);
        std::thread::sleep(now);
        left -= now;
    }
}

#[cfg(test)]
#[path = "trainer_test.rs"]
mod tests;
