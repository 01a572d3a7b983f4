//! Every domain type survives domain → wire → bytes → wire → domain unchanged, and malformed
//! wire messages fail naming the offending field.

use std::fmt::Debug;
use std::time::Duration;

use prost::Message;

use crate::domain::*;
use crate::wire::v1 as wire;

fn worker(id: &str, incarnation: u64) -> WorkerRef {
    WorkerRef { id: WorkerId::new(id).expect("valid id"), incarnation }
}

fn member(rank: u32) -> Member {
    Member {
        worker: worker(&format!("worker-{rank}"), 7),
        address: format!("10.0.0.{rank}:7000"),
        rank,
    }
}

fn tag() -> StepTag {
    StepTag { generation: Generation(3), step: 120 }
}

fn checkpoint() -> CheckpointRef {
    CheckpointRef {
        step: 100,
        path: "/ckpt/step-100".into(),
        manifest_sha256: Sha256Digest::of("manifest"),
        cursor: DataCursor { epoch: 1, next_sample: 4096 },
    }
}

/// domain → wire → encoded bytes → wire → domain.
fn round_trip<D, W>(value: D)
where
    D: Clone + PartialEq + Debug + TryFrom<W, Error = crate::convert::ConvertError>,
    W: From<D> + Message + Default,
{
    let bytes = W::from(value.clone()).encode_to_vec();
    let decoded = W::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(D::try_from(decoded).expect("converts back"), value);
}

fn quorum() -> Quorum {
    Quorum {
        tag: tag(),
        members: (0..3).map(member).collect(),
        rank: 1,
        samples: vec![
            SampleRange::new(0, 4000, 4096).expect("range"),
            SampleRange::new(1, 0, 10).expect("range"),
        ],
        global_samples: 320,
        heal: Some(HealInstruction { source: member(0), target_step: 119 }),
        collective_deadline: Duration::from_millis(2500),
        members_omitted: false,
    }
}

#[test]
fn quorum_outcomes_round_trip() {
    round_trip::<_, wire::AwaitQuorumResponse>(QuorumOutcome::Ready(quorum()));
    round_trip::<_, wire::AwaitQuorumResponse>(QuorumOutcome::Ready(Quorum {
        heal: None,
        samples: vec![],
        ..quorum()
    }));
    // A member list left out (the caller holds its generation's) round-trips and is restored.
    let omitted = Quorum { members: vec![], members_omitted: true, ..quorum() };
    round_trip::<_, wire::AwaitQuorumResponse>(QuorumOutcome::Ready(omitted.clone()));
    let members: Vec<_> = (0..3).map(member).collect();
    assert_eq!(omitted.clone().with_members(&members), Some(quorum()));
    assert_eq!(omitted.with_members(&members[..1]), None, "rank 1 is not in a 1-member list");
    let mut wire_q = wire::Quorum::from(quorum());
    wire_q.members_omitted = true;
    let err = Quorum::try_from(wire_q).expect_err("members with members_omitted");
    assert!(err.to_string().contains("members"), "{err}");
    round_trip::<_, wire::AwaitQuorumResponse>(QuorumOutcome::NotYet(NotYet {
        reason: "waiting for 1 more worker".into(),
        retry_after: Duration::from_millis(250),
        live_workers: 1,
        min_workers: 2,
    }));
    round_trip::<_, wire::AwaitQuorumResponse>(QuorumOutcome::Finished(JobFinished {
        final_step: 1000,
        final_checkpoint: Some(checkpoint()),
    }));
    round_trip::<_, wire::AwaitQuorumResponse>(QuorumOutcome::Rewind(Rewind {
        committed_step: 130,
        resume_from: Some(checkpoint()),
        reason: "a rollback undid step 140".into(),
    }));
    round_trip::<_, wire::AwaitQuorumResponse>(QuorumOutcome::Rewind(Rewind {
        committed_step: 0,
        resume_from: None,
        reason: String::new(),
    }));
    // A rewind to a checkpoint past the committed step would roll forward.
    let forward = wire::AwaitQuorumResponse {
        outcome: Some(wire::await_quorum_response::Outcome::Rewind(wire::Rewind {
            committed_step: 99,
            resume_from: Some(checkpoint().into()),
            reason: String::new(),
        })),
    };
    let err = QuorumOutcome::try_from(forward).expect_err("checkpoint past the committed step");
    assert!(err.to_string().contains("rewind.resume_from.step"), "{err}");
}

#[test]
fn control_messages_round_trip() {
    round_trip::<_, wire::JoinRequest>(JoinRequest {
        worker: worker("worker-0", 1_700_000_000_000),
        advertise_address: "worker-0.workers:7000".into(),
        build: BuildInfo::current(),
        expected_job_fingerprint: Some(Sha256Digest::of("job")),
        data_fingerprint: None,
        applied_step: Some(41),
        kernel_set: Some("cpu/flex/x86_64/gemm-avx512f/pulp-v4".into()),
    });
    round_trip::<_, wire::JoinResponse>(JoinAccepted {
        job_spec_toml: "name = \"x\"\n".into(),
        job_fingerprint: Sha256Digest::of("job"),
        generation: Generation(9),
        committed_step: 99,
        cursor: DataCursor { epoch: 0, next_sample: 99 * 32 },
        resume_from: Some(checkpoint()),
        coordinator_instance: "c-1".into(),
        committed_generation: Generation(8),
    });
    round_trip::<_, wire::HeartbeatRequest>(Heartbeat {
        worker: worker("w", 2),
        tag: tag(),
        phase: WorkerPhase::Reducing,
    });
    round_trip::<_, wire::HeartbeatResponse>(HeartbeatReply {
        generation: Generation(4),
        action: HeartbeatAction::AbortStep,
        reason: "worker-2 timed out".into(),
    });
    for outcome in [VoteOutcome::Ok, VoteOutcome::Error("out of memory".into())] {
        round_trip::<_, wire::VoteRequest>(Vote {
            worker: worker("w", 2),
            tag: tag(),
            outcome,
            non_finite: true,
            state_hash: Some(StateHash([5; 32])),
            stats: StepStats {
                mlm_loss_sum: 12.5,
                samples: 32,
                grad_norm: 0.75,
                ..Default::default()
            },
        });
    }
    round_trip::<_, wire::VoteResponse>(VoteDecision {
        decision: Decision::Abort,
        reason: "hash mismatch".into(),
        divergent: vec![worker("worker-2", 1)],
        checkpoint: Some(CheckpointDirective { step: 120, path: "step-120".into() }),
    });
    // A skip may carry a checkpoint directive, as a commit does.
    round_trip::<_, wire::VoteResponse>(VoteDecision {
        decision: Decision::Skip,
        reason: "w#2 saw non-finite loss or gradients".into(),
        divergent: vec![],
        checkpoint: Some(CheckpointDirective { step: 8, path: "step-8".into() }),
    });
    round_trip::<_, wire::OpTag>(OpTag { generation: Generation(2), step: 5, op_seq: 1 });
}

#[test]
fn every_phase_and_action_round_trips() {
    use WorkerPhase::*;
    for phase in
        [Idle, AwaitingQuorum, Healing, Computing, Reducing, Voting, Checkpointing, Leaving]
    {
        round_trip::<_, wire::HeartbeatRequest>(Heartbeat {
            worker: worker("w", 1),
            tag: tag(),
            phase,
        });
    }
    use HeartbeatAction::*;
    for action in [Continue, AbortStep, Rejoin, Shutdown] {
        round_trip::<_, wire::HeartbeatResponse>(HeartbeatReply {
            generation: Generation(1),
            action,
            reason: String::new(),
        });
    }
}

fn rejected_field<W, D>(message: W) -> String
where
    D: TryFrom<W, Error = crate::convert::ConvertError> + Debug,
{
    D::try_from(message).expect_err("must be rejected").field
}

#[test]
fn malformed_messages_name_the_field() {
    let good = wire::Quorum::from(quorum());

    let mut bad = good.clone();
    bad.members[2].worker.as_mut().expect("worker").worker_id = "Bad Id".into();
    assert_eq!(rejected_field::<_, Quorum>(bad), "members[2].worker.worker_id");

    let mut bad = good.clone();
    bad.members[1].rank = 5;
    assert_eq!(rejected_field::<_, Quorum>(bad), "members[1].rank");

    let mut bad = good.clone();
    bad.rank = 3;
    assert_eq!(rejected_field::<_, Quorum>(bad), "rank");

    let mut bad = good.clone();
    bad.members.clear();
    assert_eq!(rejected_field::<_, Quorum>(bad), "members");

    let mut bad = good.clone();
    bad.samples[0].end = 1;
    assert_eq!(rejected_field::<_, Quorum>(bad), "samples[0].end");

    let mut bad = good.clone();
    bad.global_samples = 10;
    assert_eq!(rejected_field::<_, Quorum>(bad), "global_samples");

    let mut bad = good.clone();
    bad.heal.as_mut().expect("heal").source = None;
    assert_eq!(rejected_field::<_, Quorum>(bad), "heal.source");

    let mut bad = good;
    bad.tag = None;
    assert_eq!(rejected_field::<_, Quorum>(bad), "tag");

    let response = wire::AwaitQuorumResponse { outcome: None };
    assert_eq!(rejected_field::<_, QuorumOutcome>(response), "outcome");
}

#[test]
fn malformed_votes_and_joins_name_the_field() {
    let vote = wire::VoteRequest::from(Vote {
        worker: worker("w", 1),
        tag: tag(),
        outcome: VoteOutcome::Ok,
        non_finite: false,
        state_hash: None,
        stats: StepStats::default(),
    });

    let mut bad = vote.clone();
    bad.state_hash = vec![1, 2, 3].into();
    assert_eq!(rejected_field::<_, Vote>(bad), "state_hash");

    let mut bad = vote.clone();
    bad.outcome = 0;
    assert_eq!(rejected_field::<_, Vote>(bad), "outcome");

    let mut bad = vote.clone();
    bad.outcome = 42;
    assert_eq!(rejected_field::<_, Vote>(bad), "outcome");

    let mut bad = vote;
    bad.outcome = wire::VoteOutcome::Error.into();
    assert_eq!(rejected_field::<_, Vote>(bad), "error");

    let join = wire::JoinRequest {
        worker: Some(worker("w", 1).into()),
        advertise_address: String::new(),
        build: Some(wire::BuildInfo { version: "0.1.0".into(), protocol_version: 1 }),
        ..Default::default()
    };
    assert_eq!(rejected_field::<_, JoinRequest>(join), "advertise_address");

    let decision = wire::VoteResponse { decision: 0, ..Default::default() };
    assert_eq!(rejected_field::<_, VoteDecision>(decision), "decision");
}

#[test]
fn conversion_errors_become_invalid_argument() {
    let err = Quorum::try_from(wire::Quorum::default()).expect_err("empty quorum");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("members"), "{}", status.message());
}

#[test]
fn wire_numbers_of_added_values_are_fixed() {
    // Added values keep their numbers forever (proto evolution rule): a worker built against an
    // older contract must read DECISION_SKIP as the unknown value 3, not as another decision.
    assert_eq!(wire::Decision::Skip as i32, 3);
    let skip = wire::VoteResponse { decision: 3, ..Default::default() };
    assert_eq!(VoteDecision::try_from(skip).map(|d| d.decision), Ok(Decision::Skip));
    // A JoinResponse from a coordinator that predates committed_generation reads as "none".
    let old = wire::JoinResponse {
        job_spec_toml: "name = \"x\"\n".into(),
        job_fingerprint: Sha256Digest::of("job").0.to_vec().into(),
        cursor: Some(DataCursor::default().into()),
        ..Default::default()
    };
    let accepted = JoinAccepted::try_from(old).expect("converts");
    assert_eq!(accepted.committed_generation, Generation(0));
}

fn job_status() -> JobStatus {
    JobStatus {
        job_name: "demo".into(),
        job_fingerprint: Sha256Digest([7; 32]),
        instance: "1-abc".into(),
        generation: Generation(3),
        committed_step: 7,
        total_steps: 100,
        cursor: DataCursor { epoch: 1, next_sample: 12 },
        members: vec![MemberStatus {
            member: member(0),
            phase: WorkerPhase::Computing,
            last_heartbeat_age: Duration::from_millis(120),
            in_quorum: true,
        }],
        latest_checkpoint: Some(checkpoint()),
        aborted_steps: 1,
        skipped_steps: 2,
        recoveries: 0,
        last_step: StepStats { samples: 8, mlm_loss_sum: 4.0, ..StepStats::default() },
    }
}

#[test]
fn job_status_round_trips_and_a_bad_member_is_named() {
    round_trip::<JobStatus, wire::GetStatusResponse>(job_status());
    let mut bad = wire::GetStatusResponse::from(job_status());
    bad.members[0].phase = 99;
    let err = JobStatus::try_from(bad).expect_err("unknown phase");
    assert!(err.to_string().contains("members[0].phase"), "{err}");
    assert_eq!(WorkerPhase::AwaitingQuorum.name(), "awaiting_quorum");
}
