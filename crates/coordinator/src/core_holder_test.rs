//! The committed step's live holders (issue 25): the core waits for a holder that is busy
//! rather than resuming from an older state, tells a worker whose state a rollback undid to
//! drop it, and counts each recovery once, whatever the faults.

use std::time::Duration;

use albatross_proto::domain::{
    CheckpointRef, DataCursor, Decision, Generation, HeartbeatAction, LeaveRequest, QuorumOutcome,
    QuorumRequest, Rewind, Sha256Digest, WorkerPhase,
};

use crate::core_test::{Sim, commit_step, decided, not_yet, ready, round, tag, two_running, w};
use crate::effect::Durable;
use crate::effect::Effect;

/// Steps 1-4 committed by a and b, step 5 running under g1, min_workers 1 (as `launch`).
fn at_step_5() -> Sim {
    let mut s = two_running();
    s.core.cfg.min_workers = 1;
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    for step in 2..=4 {
        round(&mut s, &["a", "b"], step, step - 1);
        commit_step(&mut s, &["a", "b"], tag(1, step));
    }
    round(&mut s, &["a", "b"], 5, 4);
    s.effects();
    s
}

fn ask_as(s: &mut Sim, id: &str, inc: u64, applied: u64) -> QuorumOutcome {
    let req = QuorumRequest {
        worker: w(id, inc),
        step: applied + 1,
        applied_step: applied,
        state_hash: None,
        known_members_generation: Generation(0),
    };
    s.core.await_quorum(s.now, &req).expect("quorum request accepted")
}

fn rolled_back(effects: &[Effect]) -> Vec<&Effect> {
    effects.iter().filter(|e| matches!(e, Effect::RolledBack { .. })).collect()
}

/// The run: b is killed in step 5 and restarted; a still computes the aborted step
/// for longer than the join grace. The core waits for a (it holds step 4) instead of rolling
/// back to the restarted b's initial parameters, then heals b from a.
#[test]
fn a_live_holder_busy_with_an_aborted_step_is_waited_for_not_rolled_past() {
    let mut s = at_step_5();
    s.join("b", 2).expect("b restarted");
    let effects = s.effects();
    assert!(matches!(&effects[1], Effect::Aborted { tag: t, .. } if *t == tag(1, 5)));
    // a learns of the abort from its next heartbeat.
    assert_eq!(s.beat("a", tag(1, 5), WorkerPhase::Computing).0, HeartbeatAction::AbortStep);
    assert!(matches!(ask_as(&mut s, "b", 2, 0), QuorumOutcome::NotYet(_)));
    // Far past the join grace, a (still heartbeating) is waited for.
    for _ in 0..6 {
        s.wait(0.5);
        s.beat("a", tag(1, 5), WorkerPhase::Computing);
        s.core.tick(s.now);
    }
    assert_eq!(
        not_yet(ask_as(&mut s, "b", 2, 0)),
        "no ready worker holds step 4; waiting for a#1, which holds it and is live (Computing, \
         heard 0ns ago), rather than resuming from an older state"
    );
    assert_eq!(rolled_back(&s.effects()), Vec::<&Effect>::new());
    // a stops its computation and asks: b heals from it, and step 5 runs again.
    let qa = ready(ask_as(&mut s, "a", 1, 4));
    assert_eq!((qa.tag, qa.heal), (tag(2, 5), None));
    let qb = ready(ask_as(&mut s, "b", 2, 0));
    assert_eq!(qb.heal.map(|h| (h.source.worker, h.target_step)), Some((w("a", 1), 4)));
    s.effects();
    s.ok("a", tag(2, 5));
    let vote = albatross_proto::domain::Vote {
        worker: w("b", 2),
        tag: tag(2, 5),
        outcome: albatross_proto::domain::VoteOutcome::Ok,
        non_finite: false,
        state_hash: Some(albatross_proto::domain::StateHash([1; 32])),
        stats: Default::default(),
    };
    assert_eq!(decided(s.core.vote(s.now, &vote).expect("vote")).0, Decision::Commit);
    let effects = s.effects();
    assert_eq!(
        effects[0],
        Effect::Recovered {
            step: 5,
            cause: "b#1 was replaced by b#2".into(),
            after: Duration::from_secs(3)
        }
    );
    let d = s.core.durable();
    assert_eq!((d.committed_step, d.recoveries, d.aborted_steps), (5, 1, 1));
}

/// A holder that heartbeats but never asks for a quorum is waited for one step deadline, then
/// evicted; only then does the job resume from an older state, and the reason says so. When
/// the wedged worker comes back holding the undone step, it is told to drop it.
#[test]
fn a_wedged_holder_is_evicted_after_the_step_deadline_and_told_to_rewind_when_back() {
    let mut s = at_step_5();
    s.join("b", 2).expect("b restarted");
    ask_as(&mut s, "b", 2, 0);
    s.effects();
    for _ in 0..31 {
        s.wait(2.0);
        s.beat("a", tag(1, 5), WorkerPhase::Computing);
        s.beat_as("b", 2, tag(2, 1), WorkerPhase::AwaitingQuorum);
        s.core.tick(s.now);
    }
    assert!(rolled_back(&s.effects()).is_empty(), "60 s is the step deadline, not past yet");
    s.wait(2.0);
    s.beat("a", tag(1, 5), WorkerPhase::Computing);
    s.core.tick(s.now);
    let effects = s.effects();
    assert!(
        matches!(&effects[0], Effect::Evicted { worker, reason, .. } if *worker == w("a", 1)
            && reason == "holds step 4 but asked for no quorum for 62s (step deadline 60s) \
                          while heartbeating"),
        "{effects:?}"
    );
    assert_eq!(
        rolled_back(&effects),
        [&Effect::RolledBack {
            from_step: 4,
            to_step: 0,
            cursor: DataCursor::default(),
            reason: "no live worker holds step 4; resuming from the initial parameters".into()
        }]
    );
    // a is told to join again, and holds step 4 when it asks: it must drop it.
    assert_eq!(s.beat("a", tag(1, 5), WorkerPhase::Computing).0, HeartbeatAction::Rejoin);
    s.join("a", 1).expect("a rejoins");
    let rewind = ask_as(&mut s, "a", 1, 4);
    let reason = "a#1 holds step 4 but the job's committed step is 0: the steps after it were \
                  undone while it was away; it must drop that state";
    assert_eq!(
        rewind,
        QuorumOutcome::Rewind(Rewind {
            committed_step: 0,
            resume_from: None,
            reason: reason.into()
        })
    );
    assert!(s.effects().contains(&Effect::Rewound {
        worker: w("a", 1),
        held_step: 4,
        committed_step: 0,
        reason: reason.into()
    }));
    // Back at the initial parameters, it asks like any worker.
    assert!(!matches!(ask_as(&mut s, "a", 1, 0), QuorumOutcome::Rewind(_)));
}

#[test]
fn a_rewind_names_the_newest_checkpoint_on_the_resumed_history() {
    let ckpt = CheckpointRef {
        step: 2,
        path: "/ckpt/step-00000002".into(),
        manifest_sha256: Sha256Digest([3; 32]),
        cursor: DataCursor { epoch: 1, next_sample: 4 },
    };
    let mut s = Sim::restored(Some(Durable {
        generation: Generation(4),
        committed_step: 3,
        cursor: DataCursor { epoch: 1, next_sample: 16 },
        latest_checkpoint: Some(ckpt.clone()),
        committed_generation: Generation(3),
        ..Durable::default()
    }));
    s.join("a", 1).expect("join");
    match ask_as(&mut s, "a", 1, 7) {
        QuorumOutcome::Rewind(r) => {
            assert_eq!((r.committed_step, r.resume_from), (3, Some(ckpt)));
        }
        other => panic!("expected a rewind, got {other:?}"),
    }
    // What it claimed to hold is forgotten: it is no source for anything.
    let m = s.core.members.by_id(&w("a", 1).id).expect("registered");
    assert_eq!((m.applied_step, m.waiting), (None, None));
}

/// One recovery per disruption followed by a decided step: a member lost between steps
/// counts, a spare's leave does not, faults before the same commit count once, and a
/// coordinator restart counts.
#[test]
fn recoveries_count_each_disruption_once_at_the_next_decided_step() {
    let mut s = two_running();
    s.core.cfg.min_workers = 1;
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    // A spare joins and leaves without ever being in a quorum: no disruption.
    s.join("c", 1).expect("join");
    s.core.leave(s.now, &LeaveRequest { worker: w("c", 1), reason: "scale-down".into() }).ok();
    round(&mut s, &["a", "b"], 2, 1);
    commit_step(&mut s, &["a", "b"], tag(1, 2));
    assert_eq!(s.core.durable().recoveries, 0);
    // b dies between steps (silent past the timeout), then a's step is aborted too.
    for _ in 0..6 {
        s.wait(1.0);
        s.beat("a", tag(1, 2), WorkerPhase::Idle);
        s.core.tick(s.now);
    }
    ask_as(&mut s, "a", 1, 2);
    s.vote("a", tag(2, 3), albatross_proto::domain::VoteOutcome::Error("disk".into()), false, None)
        .expect("vote");
    s.wait(0.5);
    let g = s.core.generation().0;
    ready(ask_as(&mut s, "a", 1, 2));
    s.effects();
    commit_step(&mut s, &["a"], tag(g, 3));
    let recovered: Vec<Effect> =
        s.effects().into_iter().filter(|e| matches!(e, Effect::Recovered { .. })).collect();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(
        matches!(&recovered[0], Effect::Recovered { step: 3, cause, after }
            if cause.starts_with("b#1 evicted: no heartbeat for") && *after == Duration::from_millis(500)),
        "{recovered:?}"
    );
    assert_eq!(s.core.durable().recoveries, 1);
    // A restart opens a recovery at the first event; the next commit closes it.
    let durable = s.core.durable().clone();
    let mut s = Sim::restored(Some(durable));
    s.core.cfg.min_workers = 1;
    s.join("a", 1).expect("rejoin after the restart");
    s.wait(0.25);
    let q = ready(ask_as(&mut s, "a", 1, 3));
    commit_step(&mut s, &["a"], q.tag);
    assert!(s.effects().contains(&Effect::Recovered {
        step: 4,
        cause: "the coordinator restarted".into(),
        after: Duration::from_millis(250)
    }));
    assert_eq!(s.core.durable().recoveries, 2);
}

/// A member of the last quorum left out of the next one (stalled: silent for over a heartbeat
/// interval while the others were ready) is a disruption too, counted at the next commit.
#[test]
fn a_member_left_out_of_the_next_quorum_counts_as_a_recovery() {
    let mut s = two_running();
    s.core.cfg.min_workers = 1;
    commit_step(&mut s, &["a", "b"], tag(1, 1));
    ask_as(&mut s, "a", 1, 1);
    s.wait(1.5);
    s.core.tick(s.now);
    let q = ready(ask_as(&mut s, "a", 1, 1));
    assert_eq!(q.members.len(), 1, "b, silent, is left out");
    s.effects();
    commit_step(&mut s, &["a"], q.tag);
    let recovered: Vec<Effect> =
        s.effects().into_iter().filter(|e| matches!(e, Effect::Recovered { .. })).collect();
    assert!(
        matches!(&recovered[..], [Effect::Recovered { step: 2, cause, .. }]
            if cause.starts_with("b#1 was left out of the next quorum (all 1 responsive workers")),
        "{recovered:?}"
    );
}

/// After a restart the first quorum waits, up to the join grace, for as many workers as the
/// last quorum before it had, instead of starting with the first to rejoin.
#[test]
fn the_first_quorum_after_a_restart_waits_for_the_last_quorums_size() {
    let restarted = |size| {
        let mut s = Sim::restored(Some(Durable {
            generation: Generation(4),
            committed_step: 3,
            committed_generation: Generation(3),
            cursor: DataCursor { epoch: 1, next_sample: 16 },
            last_quorum_size: size,
            ..Durable::default()
        }));
        s.core.cfg.min_workers = 1;
        s
    };
    let mut s = restarted(3);
    for id in ["a", "b", "c"] {
        s.join(id, 1).expect("rejoin");
    }
    assert_eq!(
        not_yet(ask_as(&mut s, "a", 1, 3)),
        "waiting 2s more for the workers of the last quorum before the restart: 1 of 3 are ready"
    );
    ask_as(&mut s, "b", 1, 3);
    let q = ready(ask_as(&mut s, "c", 1, 3));
    assert_eq!(q.members.len(), 3);
    let formed = s.effects().into_iter().find_map(|e| match e {
        Effect::QuorumFormed { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(
        formed.as_deref(),
        Some("3 workers are ready, as many as the last quorum before the restart")
    );
    assert_eq!(s.core.durable().last_quorum_size, 3);
    // One of them died with the coordinator: the others start once the grace expires.
    let mut s = restarted(3);
    s.join("a", 1).expect("rejoin");
    s.join("b", 1).expect("rejoin");
    ask_as(&mut s, "a", 1, 3);
    ask_as(&mut s, "b", 1, 3);
    s.wait(2.0);
    s.core.tick(s.now);
    assert_eq!(ready(ask_as(&mut s, "a", 1, 3)).members.len(), 2);
    // A state file from before the size was kept (0): the first quorum forms at once.
    let mut s = restarted(0);
    s.join("a", 1).expect("rejoin");
    assert_eq!(ready(ask_as(&mut s, "a", 1, 3)).members.len(), 1);
}
