//! The fault schedule: its grammar (see the module above), the random generator, and what
//! each fault was when it was injected.

use std::time::Duration;

use albatross_rng::SplitMix64;
use anyhow::{Context, bail};

use crate::fleet::worker_name;
use crate::netfault::NetFault;

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
