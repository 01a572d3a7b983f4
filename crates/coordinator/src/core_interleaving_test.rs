//! Generated interleavings against the decision core: three simulated workers follow the
//! protocol (join, ask, heal, compute for a while, vote, poll, apply) while generated events
//! kill, restart, pause and resume them, make them leave, and let time pass with heartbeats.
//! Computations last up to twice the join grace, as albert-base steps do.
//!
//! After every call into the core the test checks what issue 25 asks for:
//! - the core never rolls back while a live member (heard within its heartbeat timeout, not
//!   evicted, not disqualified) truly holds the committed step, unless it evicted that member
//!   for being wedged (heartbeating without asking for a quorum for a step deadline);
//! - an undone step is reported with the cursor its samples restart from, and never rolls
//!   forward;
//! - a heal source truly holds the step it is named for, and decided steps follow each other.

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    DataCursor, Decision, Generation, Heartbeat, HeartbeatAction, JoinRequest, LeaveRequest,
    QuorumOutcome, QuorumRequest, StateHash, StepStats, StepTag, Vote, VoteOutcome, WorkerPhase,
};
use proptest::prelude::*;

use crate::commit::VoteStatus;
use crate::core_test::{EPOCH, Sim, w};
use crate::effect::Effect;
use crate::error::CoordinatorError;

const WORKERS: usize = 3;
const IDS: [&str; WORKERS] = ["a", "b", "c"];
/// The test job's global batch.
const GLOBAL_BATCH: u64 = 12;

#[derive(Debug, Clone)]
enum Op {
    /// Milliseconds pass; running workers heartbeat every 250 ms; the core ticks.
    Pass(u64),
    /// Worker `i` takes its next protocol step.
    Act(usize),
    Kill(usize),
    Restart(usize),
    Pause(usize),
    Resume(usize),
    Leave(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (50u64..1500).prop_map(Op::Pass),
        12 => (0..WORKERS).prop_map(Op::Act),
        1 => (0..WORKERS).prop_map(Op::Kill),
        2 => (0..WORKERS).prop_map(Op::Restart),
        1 => (0..WORKERS).prop_map(Op::Pause),
        1 => (0..WORKERS).prop_map(Op::Resume),
        1 => (0..WORKERS).prop_map(Op::Leave),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Computing {
        tag: StepTag,
        done_at: Instant,
    },
    /// Voted ok on `tag`; waiting for the decision.
    Voted {
        tag: StepTag,
    },
}

#[derive(Debug)]
struct Worker {
    id: &'static str,
    inc: u64,
    /// The process runs (a killed or finished one does not).
    alive: bool,
    paused: bool,
    joined: bool,
    /// The step whose state it truly holds.
    holds: u64,
    compute: Duration,
    phase: Phase,
}

impl Worker {
    fn running(&self) -> bool {
        self.alive && !self.paused
    }
}

/// Every replica of a step has the same state.
fn hash_of(step: u64) -> Option<StateHash> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&step.to_le_bytes());
    Some(StateHash(bytes))
}

struct World {
    sim: Sim,
    workers: Vec<Worker>,
}

impl World {
    fn new(compute_ms: &[u64]) -> Self {
        let mut sim = Sim::new();
        sim.core.cfg.min_workers = 1;
        let workers = IDS
            .iter()
            .zip(compute_ms)
            .map(|(id, ms)| Worker {
                id,
                inc: 1,
                alive: true,
                paused: false,
                joined: false,
                holds: 0,
                compute: Duration::from_millis(*ms),
                phase: Phase::Idle,
            })
            .collect();
        Self { sim, workers }
    }

    /// The workers the core must not roll past at `now`: registered under their current
    /// incarnation, heard within the heartbeat timeout, not disqualified, truly holding the
    /// committed step (or about to apply it: voted ok on the tag that committed it), and known
    /// to: it said so at its join or quorum request, or voted the step in. (A worker that
    /// healed in a step that then aborted holds the step before it can say so; it says so in
    /// its next request, which a live worker makes at once.)
    fn live_holders(&self, now: Instant) -> Vec<usize> {
        let core = &self.sim.core;
        let committed = core.durable.committed_step;
        let committed_tag =
            StepTag { generation: core.durable.committed_generation, step: committed };
        let timeout = core.cfg.heartbeat_timeout;
        (0..WORKERS)
            .filter(|&i| {
                let wk = &self.workers[i];
                let Some(m) = core.members.by_id(&w(wk.id, wk.inc).id) else { return false };
                let holds =
                    wk.holds == committed || wk.phase == Phase::Voted { tag: committed_tag };
                m.worker.incarnation == wk.inc
                    && now.saturating_duration_since(m.last_heard) <= timeout
                    && m.holds(committed)
                    && holds
            })
            .collect()
    }

    /// Checks the effects of one call into the core, given the live holders before it.
    fn check(&mut self, holders: &[usize], committed_before: u64) -> Result<(), TestCaseError> {
        let effects = self.sim.effects();
        let wedged: Vec<String> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Evicted { worker, reason, .. }
                    if reason.contains("asked for no quorum") =>
                {
                    Some(worker.id.to_string())
                }
                _ => None,
            })
            .collect();
        let mut committed = committed_before;
        for effect in &effects {
            match effect {
                Effect::RolledBack { from_step, to_step, cursor, reason } => {
                    let waited_for: Vec<&str> = holders
                        .iter()
                        .map(|&i| self.workers[i].id)
                        .filter(|id| !wedged.iter().any(|w| w == id))
                        .collect();
                    prop_assert!(
                        waited_for.is_empty(),
                        "rolled back from {from_step} while {waited_for:?} held it live: {reason}"
                    );
                    prop_assert!(to_step < from_step, "rolled forward: {effect:?}");
                    prop_assert_eq!(*from_step, committed);
                    let expected = if *to_step == 0 {
                        DataCursor::default()
                    } else {
                        DataCursor::after_steps(*to_step, GLOBAL_BATCH, EPOCH)
                    };
                    prop_assert_eq!(
                        *cursor,
                        expected,
                        "samples restart where step {} left",
                        to_step
                    );
                    committed = *to_step;
                }
                Effect::Committed { tag, .. } | Effect::Skipped { tag, .. } => {
                    prop_assert_eq!(tag.step, committed + 1, "decided out of order: {:?}", effect);
                    committed = tag.step;
                }
                _ => {}
            }
        }
        prop_assert_eq!(committed, self.sim.core.durable.committed_step);
        Ok(())
    }

    /// Runs `call` against the core and checks what it decided.
    fn call<T>(&mut self, call: impl FnOnce(&mut Self) -> T) -> Result<T, TestCaseError> {
        let holders = self.live_holders(self.sim.now);
        let before = self.sim.core.durable.committed_step;
        let out = call(self);
        self.check(&holders, before)?;
        Ok(out)
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Pass(ms) => {
                let mut left = ms;
                while left > 0 {
                    let step = left.min(250);
                    left -= step;
                    self.sim.wait(step as f64 / 1000.0);
                    for i in 0..WORKERS {
                        self.beat(i)?;
                    }
                    let now = self.sim.now;
                    self.call(|world| world.sim.core.tick(now))?;
                }
            }
            Op::Act(i) => self.act(i)?,
            Op::Kill(i) => self.workers[i].alive = false,
            Op::Restart(i) if !self.workers[i].alive => {
                let wk = &mut self.workers[i];
                wk.inc += 1;
                (wk.alive, wk.paused, wk.joined, wk.holds, wk.phase) =
                    (true, false, false, 0, Phase::Idle);
            }
            Op::Restart(_) => {}
            Op::Pause(i) => self.workers[i].paused = true,
            Op::Resume(i) => self.workers[i].paused = false,
            Op::Leave(i) if self.workers[i].running() && self.workers[i].joined => {
                let worker = w(self.workers[i].id, self.workers[i].inc);
                let now = self.sim.now;
                let request = LeaveRequest { worker, reason: "scale-down".into() };
                let left = self.call(|world| world.sim.core.leave(now, &request))?;
                prop_assert!(left.is_ok(), "{left:?}");
                self.workers[i].alive = false;
            }
            Op::Leave(_) => {}
        }
        Ok(())
    }

    fn beat(&mut self, i: usize) -> Result<(), TestCaseError> {
        let wk = &self.workers[i];
        if !wk.running() || !wk.joined {
            return Ok(());
        }
        let generation = self.sim.core.generation();
        let (tag, phase) = match wk.phase {
            Phase::Idle => {
                (StepTag { generation, step: wk.holds + 1 }, WorkerPhase::AwaitingQuorum)
            }
            Phase::Computing { tag, .. } => (tag, WorkerPhase::Computing),
            Phase::Voted { tag } => (tag, WorkerPhase::Voting),
        };
        let hb = Heartbeat { worker: w(wk.id, wk.inc), tag, phase };
        let now = self.sim.now;
        let reply = self.call(|world| world.sim.core.heartbeat(now, &hb))?;
        let wk = &mut self.workers[i];
        match reply.action {
            HeartbeatAction::Continue => {}
            HeartbeatAction::AbortStep => {
                if matches!(wk.phase, Phase::Computing { .. }) {
                    wk.phase = Phase::Idle;
                }
            }
            HeartbeatAction::Rejoin => {
                wk.joined = false;
                if matches!(wk.phase, Phase::Computing { .. }) {
                    wk.phase = Phase::Idle;
                }
            }
            HeartbeatAction::Shutdown => wk.alive = false,
        }
        Ok(())
    }

    fn act(&mut self, i: usize) -> Result<(), TestCaseError> {
        if !self.workers[i].running() {
            return Ok(());
        }
        let now = self.sim.now;
        let me = w(self.workers[i].id, self.workers[i].inc);
        if !self.workers[i].joined {
            let req = JoinRequest {
                worker: me.clone(),
                advertise_address: format!("{}:7000", self.workers[i].id),
                build: albatross_proto::domain::BuildInfo::current(),
                expected_job_fingerprint: None,
                data_fingerprint: None,
                applied_step: Some(self.workers[i].holds),
                kernel_set: None,
            };
            let accepted = self.call(|world| world.sim.core.join(now, &req))?;
            let accepted = accepted.map_err(|e| TestCaseError::fail(format!("join: {e}")))?;
            let wk = &mut self.workers[i];
            wk.joined = true;
            // A vote whose answer was lost is settled on rejoin.
            if let Phase::Voted { tag } = wk.phase {
                let committed = StepTag {
                    generation: accepted.committed_generation,
                    step: accepted.committed_step,
                };
                if committed == tag {
                    wk.holds = tag.step;
                }
            }
            wk.phase = Phase::Idle;
            return Ok(());
        }
        match self.workers[i].phase {
            Phase::Idle => {
                let holds = self.workers[i].holds;
                let req = QuorumRequest {
                    worker: me,
                    step: holds + 1,
                    applied_step: holds,
                    state_hash: hash_of(holds),
                    known_members_generation: Generation(0),
                };
                let outcome = self.call(|world| world.sim.core.await_quorum(now, &req))?;
                match outcome {
                    Ok(QuorumOutcome::Ready(q)) => {
                        if let Some(heal) = &q.heal {
                            // A source that still runs must truly hold the step; one that died
                            // since it asked (the core does not know yet) fails the transfer.
                            let source = self
                                .workers
                                .iter()
                                .find(|s| s.alive && w(s.id, s.inc) == heal.source.worker);
                            let Some(source) = source else {
                                return self.vote_as(i, q.tag, VoteOutcome::Error("heal".into()));
                            };
                            prop_assert_eq!(
                                source.holds,
                                heal.target_step,
                                "{} heals from {} which holds another step",
                                self.workers[i].id,
                                source.id
                            );
                            self.workers[i].holds = heal.target_step;
                        }
                        let wk = &mut self.workers[i];
                        if wk.holds + 1 != q.tag.step {
                            return self.vote_as(i, q.tag, VoteOutcome::Error("behind".into()));
                        }
                        wk.phase = Phase::Computing { tag: q.tag, done_at: now + wk.compute };
                    }
                    Ok(QuorumOutcome::NotYet(_)) => {}
                    Ok(QuorumOutcome::Rewind(r)) => {
                        prop_assert!(holds > r.committed_step);
                        self.workers[i].holds = 0;
                    }
                    Ok(QuorumOutcome::Finished(_)) => self.workers[i].alive = false,
                    Err(CoordinatorError::UnknownWorker(_)) => self.workers[i].joined = false,
                    Err(e) => return Err(TestCaseError::fail(format!("quorum request: {e}"))),
                }
            }
            Phase::Computing { tag, done_at } if now >= done_at => {
                self.vote_as(i, tag, VoteOutcome::Ok)?;
            }
            Phase::Computing { .. } => {}
            Phase::Voted { tag } => self.vote_as(i, tag, VoteOutcome::Ok)?,
        }
        Ok(())
    }

    fn vote_as(
        &mut self,
        i: usize,
        tag: StepTag,
        outcome: VoteOutcome,
    ) -> Result<(), TestCaseError> {
        let now = self.sim.now;
        let wk = &self.workers[i];
        let vote = Vote {
            worker: w(wk.id, wk.inc),
            tag,
            outcome,
            non_finite: false,
            state_hash: hash_of(wk.holds),
            stats: StepStats::default(),
        };
        let status = self.call(|world| world.sim.core.vote(now, &vote))?;
        let wk = &mut self.workers[i];
        match status {
            // Polled until decided, an error vote too: the tag is never run again.
            Ok(VoteStatus::Pending { .. }) => wk.phase = Phase::Voted { tag },
            Ok(VoteStatus::Decided(d)) => {
                if matches!(d.decision, Decision::Commit | Decision::Skip) {
                    wk.holds = tag.step;
                }
                wk.phase = Phase::Idle;
            }
            Err(CoordinatorError::UnknownWorker(_)) => {
                wk.joined = false;
                wk.phase = Phase::Voted { tag };
            }
            // Aborted long ago, another generation, not a member any more: abandoned.
            Err(_) => wk.phase = Phase::Idle,
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_rollback_past_a_live_holder_in_any_interleaving(
        compute_ms in proptest::collection::vec(100u64..4000, WORKERS),
        ops in proptest::collection::vec(op(), 50..400),
    ) {
        let mut world = World::new(&compute_ms);
        for op in &ops {
            world.apply(op)?;
        }
    }
}
