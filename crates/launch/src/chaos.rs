//! `albatross launch --chaos SPEC`: faults injected into the local cluster on a schedule, and
//! the recovery report built afterwards from what the cluster itself logged.
//!
//! A schedule is a comma-separated list of `KIND:TARGET@step=N[+DURATION]`:
//!
//! - `kill:worker-1@step=30`: SIGKILL the worker once step 30 committed; the launcher starts it
//!   again under the same name and it heals from a live peer; `kill:worker-1@step=30+1.5s`:
//!   1.5 s after step 30 committed, in the middle of step 31 (`term` takes the same delay);
//! - `pause:worker-0@step=50+5s`: SIGSTOP for 5 s, then SIGCONT (a stall, e.g. swap or GC);
//! - `term:worker-2@step=60`: SIGTERM (preemption: a graceful leave), then started again;
//! - `kill:coordinator@step=80`: SIGKILL the coordinator and start it again on the same address
//!   and state directory;
//! - `partition:worker-2@step=100+10s`: for 10 s, packets to the worker and between it and the
//!   coordinator vanish (its links run through the launcher's fault proxies, see `netfault`);
//!   `partition:coordinator@step=N+10s` cuts every worker's link to the coordinator;
//! - `delay:worker-1@step=120+200ms[~50ms][/30s]`: 200 ms (± jitter) more latency on the
//!   worker's links, for 30 s (default 10 s); `loss:worker-1@step=120+5%[/30s]`: TCP-like loss
//!   (a lost segment stalls its stream for a retransmission timeout);
//! - `corrupt-checkpoint:latest@end`: once training ended, damage the newest checkpoint and
//!   check that a restart would name it and resume from the previous one;
//!
//! or `random:rate=R,seed=S[,kinds=kill+pause+term+coordinator+partition+delay]`: on average R
//! faults per 100 steps, reproducible from the seed (default kinds: the first four).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use albatross_coordinator::LoggedEvent;
use albatross_rng::SplitMix64;

use crate::fleet::worker_name;
use crate::netfault::NetFault;
use crate::summary::{MetricsLine, Summary, unix_ms};

/// A fault as it was injected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Injection {
    pub kind: &'static str,
    pub target: String,
    pub scheduled_step: u64,
    /// The newest decided step when the fault hit.
    pub injected_after_step: u64,
    pub unix_ms: u64,
}

/// How long a `delay` or `loss` lasts when the schedule does not say.
const DEFAULT_NET_FAULT_DURATION: Duration = Duration::from_secs(10);

/// `at_step` of a fault injected once training has ended.
pub const AT_END: u64 = u64::MAX;

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    Kill,
    Pause(Duration),
    Term,
    /// `fault` on the target's network links for `duration`.
    Net {
        fault: NetFault,
        duration: Duration,
    },
    /// Damage the newest checkpoint (after the run).
    CorruptCheckpoint,
}

impl FaultKind {
    /// Whether it needs the launcher's fault proxies on the workers' links.
    pub fn is_network(&self) -> bool {
        matches!(self, Self::Net { .. })
    }
}

/// Whom a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Worker by index (`worker-<i>`).
    Worker(usize),
    Coordinator,
    /// The newest checkpoint on disk.
    LatestCheckpoint,
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub target: Target,
    /// Injected once this step has been decided (`AT_END`: after the run)...
    pub at_step: u64,
    /// ...and this long after (a kill or SIGTERM in the middle of the next step).
    pub delay: Duration,
}

impl Fault {
    pub fn kind_name(&self) -> &'static str {
        match (&self.kind, &self.target) {
            (FaultKind::Kill, Target::Coordinator) => "kill-coordinator",
            (FaultKind::Kill, _) => "kill",
            (FaultKind::Pause(_), _) => "pause",
            (FaultKind::Term, _) => "term",
            (FaultKind::Net { fault: NetFault::Partition, .. }, _) => "partition",
            (FaultKind::Net { fault: NetFault::Delay { .. }, .. }, _) => "delay",
            (FaultKind::Net { fault: NetFault::Loss { .. }, .. }, _) => "loss",
            (FaultKind::Net { .. }, _) => "network",
            (FaultKind::CorruptCheckpoint, _) => "corrupt-checkpoint",
        }
    }

    pub fn target_name(&self) -> String {
        match self.target {
            Target::Worker(i) => worker_name(i),
            Target::Coordinator => "coordinator".to_owned(),
            Target::LatestCheckpoint => "latest-checkpoint".to_owned(),
        }
    }
}

/// Parses a schedule for a cluster of `workers` running `total_steps` steps; faults come out
/// ordered by step.
///
/// # Errors
/// A malformed item, an unknown kind or target, a step outside the run, or a network fault.
pub fn parse(spec: &str, workers: usize, total_steps: u64) -> anyhow::Result<Vec<Fault>> {
    let spec = spec.trim();
    let mut faults = match spec.strip_prefix("random:") {
        Some(options) => random(options, workers, total_steps)?,
        None => spec
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                parse_item(item, workers, total_steps)
                    .with_context(|| format!("--chaos item {item:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    faults.sort_by_key(|f| f.at_step);
    Ok(faults)
}

fn parse_item(item: &str, workers: usize, total_steps: u64) -> anyhow::Result<Fault> {
    let (kind, rest) = item.split_once(':').context("expected KIND:TARGET@step=N")?;
    let (target, when) = rest.split_once('@').context("expected TARGET@step=N")?;
    if kind == "corrupt-checkpoint" {
        if target != "latest" || when != "end" {
            bail!(
                "corrupt-checkpoint applies to the newest checkpoint after the run: corrupt-checkpoint:latest@end"
            );
        }
        return Ok(Fault {
            kind: FaultKind::CorruptCheckpoint,
            target: Target::LatestCheckpoint,
            at_step: AT_END,
            delay: Duration::ZERO,
        });
    }
    let when = when.strip_prefix("step=").context("the time must be step=N")?;
    let (step, argument) = match when.split_once('+') {
        Some((step, argument)) => (step, Some(argument)),
        None => (when, None),
    };
    let at_step: u64 = step.parse().with_context(|| format!("step {step:?} is not a number"))?;
    if at_step == 0 || at_step >= total_steps {
        bail!("step {at_step} is outside the run (1..{total_steps})");
    }
    let target = parse_target(target, workers)?;
    let duration =
        |d: &str| humantime::parse_duration(d).with_context(|| format!("duration {d:?}"));
    let mut delay = Duration::ZERO;
    let kind = match (kind, argument) {
        ("kill", None) => FaultKind::Kill,
        ("term", None) => FaultKind::Term,
        ("kill" | "term", Some(d)) => {
            delay = duration(d)?;
            if kind == "kill" { FaultKind::Kill } else { FaultKind::Term }
        }
        ("pause", Some(d)) => FaultKind::Pause(duration(d)?),
        ("pause" | "partition", None) => {
            bail!("{kind} needs a duration: {kind}:worker-0@step=50+5s")
        }
        ("partition", Some(d)) => {
            FaultKind::Net { fault: NetFault::Partition, duration: duration(d)? }
        }
        ("delay" | "loss", Some(argument)) => {
            let (value, lasting) = match argument.split_once('/') {
                Some((value, lasting)) => (value, duration(lasting)?),
                None => (argument, DEFAULT_NET_FAULT_DURATION),
            };
            let fault: NetFault = format!("{kind}={value}").parse()?;
            FaultKind::Net { fault, duration: lasting }
        }
        ("delay", None) => bail!("delay needs a latency: delay:worker-1@step=120+200ms[/30s]"),
        ("loss", None) => bail!("loss needs a rate: loss:worker-1@step=120+5%[/30s]"),
        (other, _) => bail!(
            "unknown fault {other:?} (kill, pause, term, partition, delay, loss, corrupt-checkpoint)"
        ),
    };
    if target == Target::Coordinator && !matches!(kind, FaultKind::Kill | FaultKind::Net { .. }) {
        bail!("only kill and network faults apply to the coordinator");
    }
    Ok(Fault { kind, target, at_step, delay })
}

fn parse_target(target: &str, workers: usize) -> anyhow::Result<Target> {
    if target == "coordinator" {
        return Ok(Target::Coordinator);
    }
    let index = target
        .strip_prefix("worker-")
        .and_then(|i| i.parse::<usize>().ok())
        .with_context(|| format!("target {target:?} is neither coordinator nor worker-<i>"))?;
    if index >= workers {
        bail!("{target} does not exist: the cluster has worker-0..worker-{}", workers - 1);
    }
    Ok(Target::Worker(index))
}

/// A reproducible random schedule: each step after a 5-step warm-up gets a fault with
/// probability `rate / 100`, at most one fault every 5 steps so each recovers first.
fn random(options: &str, workers: usize, total_steps: u64) -> anyhow::Result<Vec<Fault>> {
    let (mut rate, mut seed, mut kinds) =
        (None, None, vec!["kill", "pause", "term", "coordinator"]);
    for pair in options.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) =
            pair.split_once('=').with_context(|| format!("{pair:?} is not key=value"))?;
        match key {
            "rate" => rate = Some(value.parse::<f64>().with_context(|| format!("rate {value:?}"))?),
            "seed" => seed = Some(value.parse::<u64>().with_context(|| format!("seed {value:?}"))?),
            "kinds" => kinds = value.split('+').collect(),
            other => bail!("unknown random option {other:?} (rate, seed, kinds)"),
        }
    }
    let rate = rate.context("random needs rate=R (faults per 100 steps)")?;
    let seed = seed.context("random needs seed=S, so the schedule can be replayed")?;
    if !(0.0..=20.0).contains(&rate) {
        bail!("rate {rate} is outside 0..=20 faults per 100 steps");
    }
    for kind in &kinds {
        if !matches!(*kind, "kill" | "pause" | "term" | "coordinator" | "partition" | "delay") {
            bail!("unknown kind {kind:?} (kill, pause, term, coordinator, partition, delay)");
        }
    }
    let mut rng = SplitMix64::new(seed);
    let mut faults = Vec::new();
    let mut next_allowed = 5;
    for step in 5..total_steps.saturating_sub(2) {
        if step < next_allowed || rng.next_f64() >= rate / 100.0 {
            continue;
        }
        let kind = kinds[below(&mut rng, kinds.len())];
        let worker = Target::Worker(below(&mut rng, workers));
        let (kind, target) = match kind {
            "kill" => (FaultKind::Kill, worker),
            "term" => (FaultKind::Term, worker),
            "pause" => (FaultKind::Pause(Duration::from_millis(500 + 500 * rng.below(8))), worker),
            "partition" => {
                let duration = Duration::from_millis(1000 + 500 * rng.below(8));
                (FaultKind::Net { fault: NetFault::Partition, duration }, worker)
            }
            "delay" => {
                let latency = Duration::from_millis(50 + 50 * rng.below(6));
                let fault = NetFault::Delay { latency, jitter: latency / 4 };
                (FaultKind::Net { fault, duration: Duration::from_secs(5) }, worker)
            }
            _ => (FaultKind::Kill, Target::Coordinator),
        };
        faults.push(Fault { kind, target, at_step: step, delay: Duration::ZERO });
        next_allowed = step + 5;
    }
    Ok(faults)
}

/// Uniform in `[0, n)` for a count of things (0 for none).
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    usize::try_from(rng.below(n as u64)).unwrap_or(0)
}

/// What `corrupt-checkpoint:latest@end` damaged, how it was caught, and where a restart
/// resumes: the same manifest check a cold start runs before loading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointDamage {
    pub corrupted: String,
    pub step: u64,
    pub unix_ms: u64,
    /// The verification error naming the damaged file.
    pub detected: Option<String>,
    /// The newest checkpoint that still verifies.
    pub resumes_from: Option<String>,
}

/// Flips bytes in the middle of the newest checkpoint's weights, then checks that
/// verification names it and finds the previous checkpoint intact.
///
/// # Errors
/// When there is no checkpoint or the files cannot be read or written.
pub fn corrupt_newest_checkpoint(root: &Path) -> anyhow::Result<CheckpointDamage> {
    use albatross_worker::checkpoint::{list, verify};
    let checkpoints = list(root)?;
    let (step, newest) =
        checkpoints.last().with_context(|| format!("no checkpoint in {}", root.display()))?;
    let weights = newest.join("model.safetensors");
    let mut bytes =
        std::fs::read(&weights).with_context(|| format!("cannot read {}", weights.display()))?;
    let middle = bytes.len() / 2;
    for byte in bytes.iter_mut().skip(middle).take(16) {
        *byte ^= 0xFF;
    }
    std::fs::write(&weights, &bytes)
        .with_context(|| format!("cannot write {}", weights.display()))?;
    let unix_ms = unix_ms();
    let detected = verify(newest).err().map(|e| e.to_string());
    let resumes_from = checkpoints
        .iter()
        .rev()
        .skip(1)
        .find(|(_, dir)| verify(dir).is_ok())
        .map(|(_, dir)| dir.display().to_string());
    tracing::info!(checkpoint = %newest.display(), ?detected, ?resumes_from, "checkpoint corrupted");
    Ok(CheckpointDamage {
        corrupted: newest.display().to_string(),
        step: *step,
        unix_ms,
        detected,
        resumes_from,
    })
}

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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_schedules_parse_in_step_order() {
        let faults = parse(
            "pause:worker-0@step=50+5s, kill:worker-1@step=30,kill:coordinator@step=80,term:worker-1@step=60",
            2,
            100,
        )
        .expect("valid");
        let steps: Vec<u64> = faults.iter().map(|f| f.at_step).collect();
        assert_eq!(steps, [30, 50, 60, 80]);
        assert_eq!(faults[1].kind, FaultKind::Pause(Duration::from_secs(5)));
        assert_eq!(faults[3].target, Target::Coordinator);
        assert_eq!(faults[0].kind_name(), "kill");
        assert_eq!(faults[3].kind_name(), "kill-coordinator");
        assert_eq!(faults[0].target_name(), "worker-1");
        assert!(faults.iter().all(|f| f.delay.is_zero()));
        // A kill or SIGTERM may land in the middle of the next step.
        let delayed =
            parse("kill:worker-1@step=4+1500ms,term:worker-0@step=6+2s", 2, 10).expect("valid");
        assert_eq!(delayed[0].delay, Duration::from_millis(1500));
        assert_eq!(
            (delayed[1].kind.clone(), delayed[1].delay),
            (FaultKind::Term, Duration::from_secs(2))
        );
        assert!(parse("kill:worker-1@step=4+soon", 2, 10).is_err());
    }

    #[test]
    fn mistakes_are_named() {
        for (spec, expected) in [
            ("kill:worker-2@step=5", "worker-2 does not exist"),
            ("kill:worker-0@step=100", "outside the run"),
            ("pause:worker-0@step=5", "pause needs a duration"),
            ("partition:worker-0@step=5", "partition needs a duration"),
            ("delay:worker-0@step=5+fast", "delay=fast"),
            ("loss:worker-0@step=5+150%", "150%"),
            ("corrupt-checkpoint:latest@step=5", "latest@end"),
            ("smash:worker-0@step=5", "unknown fault"),
            ("kill:worker-0", "TARGET@step=N"),
            ("term:coordinator@step=5", "only kill and network faults"),
            ("random:rate=5", "seed"),
        ] {
            let err = parse(spec, 2, 100).expect_err(spec);
            assert!(format!("{err:#}").contains(expected), "{spec}: {err:#}");
        }
    }

    #[test]
    fn network_and_checkpoint_faults_parse() {
        let faults = parse(
            "partition:worker-1@step=10+3s, delay:worker-0@step=20+200ms~50ms/30s, \
             loss:coordinator@step=30+5%, corrupt-checkpoint:latest@end",
            2,
            100,
        )
        .expect("valid");
        assert_eq!(
            faults[0].kind,
            FaultKind::Net { fault: NetFault::Partition, duration: Duration::from_secs(3) }
        );
        let delay = NetFault::Delay {
            latency: Duration::from_millis(200),
            jitter: Duration::from_millis(50),
        };
        assert_eq!(
            faults[1].kind,
            FaultKind::Net { fault: delay, duration: Duration::from_secs(30) }
        );
        assert!(matches!(
            &faults[2].kind,
            FaultKind::Net { fault: NetFault::Loss { probability, .. }, duration }
                if (*probability - 0.05).abs() < 1e-12 && *duration == DEFAULT_NET_FAULT_DURATION
        ));
        assert_eq!(faults[2].target, Target::Coordinator);
        assert_eq!(faults[3].at_step, AT_END);
        assert_eq!(faults[3].kind_name(), "corrupt-checkpoint");
        assert!(faults.iter().take(3).all(|f| f.kind.is_network()));
    }

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

    #[test]
    fn random_schedules_replay_from_their_seed_and_keep_faults_apart() {
        let a = parse("random:rate=10,seed=7", 3, 400).expect("valid");
        let b = parse("random:rate=10,seed=7", 3, 400).expect("valid");
        let c = parse("random:rate=10,seed=8", 3, 400).expect("valid");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.len() > 10 && a.len() < 60, "{} faults", a.len());
        assert!(a.windows(2).all(|w| w[1].at_step >= w[0].at_step + 5));
        let only_kills = parse("random:rate=10,seed=7,kinds=kill", 3, 400).expect("valid");
        assert!(
            only_kills.iter().all(|f| f.kind == FaultKind::Kill && f.target != Target::Coordinator)
        );
    }
}
