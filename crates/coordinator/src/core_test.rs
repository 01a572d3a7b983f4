//! Event-driven tests of the decision core with an injected clock: each asserts the exact
//! replies and the exact list of effects.

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    BuildInfo, CheckpointDirective, CheckpointRef, CheckpointReport, DataCursor, Decision,
    Generation, Heartbeat, HeartbeatAction, JoinRequest, LeaveRequest, PeerFailureReport, Quorum,
    QuorumOutcome, QuorumRequest, SampleRange, Sha256Digest, StateHash, StepStats, StepTag, Vote,
    VoteOutcome, WorkerId, WorkerPhase, WorkerRef,
};
use albatross_proto::job::JobSpec;

use crate::commit::VoteStatus;
use crate::config::CoreConfig;
use crate::core::Core;
use crate::effect::Durable;
use crate::effect::Effect;
use crate::error::CoordinatorError;

pub(crate) const JOB: &str = r#"
name = "test-job"
[model]
preset = "tiny"
[data]
dir = "data"
max_seq_length = 64
[optimizer]
total_steps = 6
warmup_steps = 1
[batch]
global_batch_size = 12
micro_batch_size = 2
[fault_tolerance]
min_workers = 2
max_workers = 3
heartbeat_interval = "1s"
heartbeat_timeout = "5s"
step_deadline = "60s"
join_grace = "2s"
[checkpoint]
dir = "/ckpt"
every_steps = 2
"#;

/// Epoch of 20 samples: a step of 12 crosses the boundary every other step.
pub(crate) const EPOCH: u64 = 20;

pub(crate) fn job() -> JobSpec {
    JobSpec::from_toml_str(JOB, "test").expect("valid test job")
}

pub(crate) fn w(id: &str, incarnation: u64) -> WorkerRef {
    WorkerRef { id: WorkerId::new(id).expect("valid id"), incarnation }
}

pub(crate) fn r(epoch: u64, start: u64, end: u64) -> SampleRange {
    SampleRange { epoch, start, end }
}

pub(crate) fn tag(generation: u64, step: u64) -> StepTag {
    StepTag { generation: Generation(generation), step }
}

pub(crate) fn hash(n: u8) -> Option<StateHash> {
    Some(StateHash([n; 32]))
}

pub(crate) struct Sim {
    pub core: Core,
    pub now: Instant,
}

impl Sim {
    pub fn new() -> Self {
        Self::restored(None)
    }

    pub fn restored(durable: Option<Durable>) -> Self {
        let cfg = CoreConfig::from_job(&job(), EPOCH).expect("valid config");
        Self { core: Core::new(cfg, &job(), durable, "test-instance"), now: Instant::now() }
    }

    pub fn wait(&mut self, secs: f64) {
        self.now += Duration::from_secs_f64(secs);
    }

    pub fn join(
        &mut self,
        id: &str,
        inc: u64,
    ) -> Result<albatross_proto::domain::JoinAccepted, CoordinatorError> {
        self.join_declaring(id, inc, None)
    }

    /// [`Self::join`] declaring `kernel_set`.
    pub fn join_declaring(
        &mut self,
        id: &str,
        inc: u64,
        kernel_set: Option<&str>,
    ) -> Result<albatross_proto::domain::JoinAccepted, CoordinatorError> {
        let req = JoinRequest {
            worker: w(id, inc),
            advertise_address: format!("{id}:7000"),
            build: BuildInfo::current(),
            expected_job_fingerprint: None,
            data_fingerprint: None,
            applied_step: None,
            kernel_set: kernel_set.map(str::to_owned),
        };
        self.core.join(self.now, &req)
    }

    pub fn ask(&mut self, id: &str, inc: u64, step: u64, applied: u64) -> QuorumOutcome {
        let req = QuorumRequest {
            worker: w(id, inc),
            step,
            applied_step: applied,
            state_hash: None,
            known_members_generation: albatross_proto::domain::Generation(0),
        };
        self.core.await_quorum(self.now, &req).expect("quorum request accepted")
    }

    pub fn vote(
        &mut self,
        id: &str,
        tag: StepTag,
        outcome: VoteOutcome,
        non_finite: bool,
        h: Option<StateHash>,
    ) -> Result<VoteStatus, CoordinatorError> {
        let vote = Vote {
            worker: w(id, 1),
            tag,
            outcome,
            non_finite,
            state_hash: h,
            stats: StepStats::default(),
        };
        self.core.vote(self.now, &vote)
    }

    pub fn ok(&mut self, id: &str, tag: StepTag) -> VoteStatus {
        self.vote(id, tag, VoteOutcome::Ok, false, hash(1)).expect("vote accepted")
    }

    pub fn beat(
        &mut self,
        id: &str,
        tag: StepTag,
        phase: WorkerPhase,
    ) -> (HeartbeatAction, String) {
        let reply = self.core.heartbeat(self.now, &Heartbeat { worker: w(id, 1), tag, phase });
        (reply.action, reply.reason)
    }

    /// A heartbeat from incarnation `inc` of `id`.
    pub fn beat_as(
        &mut self,
        id: &str,
        inc: u64,
        tag: StepTag,
        phase: WorkerPhase,
    ) -> HeartbeatAction {
        self.core.heartbeat(self.now, &Heartbeat { worker: w(id, inc), tag, phase }).action
    }

    pub fn effects(&mut self) -> Vec<Effect> {
        self.core.drain_effects()
    }
}

pub(crate) fn ready(outcome: QuorumOutcome) -> Quorum {
    match outcome {
        QuorumOutcome::Ready(q) => q,
        other => panic!("expected a quorum, got {other:?}"),
    }
}

pub(crate) fn not_yet(outcome: QuorumOutcome) -> String {
    match outcome {
        QuorumOutcome::NotYet(n) => n.reason,
        other => panic!("expected NotYet, got {other:?}"),
    }
}

pub(crate) fn decided(
    status: VoteStatus,
) -> (Decision, String, Vec<WorkerRef>, Option<CheckpointDirective>) {
    match status {
        VoteStatus::Decided(d) => (d.decision, d.reason, d.divergent, d.checkpoint),
        other => panic!("expected a decision, got {other:?}"),
    }
}

pub(crate) fn joined(id: &str) -> Effect {
    Effect::Joined { worker: w(id, 1), replaced: None }
}

/// Two workers joined and in the quorum of step 1 under generation 1.
pub(crate) fn two_running() -> Sim {
    let mut s = Sim::new();
    s.join("a", 1).expect("join a");
    s.join("b", 1).expect("join b");
    assert!(matches!(s.ask("a", 1, 1, 0), QuorumOutcome::NotYet(_)));
    ready(s.ask("b", 1, 1, 0));
    s.effects();
    s
}

/// Every worker asks for `step`; returns each one's quorum (asking twice, as pollers do).
pub(crate) fn round(s: &mut Sim, ids: &[&str], step: u64, applied: u64) -> Vec<Quorum> {
    for id in ids {
        s.ask(id, 1, step, applied);
    }
    ids.iter().map(|id| ready(s.ask(id, 1, step, applied))).collect()
}

pub(crate) fn commit_step(s: &mut Sim, ids: &[&str], t: StepTag) {
    for id in ids {
        s.ok(id, t);
    }
}

#[test]
fn first_quorum_waits_for_min_workers_then_forms_when_all_are_ready() {
    let mut s = Sim::new();
    s.join("b", 1).expect("join b");
    assert_eq!(not_yet(s.ask("b", 1, 1, 0)), "1 of 1 live workers are ready; min_workers is 2");
    s.join("a", 1).expect("join a");
    let qa = ready(s.ask("a", 1, 1, 0));
    assert_eq!(qa.tag, tag(1, 1));
    assert_eq!(
        qa.members.iter().map(|m| m.worker.clone()).collect::<Vec<_>>(),
        [w("a", 1), w("b", 1)]
    );
    assert_eq!(
        (qa.rank, qa.samples.clone(), qa.global_samples, qa.heal.clone()),
        (0, vec![r(0, 0, 6)], 12, None)
    );
    let qb = ready(s.ask("b", 1, 1, 0));
    assert_eq!((qb.rank, qb.samples), (1, vec![r(0, 6, 12)]));
    assert_eq!(
        s.effects(),
        [
            joined("b"),
            joined("a"),
            Effect::QuorumFormed {
                tag: tag(1, 1),
                members: vec![w("a", 1), w("b", 1)],
                healing: vec![],
                fast: false,
                reason: "all 2 live workers are ready".into(),
            }
        ]
    );
}

#[test]
fn commit_advances_the_cursor_across_the_epoch_and_fast_quorum_keeps_the_generation() {
    let mut s = two_running();
    assert_eq!(s.ok("a", tag(1, 1)), VoteStatus::Pending { voted: 1, members: 2 });
    let (d, reason, divergent, ckpt) = decided(s.ok("b", tag(1, 1)));
    assert_eq!(
        (d, reason.as_str(), divergent, ckpt),
        (Decision::Commit, "all 2 members voted ok with the same state hash", vec![], None)
    );
    // a's poll after the decision gets the same answer.
    assert_eq!(decided(s.ok("a", tag(1, 1))).0, Decision::Commit);
    assert_eq!(s.core.durable().cursor, DataCursor { epoch: 0, next_sample: 12 });
    assert_eq!(not_yet(s.ask("a", 1, 2, 1)), "1 of 2 live workers are ready; min_workers is 2");
    let q = ready(s.ask("b", 1, 2, 1));
    assert_eq!((q.tag, q.samples), (tag(1, 2), vec![r(0, 18, 20), r(1, 0, 4)]));
    assert_eq!(ready(s.ask("a", 1, 2, 1)).samples, vec![r(0, 12, 18)]);
    assert_eq!(
        s.effects(),
        [
            Effect::Committed { tag: tag(1, 1), cursor: DataCursor { epoch: 0, next_sample: 12 } },
            Effect::QuorumFormed {
                tag: tag(1, 2),
                members: vec![w("a", 1), w("b", 1)],
                healing: vec![],
                fast: true,
                reason: "fast quorum: every member of the previous quorum is ready (2 ready)"
                    .into(),
            }
        ]
    );
}

#[test]
fn checkpoints_are_asked_every_n_steps_and_recorded_when_reported() {
    let mut s = two_running();
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    round(&mut s, &["a", "b"], 2, 1);
    s.ok("a", tag(1, 2));
    let directive = CheckpointDirective { step: 2, path: "/ckpt/step-00000002".into() };
    // Step 2 / every 2 = 1 → rank 1 (b) writes; a is not asked.
    assert_eq!(decided(s.ok("b", tag(1, 2))).3, Some(directive.clone()));
    assert_eq!(decided(s.ok("a", tag(1, 2))).3, None);
    let cursor = DataCursor { epoch: 1, next_sample: 4 };
    assert_eq!(
        s.effects()[2..],
        [
            Effect::Committed { tag: tag(1, 2), cursor },
            Effect::CheckpointRequested { worker: w("b", 1), directive },
        ]
    );
    let mut ckpt = CheckpointRef {
        step: 2,
        path: "/ckpt/step-00000002".into(),
        manifest_sha256: Sha256Digest([7; 32]),
        cursor,
    };
    let wrong = CheckpointReport { worker: w("a", 1), checkpoint: ckpt.clone(), result: Ok(()) };
    assert_eq!(
        s.core.report_checkpoint(s.now, &wrong).expect_err("not asked of a").to_string(),
        "no checkpoint of step 2 was asked of a#1"
    );
    ckpt.cursor = DataCursor::default();
    let bad_cursor =
        CheckpointReport { worker: w("b", 1), checkpoint: ckpt.clone(), result: Ok(()) };
    assert!(matches!(
        s.core.report_checkpoint(s.now, &bad_cursor),
        Err(CoordinatorError::InvalidArgument(_))
    ));
    ckpt.cursor = cursor;
    let good = CheckpointReport { worker: w("b", 1), checkpoint: ckpt.clone(), result: Ok(()) };
    s.core.report_checkpoint(s.now, &good).expect("recorded");
    assert_eq!(s.effects(), [Effect::CheckpointRecorded { checkpoint: ckpt.clone() }]);
    assert_eq!(s.core.durable().latest_checkpoint, Some(ckpt));
}

#[test]
fn hash_mismatch_aborts_names_the_divergent_worker_and_retries_the_same_samples() {
    let mut s = Sim::new();
    for id in ["a", "b", "c"] {
        s.join(id, 1).expect("join");
    }
    let samples: Vec<Vec<SampleRange>> =
        round(&mut s, &["a", "b", "c"], 1, 0).into_iter().map(|q| q.samples).collect();
    s.effects();
    s.vote("a", tag(1, 1), VoteOutcome::Ok, false, hash(1)).expect("vote");
    s.vote("b", tag(1, 1), VoteOutcome::Ok, false, hash(2)).expect("vote");
    let (d, reason, divergent, _) =
        decided(s.vote("c", tag(1, 1), VoteOutcome::Ok, false, hash(1)).expect("vote"));
    assert_eq!((d, divergent.clone()), (Decision::Abort, vec![w("b", 1)]));
    assert_eq!(reason, "state hash mismatch: b#1 differ from the majority of 2");
    assert_eq!(
        s.effects(),
        [
            Effect::Aborted { tag: tag(1, 1), reason: reason.clone(), divergent },
            Effect::GenerationChanged {
                from: Generation(1),
                to: Generation(2),
                reason: "g1/step 1 aborted".into()
            },
        ]
    );
    assert_eq!(s.core.durable().cursor, DataCursor::default());
    assert_eq!(s.core.durable().aborted_steps, 1);
    // Retry: same step, new generation, same samples; b must heal from a healthy peer.
    let mut retry = round(&mut s, &["a", "b", "c"], 1, 0).into_iter();
    let (qa, qb, qc) =
        (retry.next().expect("a"), retry.next().expect("b"), retry.next().expect("c"));
    assert_eq!(qa.tag, tag(2, 1));
    assert_eq!(vec![qa.samples, qb.samples.clone(), qc.samples], samples);
    assert_eq!(qb.heal.map(|h| (h.source.worker, h.target_step)), Some((w("a", 1), 0)));
    // Old-generation votes are stale now.
    let err = s.vote("a", tag(2, 1), VoteOutcome::Ok, false, hash(1)).map(|_| ());
    assert!(err.is_ok());
    let stale = Vote {
        worker: w("a", 1),
        tag: tag(0, 1),
        outcome: VoteOutcome::Ok,
        non_finite: false,
        state_hash: None,
        stats: StepStats::default(),
    };
    assert_eq!(
        s.core.vote(s.now, &stale).expect_err("stale").to_string(),
        "generation g0 is stale: the coordinator is at g2"
    );
}

#[test]
fn non_finite_and_error_votes_abort_with_their_reasons() {
    let mut s = two_running();
    s.vote("a", tag(1, 1), VoteOutcome::Error("out of memory".into()), false, hash(1))
        .expect("vote");
    let (d, reason, _, _) =
        decided(s.vote("b", tag(1, 1), VoteOutcome::Ok, true, hash(1)).expect("vote"));
    assert_eq!(d, Decision::Abort);
    assert_eq!(reason, "a#1 failed: out of memory; b#1 saw non-finite loss or gradients");
    assert_eq!(s.core.durable().committed_step, 0);
}

#[test]
fn death_during_compute_evicts_aborts_and_resplits_the_same_samples() {
    let mut s = Sim::new();
    for id in ["a", "b", "c"] {
        s.join(id, 1).expect("join");
    }
    round(&mut s, &["a", "b", "c"], 1, 0);
    s.effects();
    s.wait(3.0);
    s.beat("a", tag(1, 1), WorkerPhase::Computing);
    s.beat("b", tag(1, 1), WorkerPhase::Computing);
    s.wait(2.5);
    s.core.tick(s.now);
    assert_eq!(
        s.effects(),
        [
            Effect::Evicted {
                worker: w("c", 1),
                reason: "no heartbeat for 5.5s (timeout 5s)".into(),
                detected_after: Duration::from_secs_f64(5.5)
            },
            Effect::Aborted {
                tag: tag(1, 1),
                reason: "c#1 evicted: no heartbeat for 5.5s (timeout 5s)".into(),
                divergent: vec![]
            },
            Effect::GenerationChanged {
                from: Generation(1),
                to: Generation(2),
                reason: "g1/step 1 aborted".into()
            },
        ]
    );
    assert_eq!(
        s.beat("a", tag(1, 1), WorkerPhase::Computing),
        (HeartbeatAction::AbortStep, "g1/step 1 was abandoned: the coordinator is at g2".into())
    );
    assert_eq!(s.beat("c", tag(1, 1), WorkerPhase::Computing).0, HeartbeatAction::Rejoin);
    let qb = round(&mut s, &["a", "b"], 1, 0).remove(1);
    assert_eq!((qb.tag, qb.samples), (tag(2, 1), vec![r(0, 6, 12)]));
    s.ok("a", tag(2, 1));
    assert_eq!(decided(s.ok("b", tag(2, 1))).0, Decision::Commit);
}

#[test]
fn peer_failure_report_is_confirmed_by_silence_or_a_second_reporter() {
    let mut s = Sim::new();
    for id in ["a", "b", "c"] {
        s.join(id, 1).expect("join");
    }
    assert_eq!(round(&mut s, &["a", "b", "c"], 1, 0)[0].world_size(), 3);
    s.effects();
    let report = |reporter: &str| PeerFailureReport {
        reporter: w(reporter, 1),
        tag: tag(1, 1),
        suspect: w("c", 1),
        reason: "connection reset".into(),
    };
    // c was heard from just now: one report alone is not enough.
    assert_eq!(
        s.core.report_peer_failure(s.now, &report("b")).expect("report"),
        (false, Generation(1))
    );
    assert_eq!(
        s.effects(),
        [Effect::SuspicionNotConfirmed {
            reporter: w("b", 1),
            suspect: w("c", 1),
            reason: "connection reset; last heartbeat 0ns ago".into()
        }]
    );
    // A second member reports it: confirmed.
    assert_eq!(
        s.core.report_peer_failure(s.now, &report("a")).expect("report"),
        (true, Generation(2))
    );
    let effects = s.effects();
    assert_eq!(
        effects[0],
        Effect::Evicted {
            worker: w("c", 1),
            reason: "reported by a#1: connection reset; reported by 2 members".into(),
            detected_after: Duration::ZERO
        }
    );
    assert!(matches!(&effects[1], Effect::Aborted { tag: t, .. } if *t == tag(1, 1)));
    // A report about the old generation is stale.
    assert!(matches!(
        s.core.report_peer_failure(s.now, &report("a")),
        Err(CoordinatorError::StaleGeneration { .. })
    ));
}

#[test]
fn peer_failure_of_a_silent_suspect_is_confirmed_at_once() {
    let mut s = two_running();
    s.wait(1.5);
    s.beat("a", tag(1, 1), WorkerPhase::Reducing);
    let report = PeerFailureReport {
        reporter: w("a", 1),
        tag: tag(1, 1),
        suspect: w("b", 1),
        reason: "timed out".into(),
    };
    assert_eq!(s.core.report_peer_failure(s.now, &report).expect("report"), (true, Generation(2)));
    assert_eq!(
        s.effects()[0],
        Effect::Evicted {
            worker: w("b", 1),
            reason: "reported by a#1: timed out; silent for 1.5s".into(),
            detected_after: Duration::from_secs_f64(1.5)
        }
    );
}

#[test]
fn graceful_leave_aborts_and_the_next_quorum_forms_without_a_timeout() {
    let mut s = Sim::new();
    for id in ["a", "b", "c"] {
        s.join(id, 1).expect("join");
    }
    round(&mut s, &["a", "b", "c"], 1, 0);
    s.effects();
    let g = s
        .core
        .leave(s.now, &LeaveRequest { worker: w("c", 1), reason: "sigterm".into() })
        .expect("leave");
    assert_eq!(g, Generation(2));
    assert_eq!(
        s.effects(),
        [
            Effect::Left { worker: w("c", 1), reason: "sigterm".into() },
            Effect::Aborted {
                tag: tag(1, 1),
                reason: "c#1 left: sigterm".into(),
                divergent: vec![]
            },
            Effect::GenerationChanged {
                from: Generation(1),
                to: Generation(2),
                reason: "g1/step 1 aborted".into()
            },
        ]
    );
    s.ask("a", 1, 1, 0);
    assert_eq!(ready(s.ask("b", 1, 1, 0)).tag, tag(2, 1));
}

#[test]
fn slow_quorum_waits_the_join_grace_for_stragglers_and_bumps_the_generation() {
    let mut s = two_running();
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    s.join("c", 1).expect("join c");
    s.effects();
    // c and a ask; b (a previous member) is slow.
    assert_eq!(not_yet(s.ask("c", 1, 1, 0)), "1 of 3 live workers are ready; min_workers is 2");
    s.wait(1.0);
    s.beat("b", tag(1, 1), WorkerPhase::Idle);
    assert_eq!(
        not_yet(s.ask("a", 1, 2, 1)),
        "waiting 1s more for stragglers: 2 of 3 live workers are ready"
    );
    s.wait(1.0);
    s.core.tick(s.now);
    let qc = ready(s.ask("c", 1, 1, 0));
    assert_eq!(qc.tag, tag(2, 2));
    assert_eq!(qc.heal.map(|h| (h.source.worker, h.target_step)), Some((w("a", 1), 1)));
    assert_eq!(
        s.effects(),
        [
            Effect::GenerationChanged {
                from: Generation(1),
                to: Generation(2),
                reason: "quorum membership changed from [a#1, b#1] to [a#1, c#1]".into()
            },
            Effect::QuorumFormed {
                tag: tag(2, 2),
                members: vec![w("a", 1), w("c", 1)],
                healing: vec![w("c", 1)],
                fast: false,
                reason: "join grace of 2s expired with 2 of 3 live workers ready".into(),
            },
        ]
    );
    // b was not chosen: it waits for the running step.
    assert_eq!(not_yet(s.ask("b", 1, 2, 1)), "step 2 is running in g2; wait for it to finish");
    let not_member =
        s.vote("b", tag(2, 2), VoteOutcome::Ok, false, None).expect_err("not a member");
    assert_eq!(not_member.to_string(), "worker b#1 is not a member of the quorum of g2/step 2");
}

#[test]
fn member_lists_travel_once_per_generation() {
    let mut s = two_running();
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    let ask = |s: &mut Sim, id: &str, known: u64| {
        let req = QuorumRequest {
            worker: w(id, 1),
            step: 2,
            applied_step: 1,
            state_hash: None,
            known_members_generation: Generation(known),
        };
        s.core.await_quorum(s.now, &req).expect("accepted")
    };
    ask(&mut s, "a", 1);
    // The fast quorum keeps generation 1: a worker holding its members gets none.
    let q = ready(ask(&mut s, "b", 1));
    assert_eq!(q.tag, tag(1, 2));
    assert!(q.members_omitted && q.members.is_empty());
    assert_eq!(q.rank, 1);
    // One that does not (a restart, or an older generation) gets them all.
    let full = ready(ask(&mut s, "b", 0));
    assert!(!full.members_omitted);
    assert_eq!(full.members.len(), 2);
    assert_eq!(q.with_members(&full.members), Some(full));
}

#[test]
fn a_silent_previous_member_is_not_waited_for_past_one_heartbeat_interval() {
    let mut s = two_running();
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    s.join("c", 1).expect("join c");
    s.effects();
    assert_eq!(not_yet(s.ask("c", 1, 1, 0)), "1 of 3 live workers are ready; min_workers is 2");
    s.wait(0.5);
    assert_eq!(
        not_yet(s.ask("a", 1, 2, 1)),
        "waiting 1.5s more for stragglers: 2 of 3 live workers are ready"
    );
    // b (killed after its vote) has now been silent for longer than the heartbeat interval.
    s.wait(0.6);
    s.core.tick(s.now);
    let qa = ready(s.ask("a", 1, 2, 1));
    let members: Vec<WorkerRef> = qa.members.iter().map(|m| m.worker.clone()).collect();
    assert_eq!(members, [w("a", 1), w("c", 1)]);
    let formed = s.effects().into_iter().find_map(|e| match e {
        Effect::QuorumFormed { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(
        formed.as_deref(),
        Some("all 2 responsive workers are ready; 1 live workers silent for over 1s")
    );
}

#[test]
fn rejoin_with_a_higher_incarnation_replaces_the_old_self_and_aborts_its_step() {
    let mut s = two_running();
    let accepted = s.join("b", 2).expect("rejoin");
    assert_eq!(accepted.generation, Generation(2));
    assert_eq!(
        s.effects(),
        [
            Effect::Joined { worker: w("b", 2), replaced: Some(w("b", 1)) },
            Effect::Aborted {
                tag: tag(1, 1),
                reason: "b#1 was replaced by b#2".into(),
                divergent: vec![]
            },
            Effect::GenerationChanged {
                from: Generation(1),
                to: Generation(2),
                reason: "g1/step 1 aborted".into()
            },
        ]
    );
    assert!(matches!(s.join("b", 1), Err(CoordinatorError::StaleIncarnation { current: 2, .. })));
    assert_eq!(s.beat("b", tag(1, 1), WorkerPhase::Computing).0, HeartbeatAction::Shutdown);
}

#[test]
fn joins_with_another_job_or_protocol_are_refused_with_what_differs() {
    let mut s = Sim::new();
    let mut req = JoinRequest {
        worker: w("a", 1),
        advertise_address: "a:1".into(),
        build: BuildInfo { version: BuildInfo::current().version, protocol_version: 9 },
        expected_job_fingerprint: None,
        data_fingerprint: None,
        applied_step: None,
        kernel_set: None,
    };
    let err = s.core.join(s.now, &req).expect_err("protocol");
    let expected = format!(
        "refused a#1: protocol version 9 differs from the coordinator's {}",
        albatross_proto::PROTOCOL_VERSION
    );
    assert_eq!(err.to_string(), expected);
    req.build = BuildInfo::current();
    req.expected_job_fingerprint = Some(Sha256Digest([0; 32]));
    let err = s.core.join(s.now, &req).expect_err("job");
    assert!(
        err.to_string()
            .starts_with(&format!("refused a#1: job fingerprint {} differs", "0".repeat(64))),
        "{err}"
    );
    req.expected_job_fingerprint = None;
    req.data_fingerprint = Some(Sha256Digest([1; 32]));
    s.core.cfg.data_fingerprint = Some(Sha256Digest([2; 32]));
    let err = s.core.join(s.now, &req).expect_err("data");
    assert_eq!(
        err.to_string(),
        format!(
            "refused a#1: data fingerprint {} differs from the coordinator's {}",
            "01".repeat(32),
            "02".repeat(32)
        )
    );
    assert!(s.effects().is_empty());
}

#[test]
fn votes_for_the_wrong_step_or_from_unknown_workers_are_rejected() {
    let mut s = two_running();
    let wrong = s.vote("a", tag(1, 2), VoteOutcome::Ok, false, None).expect_err("wrong step");
    assert_eq!(wrong.to_string(), "g1/step 2 is not the running step: g1/step 1");
    let future = s.vote("a", tag(5, 1), VoteOutcome::Ok, false, None).expect_err("future");
    assert!(matches!(future, CoordinatorError::InvalidArgument(_)));
    let unknown = s.vote("zz", tag(1, 1), VoteOutcome::Ok, false, None).expect_err("unknown");
    assert_eq!(unknown.to_string(), "worker zz is not registered: join first");
    let req = QuorumRequest {
        worker: w("a", 1),
        step: 9,
        applied_step: 8,
        state_hash: None,
        known_members_generation: albatross_proto::domain::Generation(0),
    };
    let ahead =
        s.core.await_quorum(s.now, &QuorumRequest { applied_step: 0, ..req }).expect_err("ahead");
    assert_eq!(ahead.to_string(), "step 9 is ahead of the job: the next step is 1");
}

#[test]
fn step_deadline_aborts_naming_the_missing_voters() {
    let mut s = two_running();
    s.ok("a", tag(1, 1));
    for _ in 0..13 {
        s.wait(4.7);
        s.beat("a", tag(1, 1), WorkerPhase::Voting);
        s.beat("b", tag(1, 1), WorkerPhase::Computing);
        s.core.tick(s.now);
    }
    let effects = s.effects();
    assert_eq!(
        effects[0],
        Effect::Aborted {
            tag: tag(1, 1),
            reason: "step deadline of 60s passed without votes from b#1".into(),
            divergent: vec![]
        }
    );
    assert_eq!(decided(s.ok("a", tag(1, 1))).0, Decision::Abort);
}

#[test]
fn a_new_worker_gets_the_checkpoint_on_cold_start_and_rolls_back_to_it() {
    let ckpt = CheckpointRef {
        step: 4,
        path: "/ckpt/step-00000004".into(),
        manifest_sha256: Sha256Digest([3; 32]),
        cursor: DataCursor { epoch: 2, next_sample: 8 },
    };
    let durable = Durable {
        generation: Generation(7),
        committed_step: 5,
        cursor: DataCursor { epoch: 3, next_sample: 0 },
        latest_checkpoint: Some(ckpt.clone()),
        aborted_steps: 2,
        skipped_steps: 0,
        committed_generation: Generation(6),
        recoveries: 1,
        last_quorum_size: 0,
        kernel_set: None,
    };
    let mut s = Sim::restored(Some(durable));
    assert_eq!(s.core.generation(), Generation(8));
    // Counters of the whole job survive the restart.
    assert_eq!((s.core.durable().aborted_steps, s.core.durable().recoveries), (2, 1));
    let accepted = s.join("a", 1).expect("join");
    assert_eq!(
        (accepted.generation, accepted.committed_step, accepted.resume_from),
        (Generation(8), 5, Some(ckpt.clone()))
    );
    s.join("b", 1).expect("join");
    s.effects();
    s.ask("a", 1, 5, 4);
    assert_eq!(
        not_yet(s.ask("b", 1, 5, 4)),
        "no ready worker holds step 5; waiting 2s for one before resuming from an older state"
    );
    s.wait(2.0);
    s.core.tick(s.now);
    let q = ready(s.ask("a", 1, 5, 4));
    assert_eq!((q.tag, q.samples, q.heal), (tag(8, 5), vec![r(2, 8, 14)], None));
    assert_eq!(
        s.effects()[0],
        Effect::RolledBack { from_step: 5, to_step: 4, cursor: ckpt.cursor, reason: "no live worker holds step 5; resuming from the checkpoint of step 4 at /ckpt/step-00000004".into() }
    );
}

#[test]
fn the_job_finishes_after_total_steps() {
    let mut s = two_running();
    for step in 1..=6 {
        let g = s.core.generation().0;
        round(&mut s, &["a", "b"], step, step - 1);
        commit_step(&mut s, &["a", "b"], tag(g, step));
    }
    assert_eq!(s.core.durable().committed_step, 6);
    assert!(matches!(s.ask("a", 1, 7, 6), QuorumOutcome::Finished(f) if f.final_step == 6));
    assert_eq!(s.beat("a", tag(1, 6), WorkerPhase::Idle).0, HeartbeatAction::Shutdown);
}

#[test]
fn client_text_is_bounded_and_addresses_must_be_host_port() {
    let mut s = Sim::new();
    for bad in ["", "no-port", ":7000", "h:0", "h:99999"] {
        let req = JoinRequest {
            worker: w("a", 1),
            advertise_address: bad.into(),
            build: BuildInfo::current(),
            expected_job_fingerprint: None,
            data_fingerprint: None,
            applied_step: None,
            kernel_set: None,
        };
        let err = s.core.join(s.now, &req).expect_err(bad);
        assert!(matches!(err, CoordinatorError::InvalidArgument(_)), "{bad:?}: {err}");
    }
    let mut s = two_running();
    let long = "é".repeat(4000);
    s.vote("a", tag(1, 1), VoteOutcome::Error(long), false, None).expect("vote");
    let (_, reason, _, _) = decided(s.ok("b", tag(1, 1)));
    assert!(reason.len() < crate::core::MAX_TEXT + 100, "{}", reason.len());
    assert!(reason.starts_with("a#1 failed: éé"));
}

#[test]
fn non_finite_with_agreeing_hashes_skips_the_step_and_consumes_its_samples() {
    let mut s = two_running();
    s.vote("a", tag(1, 1), VoteOutcome::Ok, true, hash(1)).expect("vote");
    let (d, reason, divergent, ckpt) = decided(s.ok("b", tag(1, 1)));
    let why = "a#1 saw non-finite loss or gradients";
    assert_eq!((d, reason.as_str(), divergent, ckpt), (Decision::Skip, why, vec![], None));
    // A late poller learns the same decision.
    assert_eq!(decided(s.ok("a", tag(1, 1))).0, Decision::Skip);
    let cursor = DataCursor { epoch: 0, next_sample: 12 };
    // Decided, not retried: no generation change.
    assert_eq!(s.effects(), [Effect::Skipped { tag: tag(1, 1), cursor, reason: why.into() }]);
    let d = s.core.durable();
    assert_eq!(
        (d.generation, d.committed_step, d.cursor, d.skipped_steps, d.aborted_steps),
        (Generation(1), 1, cursor, 1, 0)
    );
    assert_eq!(d.committed_generation, Generation(1));
    // Its members finish the step rather than abort it.
    assert_eq!(s.beat("a", tag(1, 1), WorkerPhase::Voting).0, HeartbeatAction::Continue);
    // The next step takes the samples after the skipped ones, under the same generation.
    let q = round(&mut s, &["a", "b"], 2, 1);
    assert_eq!((q[0].tag, q[0].samples.clone()), (tag(1, 2), vec![r(0, 12, 18)]));
    assert_eq!(q[0].heal, None);
    assert_eq!(s.core.status(s.now).skipped_steps, 1);
}

#[test]
fn a_skipped_step_may_ask_for_its_checkpoint_like_a_commit() {
    let mut s = two_running();
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    round(&mut s, &["a", "b"], 2, 1);
    s.ok("a", tag(1, 2));
    let status = s.vote("b", tag(1, 2), VoteOutcome::Ok, true, hash(1)).expect("vote");
    let directive = CheckpointDirective { step: 2, path: "/ckpt/step-00000002".into() };
    let (d, _, _, ckpt) = decided(status);
    assert_eq!((d, ckpt), (Decision::Skip, Some(directive.clone())));
    let cursor = DataCursor { epoch: 1, next_sample: 4 };
    assert_eq!(
        s.effects()[2..],
        [
            Effect::Skipped {
                tag: tag(1, 2),
                cursor,
                reason: "b#1 saw non-finite loss or gradients".into()
            },
            Effect::CheckpointRequested { worker: w("b", 1), directive },
        ]
    );
    let accepted = s.join("c", 1).expect("join c");
    assert_eq!(
        (accepted.committed_step, accepted.committed_generation, accepted.cursor),
        (2, Generation(1), cursor)
    );
}

#[test]
fn non_finite_with_a_hash_mismatch_or_an_error_still_aborts() {
    let mut s = Sim::new();
    for id in ["a", "b", "c"] {
        s.join(id, 1).expect("join");
    }
    round(&mut s, &["a", "b", "c"], 1, 0);
    s.effects();
    s.vote("a", tag(1, 1), VoteOutcome::Ok, true, hash(1)).expect("vote");
    s.vote("b", tag(1, 1), VoteOutcome::Ok, false, hash(2)).expect("vote");
    let (d, reason, divergent, _) = decided(s.ok("c", tag(1, 1)));
    assert_eq!((d, divergent), (Decision::Abort, vec![w("b", 1)]));
    assert_eq!(
        reason,
        "state hash mismatch: b#1 differ from the majority of 2; \
         a#1 saw non-finite loss or gradients"
    );
    let d = s.core.durable();
    assert_eq!((d.committed_step, d.skipped_steps, d.aborted_steps), (0, 0, 1));
    assert_eq!(d.committed_generation, Generation(0));
}

/// Committed step 5 with the latest checkpoint at step 4, restored after a restart.
fn restored_at_step_5() -> Sim {
    let ckpt = CheckpointRef {
        step: 4,
        path: "/ckpt/step-00000004".into(),
        manifest_sha256: Sha256Digest([3; 32]),
        cursor: DataCursor { epoch: 2, next_sample: 8 },
    };
    Sim::restored(Some(Durable {
        generation: Generation(7),
        committed_step: 5,
        cursor: DataCursor { epoch: 3, next_sample: 0 },
        latest_checkpoint: Some(ckpt),
        aborted_steps: 0,
        skipped_steps: 0,
        committed_generation: Generation(6),
        recoveries: 0,
        last_quorum_size: 0,
        kernel_set: None,
    }))
}

#[test]
fn rollback_resumes_from_the_newest_step_a_ready_worker_holds() {
    let mut s = restored_at_step_5();
    s.join("a", 1).expect("join");
    s.join("b", 1).expect("join");
    s.effects();
    // The checkpoint of step 4 was corrupt: a fell back to step 2's, b to step 3's.
    s.ask("a", 1, 3, 2);
    assert_eq!(
        not_yet(s.ask("b", 1, 4, 3)),
        "no ready worker holds step 5; waiting 2s for one before resuming from an older state"
    );
    s.wait(2.0);
    s.core.tick(s.now);
    // 3 steps of 12 samples in epochs of 20: the cursor after step 3 is epoch 1, sample 16.
    let cursor = DataCursor { epoch: 1, next_sample: 16 };
    assert_eq!(
        s.effects(),
        [
            Effect::RolledBack {
                from_step: 5,
                to_step: 3,
                cursor,
                reason: "no live worker holds step 5; resuming from step 3 as held by b#1".into()
            },
            Effect::QuorumFormed {
                tag: tag(8, 4),
                members: vec![w("a", 1), w("b", 1)],
                healing: vec![w("a", 1)],
                fast: false,
                reason: "all 2 live workers are ready".into(),
            },
        ]
    );
    let qa = ready(s.ask("a", 1, 3, 2));
    assert_eq!(qa.heal.map(|h| (h.source.worker, h.target_step)), Some((w("b", 1), 3)));
    assert_eq!(qa.samples, vec![r(1, 16, 20), r(2, 0, 2)]);
    let d = s.core.durable();
    assert_eq!((d.committed_step, d.cursor, d.committed_generation), (3, cursor, Generation(0)));
    // The checkpoint of step 4 is not on the resumed history any more.
    assert_eq!(d.latest_checkpoint, None);
}

#[test]
fn a_worker_ahead_of_the_committed_step_is_no_rollback_source() {
    let mut s = restored_at_step_5();
    s.join("a", 1).expect("join");
    s.join("b", 1).expect("join");
    s.effects();
    s.ask("a", 1, 2, 1);
    // A stale report (say from before an earlier rollback) claims a step nobody committed:
    // resuming from it would roll forward.
    s.core.members.by_id_mut(&w("a", 1).id).expect("registered").applied_step = Some(9);
    s.ask("b", 1, 2, 1);
    s.core.members.by_id_mut(&w("a", 1).id).expect("registered").applied_step = Some(9);
    s.wait(2.0);
    s.core.tick(s.now);
    let effects = s.effects();
    assert_eq!(
        effects[0],
        Effect::RolledBack {
            from_step: 5,
            to_step: 1,
            cursor: DataCursor { epoch: 0, next_sample: 12 },
            reason: "no live worker holds step 5; resuming from step 1 as held by b#1".into()
        }
    );
    assert!(
        matches!(&effects[1], Effect::QuorumFormed { healing, .. } if *healing == [w("a", 1)]),
        "{effects:?}"
    );
}

#[test]
fn rollback_to_the_initial_parameters_restarts_the_stream() {
    let mut s = restored_at_step_5();
    s.join("a", 1).expect("join");
    s.join("b", 1).expect("join");
    s.effects();
    s.ask("a", 1, 1, 0);
    s.ask("b", 1, 1, 0);
    s.wait(2.0);
    s.core.tick(s.now);
    assert_eq!(
        s.effects()[0],
        Effect::RolledBack {
            from_step: 5,
            to_step: 0,
            cursor: DataCursor::default(),
            reason: "no live worker holds step 5; resuming from the initial parameters".into()
        }
    );
    assert_eq!(ready(s.ask("a", 1, 1, 0)).samples, vec![r(0, 0, 6)]);
}

#[test]
fn a_rank_index_knows_only_the_indexed_incarnations() {
    let ranks = crate::step_records::RankIndex::new(&[w("a", 1), w("b", 3), w("c", 2)]);
    assert_eq!(ranks.rank_of(&w("a", 1)), Some(0));
    assert_eq!(ranks.rank_of(&w("c", 2)), Some(2));
    assert_eq!(ranks.rank_of(&w("b", 4)), None, "a later incarnation is not the member");
    assert_eq!(ranks.rank_of(&w("d", 1)), None);
}

#[test]
fn a_decision_keeps_the_slowest_and_the_quickest_all_reduce_time() {
    let mut s = two_running();
    let t = tag(1, 1);
    for (id, reduce_ms) in [("a", 130), ("b", 40)] {
        let vote = Vote {
            worker: w(id, 1),
            tag: t,
            outcome: VoteOutcome::Ok,
            non_finite: false,
            state_hash: hash(1),
            stats: StepStats { reduce_ms, ..StepStats::default() },
        };
        s.core.vote(s.now, &vote).expect("vote accepted");
    }
    let record = s.core.decision_of(t).expect("decided");
    assert_eq!(record.decision, Decision::Commit);
    // The slowest includes a's wait for b; the quickest is the exchange itself.
    assert_eq!((record.stats.reduce_ms, record.reduce_fastest_ms), (130, 40));
}

fn join_with_kernels(s: &mut Sim, id: &str, kernel_set: Option<&str>) -> Result<(), String> {
    s.join_declaring(id, 1, kernel_set).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn exact_mode_fixes_the_kernel_set_at_the_first_join_and_refuses_another_naming_both() {
    let mut s = Sim::new();
    s.core.cfg.exact = true;
    join_with_kernels(&mut s, "a", Some("cpu/flex/x86_64/gemm-avx512f/pulp-v4")).expect("first");
    assert_eq!(
        s.core.durable().kernel_set.as_deref(),
        Some("cpu/flex/x86_64/gemm-avx512f/pulp-v4"),
        "recorded in the durable state, so a restarted coordinator keeps it"
    );
    join_with_kernels(&mut s, "b", Some("cpu/flex/x86_64/gemm-avx512f/pulp-v4")).expect("same");
    let err = join_with_kernels(&mut s, "c", Some("cpu/flex/x86_64/gemm-fma/pulp-v3"))
        .expect_err("another kernel set");
    assert!(err.contains("runs kernel set cpu/flex/x86_64/gemm-fma/pulp-v3"), "{err}");
    assert!(err.contains("job runs cpu/flex/x86_64/gemm-avx512f/pulp-v4"), "{err}");
    let err = join_with_kernels(&mut s, "c", None).expect_err("undeclared");
    assert!(err.contains("declares no kernel set"), "{err}");

    // A pin in the job spec wins over the first join.
    let mut pinned = Sim::new();
    pinned.core.cfg.exact = true;
    pinned.core.cfg.kernel_set = Some("wgpu/llvmpipe".into());
    let err = join_with_kernels(&mut pinned, "a", Some("cpu/flex/x86_64/gemm-avx512f/pulp-v4"))
        .expect_err("pinned");
    assert!(err.contains("the job spec's [determinism] kernel_set"), "{err}");
    assert_eq!(pinned.core.durable().kernel_set, None);

    // Outside exact mode kernel sets may differ.
    let mut normal = Sim::new();
    join_with_kernels(&mut normal, "a", Some("x")).expect("normal a");
    join_with_kernels(&mut normal, "b", Some("y")).expect("normal b");
    assert_eq!(normal.core.durable().kernel_set, None);
}

#[test]
fn exact_mode_gives_each_rank_whole_micro_batches() {
    let mut s = Sim::new();
    // 12 samples in micro-batches of 5: units [0,5) [5,10) [10,12) over 2 ranks → 2 and 1.
    s.core.cfg.split_unit = 5;
    s.join("a", 1).expect("join a");
    s.join("b", 1).expect("join b");
    let quorums = round(&mut s, &["a", "b"], 1, 0);
    assert_eq!(quorums[0].samples, vec![r(0, 0, 10)]);
    assert_eq!(quorums[1].samples, vec![r(0, 10, 12)]);
}
