//! Event-driven tests of the worker's step core with an injected clock: each asserts the exact
//! list of commands, along the fault paths the integration tests exercise with real processes.

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    CheckpointDirective, CheckpointRef, DataCursor, Decision, Generation, HealInstruction,
    JobFinished, JoinAccepted, Member, NotYet, PeerFailureReport, Quorum, QuorumOutcome,
    QuorumRequest, Rewind, SampleRange, Sha256Digest, StateHash, StepStats, StepTag, Vote,
    VoteDecision, VoteOutcome, WorkerId, WorkerPhase, WorkerRef,
};
use albatross_proto::refusal::Refusal;
use tonic::Code;

use super::*;
use crate::runtime::WorkerExit;
use crate::runtime::heartbeat::Directive;
use crate::runtime::hooks::PausePoint;

fn w(id: &str) -> WorkerRef {
    WorkerRef { id: WorkerId::new(id).expect("valid id"), incarnation: 7 }
}

fn tag(generation: u64, step: u64) -> StepTag {
    StepTag { generation: Generation(generation), step }
}

fn held(step: u64) -> Held {
    Held { step, state_hash: StateHash([u8::try_from(step).expect("small step"); 32]) }
}

fn members() -> Vec<Member> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(rank, id)| Member {
            worker: w(id),
            address: format!("10.0.0.{rank}:7000"),
            rank: u32::try_from(rank).expect("rank"),
        })
        .collect()
}

fn samples() -> Vec<SampleRange> {
    vec![SampleRange { epoch: 0, start: 0, end: 4 }]
}

fn quorum(t: StepTag) -> Quorum {
    Quorum {
        tag: t,
        members: members(),
        rank: 0,
        samples: samples(),
        global_samples: 12,
        heal: None,
        collective_deadline: Duration::from_secs(30),
        members_omitted: false,
    }
}

fn accepted(committed: StepTag, resume_from: Option<u64>) -> JoinAccepted {
    JoinAccepted {
        job_spec_toml: String::new(),
        job_fingerprint: Sha256Digest([0; 32]),
        generation: Generation(1),
        committed_step: committed.step,
        cursor: DataCursor::default(),
        resume_from: resume_from.map(|step| CheckpointRef {
            step,
            path: format!("/ckpt/{step}"),
            manifest_sha256: Sha256Digest([1; 32]),
            cursor: DataCursor::default(),
        }),
        coordinator_instance: "c1".into(),
        committed_generation: committed.generation,
    }
}

fn failure(call: &'static str, code: Code, message: &str) -> RpcFailure {
    RpcFailure { call, code, refusal: None, message: message.into() }
}

fn decision(decision: Decision, checkpoint: Option<CheckpointDirective>) -> Event {
    Event::Voted(VoteAnswer::Decided(VoteDecision {
        decision,
        reason: "r".into(),
        divergent: Vec::new(),
        checkpoint,
    }))
}

fn computed() -> StepStats {
    StepStats { samples: 4, mlm_loss_sum: 8.0, compute_ms: 30, ..StepStats::default() }
}

/// The core with a clock and the state the driver would hold.
struct Sim {
    core: StepCore,
    t0: Instant,
    now: Instant,
    held: Held,
}

impl Sim {
    fn new() -> Self {
        let t0 = Instant::now();
        let core = StepCore::new(w("a"), Generation(1), Duration::from_secs(5));
        Self { core, t0, now: t0, held: held(0) }
    }

    /// Feeds `event` and checks the batch's shape: at most one wait, last; an end alone last.
    fn on(&mut self, event: Event) -> Vec<Command> {
        let out = self.core.handle(self.now, self.held, event);
        let waits = out.iter().filter(|c| c.is_wait() || c.is_end()).count();
        assert!(waits <= 1, "more than one wait or end: {out:?}");
        if waits == 1 {
            let last = out.last().expect("non-empty");
            assert!(last.is_wait() || last.is_end(), "the wait or end is not last: {out:?}");
        }
        out
    }

    fn poll(&self, generation: u64, known: u64) -> Vec<Command> {
        let step = self.held.step + 1;
        vec![
            Command::SetPhase(tag(generation, step), WorkerPhase::AwaitingQuorum),
            Command::PollQuorum(QuorumRequest {
                worker: w("a"),
                step,
                applied_step: self.held.step,
                state_hash: Some(self.held.state_hash),
                known_members_generation: Generation(known),
            }),
        ]
    }

    /// Joins fresh and runs step `t` up to its vote being sent; returns the ok vote.
    fn run_until_vote(&mut self, t: StepTag) -> Vote {
        self.on(Event::Joined(accepted(tag(0, 0), None)));
        self.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(t)))));
        self.on(Event::Computed(Computed::Done { stats: computed(), non_finite: false }));
        let out = self.on(Event::Reduced(Ok(Reduced { squares: 144.0, reduce_ms: 20 })));
        match out.last() {
            Some(Command::Vote(vote)) => vote.clone(),
            other => panic!("expected a vote, got {other:?}"),
        }
    }

    fn error_vote(&self, t: StepTag, error: &str) -> Vec<Command> {
        vec![
            Command::SetPhase(t, WorkerPhase::Voting),
            Command::Vote(Vote {
                worker: w("a"),
                tag: t,
                outcome: VoteOutcome::Error(error.into()),
                non_finite: false,
                state_hash: Some(self.held.state_hash),
                stats: StepStats::default(),
            }),
        ]
    }
}

#[test]
fn a_committed_step_runs_every_phase_then_applies_and_writes_the_checkpoint() {
    let mut sim = Sim::new();
    let t = tag(1, 1);
    assert_eq!(sim.on(Event::Joined(accepted(tag(0, 0), None))), sim.poll(1, 0));
    assert_eq!(
        sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(t))))),
        vec![
            Command::BeginStep(t),
            Command::Pause { point: PausePoint::AfterQuorum, step: 1 },
            Command::SetPhase(t, WorkerPhase::Computing),
            Command::Compute { tag: t, samples: samples() },
        ]
    );
    assert_eq!(
        sim.on(Event::Computed(Computed::Done { stats: computed(), non_finite: false })),
        vec![
            Command::Pause { point: PausePoint::BeforeReduce, step: 1 },
            Command::SetPhase(t, WorkerPhase::Reducing),
            Command::AllReduce(Box::new(quorum(t))),
        ]
    );
    let stats = StepStats { grad_norm: 1.0, reduce_ms: 20, ..computed() };
    let vote = Vote {
        worker: w("a"),
        tag: t,
        outcome: VoteOutcome::Ok,
        non_finite: false,
        state_hash: Some(held(0).state_hash),
        stats,
    };
    assert_eq!(
        sim.on(Event::Reduced(Ok(Reduced { squares: 144.0, reduce_ms: 20 }))),
        vec![
            Command::Pause { point: PausePoint::BeforeVote, step: 1 },
            Command::SetPhase(t, WorkerPhase::Voting),
            Command::Vote(vote.clone()),
        ]
    );
    assert_eq!(sim.on(Event::Voted(VoteAnswer::Undecided)), vec![Command::Vote(vote)]);
    let directive = CheckpointDirective { step: 1, path: "/ckpt/1".into() };
    assert_eq!(
        sim.on(decision(Decision::Commit, Some(directive.clone()))),
        vec![
            Command::Pause { point: PausePoint::BeforeApply, step: 1 },
            Command::Apply { tag: t, global_samples: 12 },
        ]
    );
    sim.held = held(1);
    let mut expected = vec![Command::WriteCheckpoint(directive)];
    expected.extend(sim.poll(1, 1));
    assert_eq!(sim.on(Event::StateChanged), expected);
}

#[test]
fn a_non_finite_reduction_votes_non_finite_and_a_skip_publishes_the_same_state_as_the_step() {
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(tag(1, 1))))));
    sim.on(Event::Computed(Computed::Done { stats: computed(), non_finite: false }));
    let out = sim.on(Event::Reduced(Ok(Reduced { squares: f64::NAN, reduce_ms: 1 })));
    assert!(matches!(out.last(), Some(Command::Vote(v)) if v.non_finite), "{out:?}");
    let mut expected = vec![Command::Discard, Command::PublishSkipped { step: 1 }];
    // Skipped: the state after step 1 is the state after step 0, relabelled.
    expected.extend(vec![
        Command::SetPhase(tag(1, 2), WorkerPhase::AwaitingQuorum),
        Command::PollQuorum(QuorumRequest {
            worker: w("a"),
            step: 2,
            applied_step: 1,
            state_hash: Some(held(0).state_hash),
            known_members_generation: Generation(1),
        }),
    ]);
    assert_eq!(sim.on(decision(Decision::Skip, None)), expected);
}

#[test]
fn an_aborted_decision_discards_the_gradients_and_asks_for_the_same_step_again() {
    let mut sim = Sim::new();
    sim.run_until_vote(tag(1, 1));
    let mut expected = vec![Command::Discard];
    expected.extend(sim.poll(1, 1));
    assert_eq!(sim.on(decision(Decision::Abort, None)), expected);
}

#[test]
fn an_abort_while_computing_cancels_the_computation_and_votes_a_failure() {
    let mut sim = Sim::new();
    let t = tag(1, 1);
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(t)))));
    assert_eq!(sim.on(Event::StepCancelled), vec![Command::CancelCompute]);
    assert_eq!(
        sim.on(Event::Computed(Computed::Cancelled)),
        sim.error_vote(t, "the step was aborted while computing")
    );
    // Nothing was reduced, so nothing is discarded on the decision.
    assert_eq!(sim.on(decision(Decision::Abort, None)), sim.poll(1, 1));
}

#[test]
fn a_peer_lost_mid_reduce_is_reported_as_suspect_and_the_step_voted_a_failure() {
    let mut sim = Sim::new();
    let t = tag(1, 1);
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(t)))));
    sim.on(Event::Computed(Computed::Done { stats: computed(), non_finite: false }));
    sim.now = sim.t0 + Duration::from_secs(1);
    let error = "operation g1/step 1/op 0 failed at peer b (10.0.0.1:7000): reset";
    let lost =
        ReduceFailure { error: error.into(), cancelled: false, peer: Some("10.0.0.1:7000".into()) };
    let mut expected = vec![
        Command::Discard,
        Command::ReportSuspect {
            report: PeerFailureReport {
                reporter: w("a"),
                tag: t,
                suspect: w("b"),
                reason: error.into(),
            },
            give_up_at: sim.t0 + Duration::from_secs(6),
        },
    ];
    expected.extend(sim.error_vote(t, &format!("all-reduce failed: {error}")));
    assert_eq!(sim.on(Event::Reduced(Err(lost))), expected);
    assert_eq!(sim.on(decision(Decision::Abort, None)), sim.poll(1, 1));
}

#[test]
fn a_cancelled_reduce_or_one_naming_this_worker_or_no_peer_reports_no_suspect() {
    for (cancelled, peer) in
        [(true, Some("10.0.0.1:7000")), (false, Some("10.0.0.0:7000")), (false, None)]
    {
        let mut sim = Sim::new();
        let t = tag(1, 1);
        sim.on(Event::Joined(accepted(tag(0, 0), None)));
        sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(t)))));
        sim.on(Event::Computed(Computed::Done { stats: computed(), non_finite: false }));
        let failure = ReduceFailure { error: "e".into(), cancelled, peer: peer.map(Into::into) };
        let mut expected = vec![Command::Discard];
        expected.extend(sim.error_vote(t, "all-reduce failed: e"));
        assert_eq!(sim.on(Event::Reduced(Err(failure))), expected, "{cancelled} {peer:?}");
    }
}

#[test]
fn an_evicted_worker_rejoins_keeping_its_pending_update_and_applies_it_when_it_committed() {
    let mut sim = Sim::new();
    let t = tag(1, 1);
    sim.run_until_vote(t);
    let forgotten = failure("Vote", Code::NotFound, "worker a is not registered: join first");
    assert_eq!(
        sim.on(Event::Voted(VoteAnswer::Failed(forgotten))),
        vec![Command::End(SessionEnd::Rejoin("worker a is not registered: join first".into()))]
    );
    assert_eq!(
        sim.on(Event::Joined(accepted(t, None))),
        vec![Command::Apply { tag: t, global_samples: 12 }]
    );
    sim.held = held(1);
    assert_eq!(sim.on(Event::StateChanged), sim.poll(1, 1));
}

#[test]
fn a_pending_update_whose_step_did_not_commit_is_discarded_on_the_join() {
    let mut sim = Sim::new();
    sim.run_until_vote(tag(1, 1));
    sim.on(Event::Directive(Directive::Rejoin("coordinator restarted".into())));
    // The rejoin directive is read before the vote is sent again.
    assert_eq!(
        sim.on(Event::Voted(VoteAnswer::Undecided)),
        vec![Command::End(SessionEnd::Rejoin("coordinator restarted".into()))]
    );
    // Committed under another generation: not this worker's update.
    let mut expected = vec![Command::Discard];
    expected.extend(sim.poll(1, 1));
    assert_eq!(sim.on(Event::Joined(accepted(tag(2, 1), None))), expected);
}

#[test]
fn a_coordinator_restart_during_the_vote_retries_with_backoff_then_settles_on_the_join() {
    let mut sim = Sim::new();
    let t = tag(1, 1);
    let vote = sim.run_until_vote(t);
    let down = || Event::Voted(VoteAnswer::Failed(failure("Vote", Code::Unavailable, "down")));
    for wait_ms in [50, 100, 200, 400, 800, 1000, 1000] {
        let until = sim.now + Duration::from_millis(wait_ms);
        assert_eq!(sim.on(down()), vec![Command::Sleep { until }]);
        assert_eq!(sim.on(Event::Woke), vec![Command::Vote(vote.clone())]);
    }
    // The restarted coordinator forgot the step: it committed before the crash.
    let forgotten = failure("Vote", Code::NotFound, "join first");
    sim.on(Event::Voted(VoteAnswer::Failed(forgotten)));
    assert_eq!(
        sim.on(Event::Joined(accepted(t, None))),
        vec![Command::Apply { tag: t, global_samples: 12 }]
    );
}

#[test]
fn a_step_the_coordinator_no_longer_knows_is_abandoned() {
    let mut sim = Sim::new();
    sim.run_until_vote(tag(1, 1));
    let unknown = failure("Vote", Code::FailedPrecondition, "g1/step 1 is not the running step");
    let mut expected = vec![Command::Discard];
    expected.extend(sim.poll(1, 1));
    assert_eq!(sim.on(Event::Voted(VoteAnswer::Failed(unknown))), expected);
}

#[test]
fn a_worker_replaced_by_a_newer_incarnation_exits_and_only_the_typed_refusal_says_so() {
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    let message = "worker a#7 is stale: incarnation 9 has joined since";
    let stale = RpcFailure {
        call: "AwaitQuorum",
        code: Code::FailedPrecondition,
        refusal: Some(Refusal::StaleIncarnation),
        message: message.into(),
    };
    assert_eq!(
        sim.on(Event::Quorum(Err(stale))),
        vec![Command::End(SessionEnd::Exit(WorkerExit::ToldToStop(message.into())))]
    );
    // The same words without the refusal are just a refusal this worker cannot mend.
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    let untyped = failure("AwaitQuorum", Code::FailedPrecondition, message);
    assert_eq!(sim.on(Event::Quorum(Err(untyped.clone()))), vec![Command::Fail(untyped)]);
}

#[test]
fn an_unregistered_worker_rejoins_from_the_quorum_poll() {
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    let gone = failure("AwaitQuorum", Code::NotFound, "join first");
    assert_eq!(
        sim.on(Event::Quorum(Err(gone))),
        vec![Command::End(SessionEnd::Rejoin("join first".into()))]
    );
}

#[test]
fn a_worker_told_to_heal_heals_then_computes_and_a_failed_heal_votes_a_failure() {
    let t = tag(2, 5);
    let source = members()[1].clone();
    let mut healing = quorum(t);
    healing.heal = Some(HealInstruction { source: source.clone(), target_step: 4 });
    for healed in [Ok(()), Err("peer b refused: busy".to_owned())] {
        let mut sim = Sim::new();
        sim.on(Event::Joined(accepted(tag(0, 0), None)));
        assert_eq!(
            sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(healing.clone())))),
            vec![
                Command::BeginStep(t),
                Command::Pause { point: PausePoint::AfterQuorum, step: 5 },
                Command::SetPhase(t, WorkerPhase::Healing),
                Command::Heal { source: source.clone(), generation: Generation(2), target_step: 4 },
            ]
        );
        let expected = match &healed {
            Ok(()) => {
                sim.held = held(4);
                vec![
                    Command::SetPhase(t, WorkerPhase::Computing),
                    Command::Compute { tag: t, samples: samples() },
                ]
            }
            Err(e) => sim.error_vote(t, &format!("healing failed: {e}")),
        };
        assert_eq!(sim.on(Event::Healed(healed)), expected);
    }
}

#[test]
fn a_quorum_for_a_step_the_worker_cannot_run_is_voted_down() {
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    let t = tag(1, 3);
    let mut expected =
        vec![Command::BeginStep(t), Command::Pause { point: PausePoint::AfterQuorum, step: 3 }];
    expected.extend(sim.error_vote(t, "holds step 0, cannot run step 3"));
    assert_eq!(sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(t))))), expected);
}

#[test]
fn a_rewind_loads_the_named_checkpoint_or_else_goes_back_to_the_initial_parameters() {
    let rewind = |resume: Option<u64>| {
        Event::Quorum(Ok(QuorumOutcome::Rewind(Rewind {
            committed_step: 3,
            resume_from: resume.map(|step| CheckpointRef {
                step,
                path: String::new(),
                manifest_sha256: Sha256Digest([1; 32]),
                cursor: DataCursor::default(),
            }),
            reason: "rolled back".into(),
        })))
    };
    let mut sim = Sim::new();
    sim.held = held(5);
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    assert_eq!(
        sim.on(rewind(Some(2))),
        vec![Command::Discard, Command::ResumeFromCheckpoint { newest: 2 }]
    );
    sim.held = held(2);
    assert_eq!(sim.on(Event::StateChanged), sim.poll(1, 0));
    // No checkpoint was usable: the state is still past the committed step.
    let mut sim = Sim::new();
    sim.held = held(5);
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    sim.on(rewind(Some(2)));
    assert_eq!(sim.on(Event::StateChanged), vec![Command::ResetToInitial]);
    sim.held = held(0);
    assert_eq!(sim.on(Event::StateChanged), sim.poll(1, 0));
    let mut sim = Sim::new();
    sim.held = held(5);
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    assert_eq!(sim.on(rewind(None)), vec![Command::Discard, Command::ResetToInitial]);
}

#[test]
fn a_cold_join_resumes_from_the_newest_checkpoint_beyond_the_held_state() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.on(Event::Joined(accepted(tag(1, 4), Some(4)))),
        vec![Command::ResumeFromCheckpoint { newest: 4 }]
    );
    sim.held = held(4);
    assert_eq!(sim.on(Event::StateChanged), sim.poll(1, 0));
    let mut sim = Sim::new();
    sim.held = held(4);
    assert_eq!(sim.on(Event::Joined(accepted(tag(1, 4), Some(4)))), sim.poll(1, 0));
}

#[test]
fn quorum_polls_back_off_on_failures_and_pause_briefly_when_there_is_no_quorum_yet() {
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    let down = || Event::Quorum(Err(failure("AwaitQuorum", Code::Unavailable, "down")));
    for wait_ms in [100, 200, 400, 800, 1600, 2000] {
        let until = sim.now + Duration::from_millis(wait_ms);
        assert_eq!(sim.on(down()), vec![Command::Sleep { until }]);
        assert_eq!(sim.on(Event::Woke), sim.poll(1, 0));
    }
    let not_yet = NotYet {
        reason: "waiting".into(),
        retry_after: Duration::from_secs(1),
        live_workers: 1,
        min_workers: 2,
    };
    let until = sim.now + Duration::from_millis(10);
    assert_eq!(
        sim.on(Event::Quorum(Ok(QuorumOutcome::NotYet(not_yet)))),
        vec![Command::Sleep { until }]
    );
    sim.on(Event::Woke);
    let until = sim.now + Duration::from_millis(100);
    assert_eq!(sim.on(down()), vec![Command::Sleep { until }], "a answer resets the backoff");
    let bad = failure("AwaitQuorum", Code::InvalidArgument, "step 9 is ahead");
    sim.on(Event::Woke);
    assert_eq!(sim.on(Event::Quorum(Err(bad.clone()))), vec![Command::Fail(bad)]);
}

#[test]
fn signals_end_a_poll_or_a_vote_but_wait_for_the_running_work_to_stop() {
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    assert_eq!(
        sim.on(Event::Directive(Directive::Shutdown("the job ended".into()))),
        vec![Command::End(SessionEnd::Exit(WorkerExit::ToldToStop("the job ended".into())))]
    );
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    assert_eq!(sim.on(Event::Shutdown), vec![Command::End(SessionEnd::Exit(WorkerExit::Stopped))]);
    // Mid-compute the step's token stops the work; the failure vote then ends the session.
    let mut sim = Sim::new();
    let t = tag(1, 1);
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(quorum(t)))));
    assert_eq!(sim.on(Event::Shutdown), vec![]);
    assert_eq!(sim.on(Event::StepCancelled), vec![Command::CancelCompute]);
    assert_eq!(
        sim.on(Event::Computed(Computed::Cancelled)),
        vec![
            Command::SetPhase(t, WorkerPhase::Voting),
            Command::End(SessionEnd::Exit(WorkerExit::Stopped)),
        ]
    );
    let mut sim = Sim::new();
    sim.run_until_vote(tag(1, 1));
    assert_eq!(sim.on(Event::Directive(Directive::Shutdown("x".into()))), vec![]);
    assert_eq!(sim.on(Event::Shutdown), vec![Command::End(SessionEnd::Exit(WorkerExit::Stopped))]);
}

#[test]
fn an_omitted_member_list_is_filled_from_the_cache_or_asked_for_whole() {
    let mut sim = Sim::new();
    sim.run_until_vote(tag(1, 1));
    sim.on(decision(Decision::Commit, None));
    sim.held = held(1);
    sim.on(Event::StateChanged);
    let mut omitted = quorum(tag(1, 2));
    omitted.members = Vec::new();
    omitted.members_omitted = true;
    let out = sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(omitted.clone()))));
    assert_eq!(out.last(), Some(&Command::Compute { tag: tag(1, 2), samples: samples() }));
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    omitted.tag = tag(3, 1);
    assert_eq!(sim.on(Event::Quorum(Ok(QuorumOutcome::Ready(omitted)))), sim.poll(1, 0));
}

#[test]
fn the_job_finishing_ends_the_session() {
    let mut sim = Sim::new();
    sim.on(Event::Joined(accepted(tag(0, 0), None)));
    let done = JobFinished { final_step: 6, final_checkpoint: None };
    assert_eq!(
        sim.on(Event::Quorum(Ok(QuorumOutcome::Finished(done)))),
        vec![Command::End(SessionEnd::Exit(WorkerExit::Finished { final_step: 6 }))]
    );
}
