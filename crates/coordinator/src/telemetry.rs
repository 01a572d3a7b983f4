//! Metrics and recent history for operators, fed from the core's effects by the actor. The
//! Prometheus recorder is owned here (not installed globally), so several coordinators can run in
//! one process (tests) and `/metrics` shows only this one's figures.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::core::Core;
use crate::effect::Effect;

/// Events kept for the status page.
const RECENT_EVENTS: usize = 64;
/// Loss points kept for the status page's curve.
const LOSS_POINTS: usize = 1000;
/// How often histogram summaries are compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The coordinator's metrics and short history.
pub(crate) struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    started: Instant,
    last_commit: Option<Instant>,
    last_upkeep: Instant,
    pub recent: VecDeque<(f64, String)>,
    pub losses: VecDeque<(u64, f64)>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("recent", &self.recent.len()).finish_non_exhaustive()
    }
}

impl Telemetry {
    pub fn new(now: Instant) -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        Self {
            recorder,
            handle,
            started: now,
            last_commit: None,
            last_upkeep: now,
            recent: VecDeque::new(),
            losses: VecDeque::new(),
        }
    }

    /// A handle that renders the Prometheus text.
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }

    /// Account for what the core just decided.
    pub fn observe(&mut self, now: Instant, core: &Core, effects: &[Effect]) {
        let recorder = &self.recorder;
        let mut recent = Vec::new();
        metrics::with_local_recorder(recorder, || {
            for effect in effects {
                match effect {
                    Effect::Committed { .. } => {
                        let stats = core.last_step_stats();
                        if let Some(prev) = self.last_commit {
                            let secs = now.saturating_duration_since(prev).as_secs_f64();
                            histogram!("albatross_step_seconds").record(secs);
                            if secs > 0.0 {
                                gauge!("albatross_tokens_per_second")
                                    .set(stats.tokens as f64 / secs);
                            }
                        }
                        self.last_commit = Some(now);
                        if let Some(loss) = loss(&stats) {
                            gauge!("albatross_loss").set(loss);
                            if self.losses.len() == LOSS_POINTS {
                                self.losses.pop_front();
                            }
                            self.losses.push_back((core.durable().committed_step, loss));
                        }
                    }
                    Effect::Skipped { .. } => {
                        // No update was applied: not a step for the throughput and loss
                        // figures, and not a recovery from a failure either.
                        counter!("albatross_skipped_steps_total").increment(1);
                    }
                    Effect::Aborted { .. } => {
                        counter!("albatross_aborted_steps_total").increment(1);
                    }
                    Effect::Evicted { detected_after, .. } => {
                        histogram!("albatross_failure_detection_seconds")
                            .record(detected_after.as_secs_f64());
                    }
                    // The core's recovery (see `Durable::recoveries`): the count and the time
                    // come from the same episode, so they cannot disagree.
                    Effect::Recovered { after, .. } => {
                        counter!("albatross_recoveries_total").increment(1);
                        histogram!("albatross_recovery_seconds").record(after.as_secs_f64());
                    }
                    _ => {}
                }
                recent.push(describe(effect));
            }
            gauge!("albatross_members").set(core.registered() as f64);
            gauge!("albatross_generation").set(core.generation().0 as f64);
            gauge!("albatross_committed_step").set(core.durable().committed_step as f64);
        });
        let at = now.saturating_duration_since(self.started).as_secs_f64();
        for text in recent {
            if self.recent.len() == RECENT_EVENTS {
                self.recent.pop_front();
            }
            self.recent.push_back((at, text));
        }
        if now.saturating_duration_since(self.last_upkeep) >= UPKEEP_EVERY {
            self.handle.run_upkeep();
            self.last_upkeep = now;
        }
    }
}

/// The pretraining loss of a step: mean MLM loss per masked token plus mean SOP loss per sample.
fn loss(s: &albatross_proto::domain::StepStats) -> Option<f64> {
    if s.masked_tokens == 0 || s.samples == 0 {
        return None;
    }
    Some(s.mlm_loss_sum / s.masked_tokens as f64 + s.sop_loss_sum / s.samples as f64)
}

/// One line for the status page.
fn describe(effect: &Effect) -> String {
    match effect {
        Effect::Joined { worker, replaced: None } => format!("{worker} joined"),
        Effect::Joined { worker, replaced: Some(old) } => {
            format!("{worker} joined, replacing {old}")
        }
        Effect::Left { worker, reason } => format!("{worker} left: {reason}"),
        Effect::Evicted { worker, reason, .. } => format!("{worker} evicted: {reason}"),
        Effect::GenerationChanged { to, reason, .. } => format!("generation {to}: {reason}"),
        Effect::QuorumFormed { tag, members, reason, .. } => {
            format!("quorum {tag} of {} members: {reason}", members.len())
        }
        Effect::Committed { tag, .. } => format!("{tag} committed"),
        Effect::Skipped { tag, reason, .. } => format!("{tag} skipped: {reason}"),
        Effect::Aborted { tag, reason, .. } => format!("{tag} aborted: {reason}"),
        Effect::SuspicionNotConfirmed { reporter, suspect, reason } => {
            format!("{reporter} suspects {suspect} (not confirmed): {reason}")
        }
        Effect::CheckpointRequested { worker, directive } => {
            format!("checkpoint of step {} asked of {worker}", directive.step)
        }
        Effect::CheckpointRecorded { checkpoint } => {
            format!("checkpoint of step {} recorded at {}", checkpoint.step, checkpoint.path)
        }
        Effect::CheckpointFailed { worker, step, error } => {
            format!("checkpoint of step {step} by {worker} failed: {error}")
        }
        Effect::Rewound { worker, held_step, committed_step, .. } => {
            format!("{worker} told to drop step {held_step}: the job is at step {committed_step}")
        }
        Effect::Recovered { step, cause, after } => {
            format!("recovered at step {step}, {:.1} s after {cause}", after.as_secs_f64())
        }
        Effect::RolledBack { reason, to_step, .. } => {
            format!("rolled back to step {to_step}: {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_test::{Sim, w};
    use albatross_proto::domain::{Generation, StepTag};

    #[test]
    fn metrics_follow_the_effects() {
        let mut sim = Sim::new();
        sim.join("a", 1).expect("join");
        let mut t = Telemetry::new(sim.now);
        let effects = sim.effects();
        t.observe(sim.now, &sim.core, &effects);
        let tag = StepTag { generation: Generation(1), step: 1 };
        let aborted = Effect::Aborted { tag, reason: "x".into(), divergent: vec![] };
        t.observe(sim.now, &sim.core, &[aborted]);
        let text = t.handle().render();
        for line in
            ["albatross_members 1", "albatross_generation 1", "albatross_aborted_steps_total 1"]
        {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        let recent: Vec<&str> = t.recent.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(recent, ["a#1 joined", "g1/step 1 aborted: x"]);
        assert_eq!(w("a", 1).to_string(), "a#1");
    }
}
