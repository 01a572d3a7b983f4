//! `--metrics-log FILE`: one JSON object per line for every committed or skipped step, so a
//! training run's curves survive the process and can be read without a metrics server.
//!
//! The file is opened in append mode (a restarted coordinator continues it) and flushed after
//! every line, so a crash loses at most the line being written (see [`JsonLines`]). Writing is
//! best effort: a failure is logged and training goes on, because losing a metrics line must
//! never stop a job.

use std::path::Path;

use albatross_proto::domain::{DataCursor, Decision, StepStats};
use serde::Serialize;
use tracing::warn;

use crate::effect::Durable;
use crate::error::CoordinatorError;
use crate::json_lines::JsonLines;
use crate::step_records::DecisionRecord;

/// The open metrics log.
#[derive(Debug)]
pub(crate) struct MetricsLog {
    out: JsonLines,
}

/// One decided step, as one line of the log. Ratios are `null` when their denominator is 0 or
/// the value is not finite (JSON has no NaN).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StepLine {
    pub step: u64,
    pub generation: u64,
    /// `"commit"` or `"skip"`.
    pub decision: &'static str,
    pub unix_ms: u64,
    /// Mean per-sample loss: (MLM loss sum + SOP loss sum) / samples.
    pub loss: Option<f64>,
    pub mlm_loss: Option<f64>,
    pub sop_loss: Option<f64>,
    pub mlm_accuracy: Option<f64>,
    pub sop_accuracy: Option<f64>,
    pub samples: u64,
    pub tokens: u64,
    pub grad_norm: Option<f64>,
    pub compute_ms: u64,
    /// The slowest member's all-reduce, waiting for stragglers included.
    pub reduce_ms: u64,
    /// The quickest member's all-reduce: the exchange alone.
    pub reduce_fastest_ms: u64,
    /// World size of the quorum that decided the step.
    pub members: usize,
    /// The data cursor after the step.
    pub cursor: CursorLine,
    pub aborted_steps: u64,
    pub skipped_steps: u64,
    pub recoveries: u64,
    /// The replicas' state hash before the step (after the step before; hex): equal lines
    /// of two runs mean equal bits up to there, so a divergence can be found to the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_before: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct CursorLine {
    pub epoch: u64,
    pub next_sample: u64,
}

impl From<DataCursor> for CursorLine {
    fn from(cursor: DataCursor) -> Self {
        Self { epoch: cursor.epoch, next_sample: cursor.next_sample }
    }
}

impl StepLine {
    /// The line for `record`, a committed or skipped step whose cursor afterwards is `cursor`;
    /// the counters are the durable state's after the decision. `None` for an aborted step,
    /// which consumed nothing and is not logged.
    pub fn new(
        record: &DecisionRecord,
        cursor: DataCursor,
        durable: &Durable,
        unix_ms: u64,
    ) -> Option<Self> {
        let decision = match record.decision {
            Decision::Commit => "commit",
            Decision::Skip => "skip",
            Decision::Abort => return None,
        };
        let s: &StepStats = &record.stats;
        Some(Self {
            step: record.tag.step,
            generation: record.tag.generation.0,
            decision,
            unix_ms,
            loss: s.mean_loss(),
            mlm_loss: ratio(s.mlm_loss_sum, s.samples),
            sop_loss: ratio(s.sop_loss_sum, s.samples),
            mlm_accuracy: ratio(s.mlm_correct as f64, s.masked_tokens),
            sop_accuracy: ratio(s.sop_correct as f64, s.samples),
            samples: s.samples,
            tokens: s.tokens,
            grad_norm: s.grad_norm.is_finite().then_some(s.grad_norm),
            compute_ms: s.compute_ms,
            reduce_ms: s.reduce_ms,
            reduce_fastest_ms: record.reduce_fastest_ms,
            members: record.members.len(),
            cursor: cursor.into(),
            aborted_steps: durable.aborted_steps,
            skipped_steps: durable.skipped_steps,
            recoveries: durable.recoveries,
            state_before: record.state_before.map(|h| h.to_hex()),
        })
    }
}

/// `sum / count`, or `None` when `count` is 0 or the quotient is not finite.
fn ratio(sum: f64, count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let value = sum / count as f64;
    value.is_finite().then_some(value)
}

impl MetricsLog {
    /// Open `path` for appending, creating it if missing. Done once at start-up, so a wrong
    /// path is reported before training begins rather than as a warning per step.
    ///
    /// # Errors
    /// [`CoordinatorError::Io`] when the file cannot be opened for appending.
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        JsonLines::open(path).map(|out| Self { out })
    }

    /// Append `line` and flush. A failure is logged as a warning, never returned: metrics are
    /// not worth stopping training for.
    pub fn append(&mut self, line: &StepLine) {
        if let Err(error) = self.out.append(line) {
            let path = self.out.path().display();
            warn!(path = %path, step = line.step, %error, "cannot write the metrics log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_test::w;
    use albatross_proto::domain::{Generation, StepTag};
    use serde_json::{Value, json};

    fn record(decision: Decision, step: u64, stats: StepStats) -> DecisionRecord {
        DecisionRecord {
            tag: StepTag { generation: Generation(4), step },
            decision,
            reason: String::new(),
            divergent: Vec::new(),
            ranks: crate::step_records::RankIndex::new(&[w("a", 1), w("b", 1)]),
            members: vec![w("a", 1), w("b", 1)],
            checkpoint: None,
            stats,
            reduce_fastest_ms: 5,
            state_before: (step == 1).then_some(albatross_proto::domain::StateHash([0xab; 32])),
        }
    }

    use crate::json_lines::read_lines;

    #[test]
    fn lines_are_appended_across_reopens_and_read_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("metrics.jsonl");
        let durable =
            Durable { aborted_steps: 1, skipped_steps: 1, recoveries: 2, ..Durable::default() };
        let stats = StepStats {
            mlm_loss_sum: 30.0,
            sop_loss_sum: 6.0,
            masked_tokens: 40,
            mlm_correct: 10,
            sop_correct: 9,
            samples: 12,
            tokens: 768,
            grad_norm: 1.5,
            compute_ms: 80,
            reduce_ms: 7,
        };
        let cursor = DataCursor { epoch: 0, next_sample: 12 };
        let commit = StepLine::new(&record(Decision::Commit, 1, stats), cursor, &durable, 1000)
            .expect("a commit is logged");
        MetricsLog::open(&path).expect("open").append(&commit);
        // A restarted coordinator opens the same file again and continues it.
        let nan = StepStats { mlm_loss_sum: f64::NAN, grad_norm: f64::INFINITY, ..stats };
        let cursor = DataCursor { epoch: 1, next_sample: 4 };
        let skip = StepLine::new(&record(Decision::Skip, 2, nan), cursor, &durable, 2000)
            .expect("a skip is logged");
        let empty = StepLine::new(
            &record(Decision::Commit, 3, StepStats::default()),
            cursor,
            &durable,
            3000,
        )
        .expect("a commit is logged");
        let mut log = MetricsLog::open(&path).expect("reopen");
        log.append(&skip);
        log.append(&empty);
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            json!({
                "step": 1, "generation": 4, "decision": "commit", "unix_ms": 1000,
                "loss": 3.0, "mlm_loss": 2.5, "sop_loss": 0.5,
                "mlm_accuracy": 0.25, "sop_accuracy": 0.75,
                "samples": 12, "tokens": 768, "grad_norm": 1.5,
                "compute_ms": 80, "reduce_ms": 7, "reduce_fastest_ms": 5, "members": 2,
                "cursor": { "epoch": 0, "next_sample": 12 },
                "aborted_steps": 1, "skipped_steps": 1, "recoveries": 2,
                "state_before": "ab".repeat(32),
            })
        );
        // Non-finite figures and empty steps are null, never NaN (which is not JSON).
        assert_eq!(
            (lines[1]["decision"].as_str(), lines[1]["step"].as_u64()),
            (Some("skip"), Some(2))
        );
        for field in ["loss", "mlm_loss", "grad_norm"] {
            assert_eq!(lines[1][field], Value::Null, "{field}");
        }
        assert_eq!(lines[1]["sop_loss"], 0.5);
        assert_eq!(lines[1]["cursor"], json!({ "epoch": 1, "next_sample": 4 }));
        for field in ["loss", "mlm_loss", "sop_loss", "mlm_accuracy", "sop_accuracy"] {
            assert_eq!(lines[2][field], Value::Null, "{field}");
        }
    }

    #[test]
    fn aborted_steps_are_not_logged_and_an_unopenable_path_is_an_error() {
        let durable = Durable::default();
        let abort = record(Decision::Abort, 1, StepStats::default());
        assert_eq!(StepLine::new(&abort, DataCursor::default(), &durable, 0), None);
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = MetricsLog::open(&tmp.path().join("missing-dir").join("m.jsonl"))
            .expect_err("no such directory");
        assert!(matches!(err, CoordinatorError::Io { .. }), "{err}");
    }
}
