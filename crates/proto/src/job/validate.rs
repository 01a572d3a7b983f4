//! Every rule a job spec must satisfy. Each broken rule becomes its own [`FieldError`].

use std::{fmt::Display, time::Duration};

use super::{FieldError, JobSpec};
use crate::domain::WorkerId;

/// ALBERT's position-embedding table when the model spec does not override it.
const DEFAULT_MAX_POSITION_EMBEDDINGS: u32 = 512;
/// `<pad>`, `<unk>`, `[CLS]`, `[SEP]`, `[MASK]`.
const SPECIAL_TOKENS: u32 = 5;
/// TOML integers are signed 64-bit: anything larger cannot be written back.
const TOML_INT_MAX: u64 = i64::MAX as u64;

/// Fewest fraction bits exact mode accepts: below this the fixed-point rounding of each
/// micro-batch's gradient would be coarser than the gradients of a small model.
const MIN_FRACTION_BITS: i64 = 16;

/// Collects violations instead of stopping at the first, so a user fixes a file in one pass.
#[derive(Default)]
struct Violations(Vec<FieldError>);

impl Violations {
    fn require(&mut self, ok: bool, field: &str, value: impl Display, allowed: impl Display) {
        if !ok {
            self.0.push(FieldError {
                field: field.to_owned(),
                value: value.to_string(),
                allowed: allowed.to_string(),
            });
        }
    }

    fn int_range(&mut self, field: &str, value: u64, min: u64, max: u64) {
        self.require(
            (min..=max).contains(&value),
            field,
            value,
            format_args!("between {min} and {max}"),
        );
    }

    fn optional_int_range(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) {
        if let Some(value) = value {
            self.int_range(field, value.into(), min.into(), max.into());
        }
    }

    fn probability(&mut self, field: &str, value: Option<f64>) {
        if let Some(p) = value {
            self.require((0.0..1.0).contains(&p), field, p, "at least 0 and below 1");
        }
    }

    /// `min` and `max` may derive from other fields; `bounds` then says which.
    fn duration(
        &mut self,
        field: &str,
        value: Duration,
        (min, max): (Duration, Duration),
        bounds: &str,
    ) {
        self.require(
            (min..=max).contains(&value),
            field,
            format_args!("{:?}", humantime(value)),
            format_args!("between {} and {}{bounds}", humantime(min), humantime(max)),
        );
    }
}

fn humantime(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

impl JobSpec {
    /// Check every field.
    ///
    /// # Errors
    /// Every violated rule, one [`FieldError`] each.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut v = Violations::default();
        if let Err(err) = WorkerId::new(self.name.as_str()) {
            v.require(false, "name", format_args!("{:?}", self.name), err.reason);
        }
        v.int_range("seed", self.seed, 0, TOML_INT_MAX);
        self.validate_model(&mut v);
        self.validate_optimizer(&mut v);
        self.validate_batch(&mut v);
        self.validate_fault_tolerance(&mut v);
        self.validate_checkpoint(&mut v);
        self.validate_determinism(&mut v);
        if v.0.is_empty() { Ok(()) } else { Err(v.0) }
    }

    fn validate_model(&self, v: &mut Violations) {
        let m = &self.model;
        v.optional_int_range("model.vocab_size", m.vocab_size, SPECIAL_TOKENS, 1_000_000);
        v.optional_int_range("model.embedding_size", m.embedding_size, 1, 4096);
        v.optional_int_range("model.hidden_size", m.hidden_size, 1, 16_384);
        v.optional_int_range("model.num_hidden_layers", m.num_hidden_layers, 1, 256);
        v.optional_int_range("model.num_attention_heads", m.num_attention_heads, 1, 256);
        v.optional_int_range("model.intermediate_size", m.intermediate_size, 1, 65_536);
        v.optional_int_range("model.max_position_embeddings", m.max_position_embeddings, 16, 8192);
        v.probability("model.hidden_dropout_prob", m.hidden_dropout_prob);
        v.probability("model.attention_probs_dropout_prob", m.attention_probs_dropout_prob);
        if let (Some(hidden), Some(heads)) = (m.hidden_size, m.num_attention_heads)
            && heads > 0
        {
            v.require(
                hidden % heads == 0,
                "model.hidden_size",
                hidden,
                format_args!("a multiple of model.num_attention_heads ({heads})"),
            );
        }

        let positions = m.max_position_embeddings.unwrap_or(DEFAULT_MAX_POSITION_EMBEDDINGS);
        v.int_range("data.max_seq_length", self.data.max_seq_length.into(), 16, positions.into());
        v.require(
            !self.data.dir.as_os_str().is_empty(),
            "data.dir",
            "\"\"",
            "a directory of prepared shards",
        );
    }

    fn validate_optimizer(&self, v: &mut Violations) {
        let o = &self.optimizer;
        v.require(
            o.learning_rate > 0.0 && o.learning_rate <= 1.0,
            "optimizer.learning_rate",
            o.learning_rate,
            "greater than 0 and at most 1",
        );
        v.int_range("optimizer.total_steps", o.total_steps, 1, 1_000_000_000);
        v.int_range("optimizer.warmup_steps", o.warmup_steps, 0, o.total_steps);
        v.require(
            (0.0..1.0).contains(&o.weight_decay),
            "optimizer.weight_decay",
            o.weight_decay,
            "at least 0 and below 1",
        );
        for (field, beta) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            v.require((0.0..1.0).contains(&beta), field, beta, "at least 0 and below 1");
        }
        v.require(
            o.epsilon > 0.0 && o.epsilon <= 0.01,
            "optimizer.epsilon",
            o.epsilon,
            "greater than 0 and at most 0.01",
        );
        v.require(
            o.clip_norm > 0.0 && o.clip_norm.is_finite(),
            "optimizer.clip_norm",
            o.clip_norm,
            "a finite number greater than 0",
        );
    }

    fn validate_batch(&self, v: &mut Violations) {
        let b = &self.batch;
        let max_workers = self.fault_tolerance.max_workers;
        v.require(
            (u64::from(max_workers.max(1))..=1 << 20).contains(&u64::from(b.global_batch_size)),
            "batch.global_batch_size",
            b.global_batch_size,
            format_args!(
                "between fault_tolerance.max_workers ({max_workers}) and 1048576, \
                 so every rank gets at least one sample"
            ),
        );
        v.int_range(
            "batch.micro_batch_size",
            b.micro_batch_size.into(),
            1,
            b.global_batch_size.max(1).into(),
        );
    }

    fn validate_determinism(&self, v: &mut Violations) {
        let d = &self.determinism;
        v.int_range("determinism.range_bits", d.range_bits.into(), 1, 40);
        if let Some(set) = &d.kernel_set {
            v.require(
                !set.trim().is_empty(),
                "determinism.kernel_set",
                "\"\"",
                "a kernel set name",
            );
        }
        if !d.exact {
            return;
        }
        v.require(
            self.fraction_bits() >= MIN_FRACTION_BITS,
            "determinism.range_bits",
            d.range_bits,
            format_args!(
                "small enough to leave {MIN_FRACTION_BITS} fraction bits: 62 bits less the range \
                 less {} bits for summing {} micro-batches leaves {}",
                self.micro_batches_per_step().next_power_of_two().trailing_zeros(),
                self.micro_batches_per_step(),
                self.fraction_bits()
            ),
        );
        // Dropout draws from a per-process generator: steps could not repeat bit for bit.
        for (field, p) in [
            ("model.hidden_dropout_prob", self.model.hidden_dropout_prob),
            ("model.attention_probs_dropout_prob", self.model.attention_probs_dropout_prob),
        ] {
            if let Some(p) = p {
                v.require(p == 0.0, field, p, "0 when determinism.exact is on (dropout is random)");
            }
        }
    }

    fn validate_fault_tolerance(&self, v: &mut Violations) {
        let f = &self.fault_tolerance;
        v.int_range("fault_tolerance.max_workers", f.max_workers.into(), 1, 1024);
        // An invalid max_workers is reported on its own; do not also blame min_workers for it.
        v.int_range(
            "fault_tolerance.min_workers",
            f.min_workers.into(),
            1,
            f.max_workers.max(1).into(),
        );
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        v.duration("fault_tolerance.heartbeat_interval", f.heartbeat_interval, (ms(10), s(60)), "");
        v.duration(
            "fault_tolerance.heartbeat_timeout",
            f.heartbeat_timeout,
            (f.heartbeat_interval * 2, s(600)),
            " (at least twice fault_tolerance.heartbeat_interval)",
        );
        v.duration("fault_tolerance.step_deadline", f.step_deadline, (s(1), s(24 * 3600)), "");
        v.duration(
            "fault_tolerance.join_grace",
            f.join_grace,
            (ms(0), f.step_deadline),
            " (at most fault_tolerance.step_deadline)",
        );
    }

    fn validate_checkpoint(&self, v: &mut Violations) {
        let c = &self.checkpoint;
        v.require(
            !c.dir.as_os_str().is_empty(),
            "checkpoint.dir",
            "\"\"",
            "a directory for checkpoints",
        );
        v.int_range("checkpoint.every_steps", c.every_steps, 1, TOML_INT_MAX);
        v.int_range("checkpoint.keep", c.keep.into(), 1, 1000);
    }
}
