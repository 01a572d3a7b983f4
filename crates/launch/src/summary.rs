//! What a run produced, computed from the coordinator's metrics log (one line per decided
//! step) and the workers' exit reports — never from what the launcher believes happened.
//!
//! The sample ledger: every decided step consumes exactly one global batch, so step `s` owns
//! positions `[(s-1)·G, s·G)` of the sample stream. A step decided twice (replayed after a
//! rollback) counts its earlier samples as duplicated; a step whose votes account for fewer
//! than `G` samples, or that never appears, counts the difference as lost.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::expect::Expectation;
use crate::jsonl;

/// One line of `metrics.jsonl` (the fields the launcher uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetricsLine {
    pub step: u64,
    pub decision: String,
    pub unix_ms: u64,
    pub loss: Option<f64>,
    pub samples: u64,
    pub tokens: u64,
    pub members: u64,
    /// The slowest member's all-reduce time, waiting for stragglers included.
    #[serde(default)]
    pub reduce_ms: u64,
    /// The quickest member's all-reduce time: the exchange itself.
    #[serde(default)]
    pub reduce_fastest_ms: u64,
    #[serde(default)]
    pub compute_ms: u64,
    pub aborted_steps: u64,
    pub skipped_steps: u64,
    pub recoveries: u64,
}

/// A worker's `--report-file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkerReport {
    pub worker: String,
    pub exit: String,
    pub applied_step: u64,
    pub state_hash: Option<String>,
    pub parameter_hash: Option<String>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub steps_committed: u64,
    pub steps_skipped: u64,
    pub final_step: u64,
    pub initial_loss: Option<f64>,
    pub final_loss: Option<f64>,
    pub workers: usize,
    pub aborted_steps: u64,
    pub recoveries: u64,
    pub samples_committed: u64,
    pub samples_skipped: u64,
    pub samples_duplicated: u64,
    pub samples_lost: u64,
    pub replica_hashes_agree: bool,
    pub final_param_hash: Option<String>,
    pub final_state_hash: Option<String>,
    pub tokens_per_second: Option<f64>,
    pub mean_step_ms: Option<f64>,
    /// All-reduce time over all-reduce plus compute time, summed over the timed steps: the
    /// slowest member's all-reduce, so the wait for a straggler counts.
    pub allreduce_share: Option<f64>,
    /// The same with the quickest member's all-reduce: the exchange itself, waiting for nobody.
    pub allreduce_exchange_share: Option<f64>,
    pub wall_seconds: f64,
    /// Whether the job ran in exact mode (`determinism.exact`): then the final hashes are the
    /// same bits for any number of workers and any faults.
    pub deterministic: bool,
    /// The check against `--expect-hash` / `--reference`; null when neither was given.
    pub expected: Option<Expectation>,
}

/// Reads every complete line of `metrics.jsonl` (a torn last line is ignored).
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<MetricsLine>> {
    jsonl::read(path)
}

/// Samples (duplicated, lost) by the decisions of steps `steps`: a step decided twice used its
/// samples twice; a step decided with fewer samples than the global batch, or never, lost the
/// rest.
pub fn ledger(lines: &[MetricsLine], steps: RangeInclusive<u64>, global_batch: u64) -> (u64, u64) {
    let mut by_step: BTreeMap<u64, u64> = BTreeMap::new();
    let mut duplicated = 0;
    for line in lines.iter().filter(|l| steps.contains(&l.step)) {
        if let Some(earlier) = by_step.insert(line.step, line.samples) {
            duplicated += earlier;
        }
    }
    let lost = steps
        .map(|step| global_batch.saturating_sub(by_step.get(&step).copied().unwrap_or(0)))
        .sum();
    (duplicated, lost)
}

/// Builds the summary for a run whose global batch is `global_batch`.
pub fn summarize(
    lines: &[MetricsLine],
    reports: &[WorkerReport],
    workers: usize,
    global_batch: u64,
    wall_seconds: f64,
) -> Summary {
    let by_step: BTreeMap<u64, &MetricsLine> = lines.iter().map(|l| (l.step, l)).collect();
    let final_step = by_step.keys().next_back().copied().unwrap_or(0);
    let (duplicated, lost) = ledger(lines, 1..=final_step, global_batch);
    let commits: Vec<&MetricsLine> =
        by_step.values().copied().filter(|l| l.decision == "commit").collect();
    let skips: Vec<&MetricsLine> =
        by_step.values().copied().filter(|l| l.decision == "skip").collect();
    let losses: Vec<f64> = by_step.values().filter_map(|l| l.loss).collect();
    let window = (losses.len() / 10).clamp(1, 10);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let finished: Vec<&WorkerReport> =
        reports.iter().filter(|r| r.applied_step == final_step && r.state_hash.is_some()).collect();
    let agree =
        !finished.is_empty() && finished.windows(2).all(|w| w[0].state_hash == w[1].state_hash);
    let last = lines.last();
    let steady: Vec<&MetricsLine> = by_step.values().skip(1).copied().collect();
    let (tokens, elapsed_ms) = match (steady.first(), steady.last()) {
        (Some(first), Some(last)) if last.unix_ms > first.unix_ms => {
            (steady.iter().skip(1).map(|l| l.tokens).sum::<u64>(), last.unix_ms - first.unix_ms)
        }
        _ => (0, 0),
    };
    let steps_timed = steady.len().saturating_sub(1);
    let reduce: u64 = steady.iter().map(|l| l.reduce_ms).sum();
    let compute: u64 = steady.iter().map(|l| l.compute_ms).sum();
    let exchange: u64 = steady.iter().map(|l| l.reduce_fastest_ms).sum();
    let share = |part: u64| (reduce + compute > 0).then(|| part as f64 / (reduce + compute) as f64);
    Summary {
        steps_committed: commits.len() as u64,
        steps_skipped: skips.len() as u64,
        final_step,
        initial_loss: mean(&losses[..window.min(losses.len())]),
        final_loss: mean(&losses[losses.len().saturating_sub(window)..]),
        workers,
        aborted_steps: last.map_or(0, |l| l.aborted_steps),
        recoveries: last.map_or(0, |l| l.recoveries),
        samples_committed: commits.iter().map(|l| l.samples).sum(),
        samples_skipped: skips.iter().map(|l| l.samples).sum(),
        samples_duplicated: duplicated,
        samples_lost: lost,
        replica_hashes_agree: agree,
        final_param_hash: finished.first().and_then(|r| r.parameter_hash.clone()),
        final_state_hash: finished.first().and_then(|r| r.state_hash.clone()),
        tokens_per_second: (elapsed_ms > 0).then(|| tokens as f64 * 1000.0 / elapsed_ms as f64),
        mean_step_ms: (steps_timed > 0).then(|| elapsed_ms as f64 / steps_timed as f64),
        allreduce_share: share(reduce),
        allreduce_exchange_share: share(exchange),
        wall_seconds,
        deterministic: false,
        expected: None,
    }
}

/// Milliseconds since the Unix epoch: the clock of the metrics and events logs.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, decision: &str, samples: u64, loss: f64, unix_ms: u64) -> MetricsLine {
        MetricsLine {
            step,
            decision: decision.to_owned(),
            unix_ms,
            loss: Some(loss),
            samples,
            tokens: samples * 100,
            members: 2,
            reduce_ms: 1,
            reduce_fastest_ms: 1,
            compute_ms: 9,
            aborted_steps: 0,
            skipped_steps: 0,
            recoveries: 0,
        }
    }

    fn report(worker: &str, step: u64, hash: &str) -> WorkerReport {
        WorkerReport {
            worker: worker.to_owned(),
            exit: "finished".to_owned(),
            applied_step: step,
            state_hash: Some(hash.to_owned()),
            parameter_hash: Some(format!("p{hash}")),
        }
    }

    #[test]
    fn a_clean_run_has_an_exact_ledger_and_agreeing_replicas() {
        let lines: Vec<_> =
            (1..=20).map(|s| line(s, "commit", 8, 10.0 - s as f64 * 0.1, s * 100)).collect();
        let reports = [report("a", 20, "h"), report("b", 20, "h")];
        let s = summarize(&lines, &reports, 2, 8, 3.0);
        assert_eq!((s.steps_committed, s.final_step, s.samples_committed), (20, 20, 160));
        assert_eq!((s.samples_duplicated, s.samples_lost), (0, 0));
        assert!(s.replica_hashes_agree);
        assert_eq!(s.final_param_hash.as_deref(), Some("ph"));
        assert!(s.initial_loss.expect("loss") > s.final_loss.expect("loss"));
        // 18 steps after the first timed one: 18 × 800 tokens over 1.8 s.
        assert!((s.tokens_per_second.expect("rate") - 8000.0).abs() < 1e-6);
        assert!((s.allreduce_share.expect("share") - 0.1).abs() < 1e-9);

        // A straggler: the slowest member's all-reduce is 3 ms, the exchange itself 1 ms.
        let lines: Vec<_> =
            lines.into_iter().map(|l| MetricsLine { reduce_ms: 3, compute_ms: 7, ..l }).collect();
        let s = summarize(&lines, &reports, 2, 8, 3.0);
        assert!((s.allreduce_share.expect("share") - 0.3).abs() < 1e-9);
        assert!((s.allreduce_exchange_share.expect("exchange") - 0.1).abs() < 1e-9);
    }

    #[test]
    fn replays_gaps_and_short_steps_are_counted_and_hashes_compared() {
        let mut lines: Vec<_> = (1..=5).map(|s| line(s, "commit", 8, 1.0, s)).collect();
        lines.push(line(4, "commit", 8, 1.0, 6)); // replayed after a rollback
        lines.push(line(5, "commit", 8, 1.0, 7));
        lines.push(line(7, "skip", 6, 1.0, 8)); // step 6 missing, step 7 short
        let reports = [report("a", 7, "h"), report("b", 7, "other")];
        let s = summarize(&lines, &reports, 2, 8, 1.0);
        assert_eq!(s.samples_duplicated, 16);
        assert_eq!(s.samples_lost, 8 + 2);
        assert_eq!((s.steps_committed, s.steps_skipped, s.samples_skipped), (5, 1, 6));
        assert!(!s.replica_hashes_agree);
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.jsonl");
        let good = r#"{"step":1,"decision":"commit","unix_ms":5,"loss":2.5,"samples":8,"tokens":9,"members":1,"aborted_steps":0,"skipped_steps":0,"recoveries":0}"#;
        std::fs::write(&path, format!("{good}\n{{\"step\":2,")).expect("write");
        assert_eq!(read_metrics(&path).expect("read").len(), 1);
        std::fs::write(&path, format!("oops\n{good}\n")).expect("write");
        let err = read_metrics(&path).expect_err("bad line");
        assert!(format!("{err:#}").contains("metrics.jsonl:1"), "{err:#}");
        assert!(read_metrics(&dir.path().join("missing")).expect("none").is_empty());
    }
}
