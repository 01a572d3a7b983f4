//! `albatross launch --chaos SPEC`: faults injected into the local cluster on a schedule, and
//! the recovery report built afterwards from what the cluster itself logged.
//!
//! A schedule is a comma-separated list of `KIND:TARGET@step=N[+DURATION]`:
//!
//! - `kill:worker-1@step=30`: SIGKILL the worker once step 30 committed; the launcher starts it
//!   again under the same name and it heals from a live peer;
//! - `pause:worker-0@step=50+5s`: SIGSTOP for 5 s, then SIGCONT (a stall, e.g. swap or GC);
//! - `term:worker-2@step=60`: SIGTERM (preemption: a graceful leave), then started again;
//! - `kill:coordinator@step=80`: SIGKILL the coordinator and start it again on the same address
//!   and state directory.
//!
//! or `random:rate=R,seed=S[,kinds=kill+pause+term+coordinator]`: on average R faults per 100
//! steps, reproducible from the seed. Network faults (partition, delay) need network
//! namespaces and are refused here with a clear message.

use std::time::Duration;

use anyhow::{Context, bail};

use super::cluster::Injection;
use super::{MetricsLine, Summary};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Kill,
    Pause(Duration),
    Term,
}

/// Whom a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Worker by index (`worker-<i>`).
    Worker(usize),
    Coordinator,
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub target: Target,
    /// Injected once this step has been decided.
    pub at_step: u64,
}

impl Fault {
    pub fn kind_name(&self) -> &'static str {
        match (self.kind, &self.target) {
            (FaultKind::Kill, Target::Coordinator) => "kill-coordinator",
            (FaultKind::Kill, _) => "kill",
            (FaultKind::Pause(_), _) => "pause",
            (FaultKind::Term, _) => "term",
        }
    }

    pub fn target_name(&self) -> String {
        match self.target {
            Target::Worker(i) => super::worker_name(i),
            Target::Coordinator => "coordinator".to_owned(),
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
    if matches!(kind, "partition" | "delay" | "loss") {
        bail!(
            "{kind} faults need network namespaces and a proxy; they are not supported by launch yet"
        );
    }
    if kind == "corrupt-checkpoint" {
        bail!(
            "corrupt-checkpoint is not supported by launch yet (only a cold start reads checkpoints)"
        );
    }
    let (target, when) = rest.split_once('@').context("expected TARGET@step=N")?;
    let when = when.strip_prefix("step=").context("the time must be step=N")?;
    let (step, duration) = match when.split_once('+') {
        Some((step, d)) => {
            (step, Some(humantime::parse_duration(d).with_context(|| format!("duration {d:?}"))?))
        }
        None => (when, None),
    };
    let at_step: u64 = step.parse().with_context(|| format!("step {step:?} is not a number"))?;
    if at_step == 0 || at_step >= total_steps {
        bail!("step {at_step} is outside the run (1..{total_steps})");
    }
    let target = parse_target(target, workers)?;
    let kind = match (kind, duration) {
        ("kill", None) => FaultKind::Kill,
        ("term", None) => FaultKind::Term,
        ("pause", Some(d)) => FaultKind::Pause(d),
        ("pause", None) => bail!("pause needs a duration: pause:worker-0@step=50+5s"),
        ("kill" | "term", Some(_)) => bail!("{kind} takes no duration"),
        (other, _) => bail!("unknown fault {other:?} (kill, pause, term)"),
    };
    if target == Target::Coordinator && kind != FaultKind::Kill {
        bail!("only kill applies to the coordinator");
    }
    Ok(Fault { kind, target, at_step })
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
        if !matches!(*kind, "kill" | "pause" | "term" | "coordinator") {
            bail!("unknown kind {kind:?} (kill, pause, term, coordinator)");
        }
    }
    let mut rng = SplitMix64(seed);
    let mut faults = Vec::new();
    let mut next_allowed = 5;
    for step in 5..total_steps.saturating_sub(2) {
        if step < next_allowed || rng.unit() >= rate / 100.0 {
            continue;
        }
        let kind = kinds[rng.below(kinds.len())];
        let worker = Target::Worker(rng.below(workers));
        let (kind, target) = match kind {
            "kill" => (FaultKind::Kill, worker),
            "term" => (FaultKind::Term, worker),
            "pause" => {
                (FaultKind::Pause(Duration::from_millis(500 + 500 * rng.below(8) as u64)), worker)
            }
            _ => (FaultKind::Kill, Target::Coordinator),
        };
        faults.push(Fault { kind, target, at_step: step });
        next_allowed = step + 5;
    }
    Ok(faults)
}

/// A tiny deterministic generator (SplitMix64): the schedule must replay from its seed on any
/// build, so it does not depend on a crate's algorithm choices.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
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
}

/// `chaos-report.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChaosReport {
    pub faults: Vec<FaultOutcome>,
    pub total_faults: usize,
    pub max_next_commit_ms: Option<u64>,
    pub mean_next_commit_ms: Option<f64>,
    pub aborted_steps: u64,
    pub final_step: u64,
    pub samples_lost: u64,
    pub samples_duplicated: u64,
    pub replica_hashes_agree: bool,
}

/// One line of the coordinator's `events.jsonl` (the fields the report uses).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct EventLine {
    pub unix_ms: u64,
    pub event: String,
}

/// Reads the coordinator's events log (missing: none; torn or foreign lines are skipped).
pub fn read_events(path: &std::path::Path) -> Vec<EventLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const REACTIONS: [&str; 5] = ["evicted", "left", "aborted", "generation_changed", "started"];

/// Joins the injections with the metrics and events logs (and the run's summary for the
/// ledger).
pub fn report(
    injections: &[Injection],
    lines: &[MetricsLine],
    events: &[EventLine],
    summary: &Summary,
) -> ChaosReport {
    let faults: Vec<FaultOutcome> = injections
        .iter()
        .map(|inj| {
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
            }
        })
        .collect();
    let times: Vec<u64> = faults.iter().filter_map(|f| f.next_commit_ms).collect();
    ChaosReport {
        total_faults: faults.len(),
        max_next_commit_ms: times.iter().max().copied(),
        mean_next_commit_ms: (!times.is_empty())
            .then(|| times.iter().sum::<u64>() as f64 / times.len() as f64),
        aborted_steps: summary.aborted_steps,
        final_step: summary.final_step,
        samples_lost: summary.samples_lost,
        samples_duplicated: summary.samples_duplicated,
        replica_hashes_agree: summary.replica_hashes_agree,
        faults,
    }
}

/// The report as a table for the terminal.
pub fn table(r: &ChaosReport) -> String {
    let mut out = format!(
        "{:<18} {:<12} {:>6} {:>12} {:>10} {:>12} {:>8}\n",
        "fault", "target", "step", "detected ms", "next step", "recovery ms", "aborted"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    for f in &r.faults {
        out.push_str(&format!(
            "{:<18} {:<12} {:>6} {:>12} {:>10} {:>12} {:>8}\n",
            f.injection.kind,
            f.injection.target,
            f.injection.injected_after_step,
            opt(f.detected_ms),
            opt(f.next_commit_step),
            opt(f.next_commit_ms),
            f.aborted_steps
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
    }

    #[test]
    fn mistakes_are_named() {
        for (spec, expected) in [
            ("kill:worker-2@step=5", "worker-2 does not exist"),
            ("kill:worker-0@step=100", "outside the run"),
            ("pause:worker-0@step=5", "pause needs a duration"),
            ("partition:worker-0@step=5+1s", "network namespaces"),
            ("smash:worker-0@step=5", "unknown fault"),
            ("kill:worker-0", "TARGET@step=N"),
            ("term:coordinator@step=5", "only kill"),
            ("random:rate=5", "seed"),
        ] {
            let err = parse(spec, 2, 100).expect_err(spec);
            assert!(format!("{err:#}").contains(expected), "{spec}: {err:#}");
        }
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
