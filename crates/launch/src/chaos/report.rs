//! The recovery report: each injected fault joined with what the coordinator logged, and the
//! run's sample ledger charged fault by fault.

use std::collections::BTreeMap;

use albatross_coordinator::LoggedEvent;

use super::damage::CheckpointDamage;
use super::schedule::Injection;
use crate::expect::Expectation;
use crate::summary::{MetricsLine, Summary};

/// How the cluster came through one fault, from the coordinator's metrics log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultOutcome {
    #[serde(flatten)]
    pub injection: Injection,
    /// The first event in the coordinator's events log that shows it reacting (eviction,
    /// leave, abort, new generation, restart), and how long after the fault; `None` when the
    /// fault healed before anything had to react (a short pause).
    pub detected_by: Option<String>,
    pub detected_ms: Option<u64>,
    /// The first step decided after the fault, and how long after it.
    pub next_commit_step: Option<u64>,
    pub next_commit_ms: Option<u64>,
    /// Steps aborted between the fault and that commit.
    pub aborted_steps: u64,
    /// What the decisions taken from this fault until the next one (or the end) cost: samples
    /// trained again (steps decided twice, after a rollback however far back) and samples
    /// never trained (see [`ledger_by_fault`]). Both must be 0; the rows sum to the totals.
    pub samples_lost: u64,
    pub samples_duplicated: u64,
    /// Whether the replicas' state hashes agreed after the fault: the coordinator commits a
    /// step only when every member voted the same hash, so the next commit is the proof;
    /// `None` when no step committed after it.
    pub replica_hashes_agree: Option<bool>,
}

/// `chaos-report.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChaosReport {
    pub faults: Vec<FaultOutcome>,
    /// Checkpoints damaged after the run, and whether a restart would cope.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<CheckpointDamage>,
    pub total_faults: usize,
    pub max_next_commit_ms: Option<u64>,
    pub mean_next_commit_ms: Option<f64>,
    pub aborted_steps: u64,
    pub final_step: u64,
    pub samples_lost: u64,
    pub samples_duplicated: u64,
    /// What decisions before the first fault cost (nothing in a correct run): with these the
    /// per-fault rows sum to the totals.
    pub samples_lost_before_any_fault: u64,
    pub samples_duplicated_before_any_fault: u64,
    pub replica_hashes_agree: bool,
    /// Whether the job ran in exact mode, and the check against `--expect-hash` /
    /// `--reference` (null when neither was given), as in summary.json.
    pub deterministic: bool,
    pub expected: Option<Expectation>,
}

const REACTIONS: [&str; 5] = ["evicted", "left", "aborted", "generation_changed", "started"];

/// Joins the injections with the metrics and events logs (and the run's summary for the
/// ledger).
pub fn report(
    injections: &[Injection],
    checkpoints: Vec<CheckpointDamage>,
    lines: &[MetricsLine],
    events: &[LoggedEvent],
    summary: &Summary,
    global_batch: u64,
) -> ChaosReport {
    let starts: Vec<u64> = injections.iter().map(|inj| inj.unix_ms).collect();
    let charged = ledger_by_fault(lines, summary.final_step, global_batch, &starts);
    let faults: Vec<FaultOutcome> = injections
        .iter()
        .enumerate()
        .map(|(i, inj)| {
            let Charge { duplicated: samples_duplicated, lost: samples_lost } = charged.faults[i];
            let before = lines.iter().rev().find(|l| l.unix_ms <= inj.unix_ms);
            let after = lines.iter().find(|l| l.unix_ms > inj.unix_ms);
            let reaction = events.iter().find(|e| {
                e.unix_ms >= inj.unix_ms
                    && after.is_none_or(|a| e.unix_ms <= a.unix_ms)
                    && REACTIONS.contains(&e.event.as_str())
            });
            FaultOutcome {
                injection: inj.clone(),
                detected_by: reaction.map(|e| e.event.clone()),
                detected_ms: reaction.map(|e| e.unix_ms - inj.unix_ms),
                next_commit_step: after.map(|l| l.step),
                next_commit_ms: after.map(|l| l.unix_ms - inj.unix_ms),
                aborted_steps: match (before, after) {
                    (Some(b), Some(a)) => a.aborted_steps.saturating_sub(b.aborted_steps),
                    (None, Some(a)) => a.aborted_steps,
                    _ => 0,
                },
                samples_lost,
                samples_duplicated,
                replica_hashes_agree: after.map(|_| true),
            }
        })
        .collect();
    let times: Vec<u64> = faults.iter().filter_map(|f| f.next_commit_ms).collect();
    ChaosReport {
        total_faults: faults.len() + checkpoints.len(),
        checkpoints,
        max_next_commit_ms: times.iter().max().copied(),
        mean_next_commit_ms: (!times.is_empty())
            .then(|| times.iter().sum::<u64>() as f64 / times.len() as f64),
        aborted_steps: summary.aborted_steps,
        final_step: summary.final_step,
        samples_lost: summary.samples_lost,
        samples_duplicated: summary.samples_duplicated,
        samples_lost_before_any_fault: charged.before_faults.lost,
        samples_duplicated_before_any_fault: charged.before_faults.duplicated,
        replica_hashes_agree: summary.replica_hashes_agree,
        deterministic: summary.deterministic,
        expected: summary.expected.clone(),
        faults,
    }
}

/// Samples one fault's window of time cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub duplicated: u64,
    pub lost: u64,
}

/// The run's ledger, charged by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargedLedger {
    /// Per fault, in the order of `starts`.
    pub faults: Vec<Charge>,
    /// Decisions before the first fault (0 and 0 in a correct run).
    pub before_faults: Charge,
}

/// The ledger of `lines` (the metrics log, in decision order) for steps `1..=final_step`,
/// each sample charged to the fault whose window of time holds the decision that cost it.
/// Fault `i`'s window runs from `starts[i]` (Unix ms) to the next fault's start. A step decided
/// again (after a rollback) duplicates its earlier samples: charged where the repeat was
/// decided, however far back the step lies. A step decided short loses the rest, charged where
/// it was decided; a step never decided loses its batch, charged where a later step was first
/// decided past it. Together with `before_faults`, the charges sum to the totals of
/// [`crate::summary::ledger`].
pub fn ledger_by_fault(
    lines: &[MetricsLine],
    final_step: u64,
    global_batch: u64,
    starts: &[u64],
) -> ChargedLedger {
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_by_key(|&i| starts[i]);
    // The fault whose window holds `unix_ms`; `None` before the first.
    let window = |unix_ms: u64| order.iter().rev().find(|&&i| starts[i] <= unix_ms).copied();
    let mut charged = ChargedLedger {
        faults: vec![Charge::default(); starts.len()],
        before_faults: Charge::default(),
    };
    // Per step: the samples of its latest decision and that decision's window.
    let mut latest: BTreeMap<u64, (u64, Option<usize>)> = BTreeMap::new();
    // Steps the stream went past without deciding them (yet), and where.
    let mut passed: Vec<(u64, Option<usize>)> = Vec::new();
    let mut highest = 0;
    for line in lines.iter().filter(|l| (1..=final_step).contains(&l.step)) {
        let at = window(line.unix_ms);
        if let Some((earlier, _)) = latest.insert(line.step, (line.samples, at)) {
            charged.at(at).duplicated += earlier;
        }
        passed.extend((highest + 1..line.step).map(|s| (s, at)));
        highest = highest.max(line.step);
    }
    for &(samples, at) in latest.values() {
        charged.at(at).lost += global_batch.saturating_sub(samples);
    }
    for (step, at) in passed {
        if !latest.contains_key(&step) {
            charged.at(at).lost += global_batch;
        }
    }
    charged
}

impl ChargedLedger {
    fn at(&mut self, window: Option<usize>) -> &mut Charge {
        match window {
            Some(i) => &mut self.faults[i],
            None => &mut self.before_faults,
        }
    }
}

/// The report as a table for the terminal.
pub fn table(r: &ChaosReport) -> String {
    let mut out = format!(
        "{:<18} {:<12} {:>6} {:>12} {:>10} {:>12} {:>8} {:>5} {:>5} {:>6}\n",
        "fault",
        "target",
        "step",
        "detected ms",
        "next step",
        "recovery ms",
        "aborted",
        "lost",
        "dup",
        "agree"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    for f in &r.faults {
        out.push_str(&format!(
            "{:<18} {:<12} {:>6} {:>12} {:>10} {:>12} {:>8} {:>5} {:>5} {:>6}\n",
            f.injection.kind,
            f.injection.target,
            f.injection.injected_after_step,
            opt(f.detected_ms),
            opt(f.next_commit_step),
            opt(f.next_commit_ms),
            f.aborted_steps,
            f.samples_lost,
            f.samples_duplicated,
            f.replica_hashes_agree.map_or("-", |agree| if agree { "yes" } else { "NO" })
        ));
    }
    if r.samples_lost_before_any_fault + r.samples_duplicated_before_any_fault > 0 {
        out.push_str(&format!(
            "{:<18} {:<12} {:>6} {:>12} {:>10} {:>12} {:>8} {:>5} {:>5} {:>6}\n",
            "(before any fault)",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            r.samples_lost_before_any_fault,
            r.samples_duplicated_before_any_fault,
            "-"
        ));
    }
    for c in &r.checkpoints {
        out.push_str(&format!(
            "corrupt-checkpoint {}: {}; a restart resumes from {}\n",
            c.corrupted,
            c.detected.as_deref().unwrap_or("NOT DETECTED"),
            c.resumes_from.as_deref().unwrap_or("nothing (no intact checkpoint)")
        ));
    }
    out.push_str(&format!(
        "{} faults; recovery (fault -> next commit) mean {} ms, max {} ms; {} aborted steps; \
         samples lost {}, duplicated {}; replica hashes agree: {}\n",
        r.total_faults,
        r.mean_next_commit_ms.map_or("-".to_owned(), |m| format!("{m:.0}")),
        opt(r.max_next_commit_ms),
        r.aborted_steps,
        r.samples_lost,
        r.samples_duplicated,
        r.replica_hashes_agree
    ));
    if let Some(expected) = &r.expected {
        out.push_str(&expected.line(r.deterministic));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(step: u64, unix_ms: u64, samples: u64, aborted_steps: u64) -> MetricsLine {
        MetricsLine {
            step,
            decision: "commit".to_owned(),
            unix_ms,
            loss: Some(1.0),
            samples,
            tokens: samples * 10,
            members: 2,
            reduce_ms: 1,
            reduce_fastest_ms: 1,
            compute_ms: 9,
            aborted_steps,
            skipped_steps: 0,
            recoveries: 0,
        }
    }

    fn injected(kind: &'static str, after_step: u64, unix_ms: u64) -> Injection {
        Injection {
            kind,
            target: "worker-1".to_owned(),
            scheduled_step: after_step,
            injected_after_step: after_step,
            unix_ms,
        }
    }

    /// Each fault gets the first reaction and commit after it, and the ledger of the steps up
    /// to the next fault: a replayed step and a short step are charged to the fault before them.
    #[test]
    fn the_report_charges_each_fault_with_its_window() {
        let lines = vec![
            metrics(1, 1_000, 4, 0),
            metrics(2, 2_000, 4, 0),
            metrics(3, 5_000, 4, 1),
            metrics(3, 5_500, 4, 1), // replayed: 4 samples used twice
            metrics(4, 6_000, 4, 1),
            metrics(5, 9_000, 3, 2), // one sample short
            metrics(6, 9_500, 4, 2),
        ];
        let events = vec![
            LoggedEvent { unix_ms: 2_100, event: "joined".to_owned() },
            LoggedEvent { unix_ms: 3_000, event: "evicted".to_owned() },
            LoggedEvent { unix_ms: 7_000, event: "aborted".to_owned() },
        ];
        let injections = vec![injected("kill", 2, 2_050), injected("pause", 4, 6_500)];
        let summary = crate::summary::summarize(&lines, &[], 2, 4, 10.0);
        let r = report(&injections, Vec::new(), &lines, &events, &summary, 4);
        let (kill, pause) = (&r.faults[0], &r.faults[1]);
        assert_eq!((kill.detected_by.as_deref(), kill.detected_ms), (Some("evicted"), Some(950)));
        assert_eq!((kill.next_commit_step, kill.next_commit_ms), (Some(3), Some(2_950)));
        assert_eq!((kill.aborted_steps, kill.samples_duplicated, kill.samples_lost), (1, 4, 0));
        assert_eq!(
            (pause.detected_by.as_deref(), pause.next_commit_step),
            (Some("aborted"), Some(5))
        );
        assert_eq!((pause.aborted_steps, pause.samples_duplicated, pause.samples_lost), (1, 0, 1));
        assert_eq!(
            (kill.replica_hashes_agree, pause.replica_hashes_agree),
            (Some(true), Some(true))
        );
        assert_eq!((r.samples_duplicated, r.samples_lost, r.total_faults), (4, 1, 2));
        assert_eq!(r.max_next_commit_ms, Some(2_950));
        let table = table(&r);
        assert!(table.contains("lost") && table.contains("2 faults"), "{table}");
        assert!(!table.contains("final"), "no check asked: {table}");

        // A checked run: the report carries the check and the table says where the runs parted.
        let expect = crate::expect::Expect {
            from: crate::expect::ExpectedFrom::ExpectHash,
            hash: "ab".repeat(32),
            reference: None,
        };
        let summary = Summary {
            deterministic: true,
            expected: Some(expect.check(&Default::default(), &[])),
            ..summary
        };
        let r = report(&injections, Vec::new(), &lines, &events, &summary, 4);
        assert_eq!((r.deterministic, r.expected.as_ref().map(|e| e.matched)), (true, Some(false)));
        assert!(
            super::table(&r).ends_with("final hash differs from the expected hash (exact mode)\n"),
            "{}",
            super::table(&r)
        );
    }

    /// The issue-25 run: a kill after step 4, a rollback to step 0, steps 1-4 decided again,
    /// then a pause. The replays are the kill's, though their step numbers lie before it; every
    /// row together with the pre-fault part sums to the totals.
    #[test]
    fn a_rollback_is_charged_to_the_fault_that_caused_it() {
        let mut lines: Vec<MetricsLine> = (1..=4).map(|s| metrics(s, 1_000 * s, 8, 0)).collect();
        lines.extend((1..=7).map(|s| metrics(s, 10_000 + 1_000 * s, 8, 1)));
        // Step 7 decided short, step 6 never decided... then a pause at 30 s, and step 8.
        lines.retain(|l| !(l.step == 6 && l.unix_ms > 10_000));
        lines.last_mut().expect("step 7").samples = 5;
        lines.push(metrics(8, 31_000, 8, 1));
        let injections = vec![injected("kill", 4, 4_500), injected("pause", 7, 30_000)];
        let summary = crate::summary::summarize(&lines, &[], 2, 8, 10.0);
        let r = report(&injections, Vec::new(), &lines, &[], &summary, 8);
        let (kill, pause) = (&r.faults[0], &r.faults[1]);
        assert_eq!((kill.samples_duplicated, kill.samples_lost), (32, 8 + 3));
        assert_eq!((pause.samples_duplicated, pause.samples_lost), (0, 0));
        assert_eq!((r.samples_duplicated, r.samples_lost), (32, 11));
        assert_eq!(
            (r.samples_duplicated_before_any_fault, r.samples_lost_before_any_fault),
            (0, 0)
        );
        // A loss before the first fault is reported on its own row.
        let early = vec![metrics(1, 1_000, 6, 0), metrics(2, 2_000, 8, 0)];
        let summary = crate::summary::summarize(&early, &[], 2, 8, 10.0);
        let r = report(&[injected("kill", 2, 5_000)], Vec::new(), &early, &[], &summary, 8);
        assert_eq!((r.samples_lost_before_any_fault, r.faults[0].samples_lost), (2, 0));
        assert!(table(&r).contains("(before any fault)"), "{}", table(&r));
    }
}
