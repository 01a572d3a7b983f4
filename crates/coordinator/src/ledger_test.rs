//! Property test: random sequences of joins, deaths, leaves, restarts, votes, aborts and skips
//! never lose or duplicate a sample. The ledger holds, per committed or skipped step, the samples
//! every rank of its quorum was given (a skipped step's samples are consumed, never retried); a rollback (every holder of the newest state died) drops the steps whose
//! updates were lost. At every point the ledger must cover the stream from its start up to the
//! cursor exactly once.

use std::collections::{BTreeMap, BTreeSet};

use albatross_proto::domain::{
    Generation, Heartbeat, QuorumOutcome, QuorumRequest, SampleRange, StateHash, StepStats,
    StepTag, Vote, VoteOutcome, WorkerPhase, WorkerRef,
};

use crate::commit::VoteStatus;
use crate::core_test::{EPOCH, Sim, w};
use crate::effect::Effect;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
struct Worker {
    me: WorkerRef,
    alive: bool,
    applied: u64,
    /// The quorum it runs now.
    view: Option<(StepTag, Vec<SampleRange>, usize)>,
}

const IDS: [&str; 5] = ["w-a", "w-b", "w-c", "w-d", "w-e"];

#[test]
fn random_fault_sequences_never_lose_or_duplicate_a_sample() {
    let mut totals = Counts::default();
    for seed in 1..=40 {
        let c = run(seed);
        totals.commits += c.commits;
        totals.skips += c.skips;
        totals.aborts += c.aborts;
        totals.evictions += c.evictions;
        totals.rollbacks += c.rollbacks;
    }
    // The sequences must actually exercise the faults.
    assert!(totals.commits > 500, "{totals:?}");
    assert!(totals.aborts > 100, "{totals:?}");
    assert!(totals.skips > 10, "{totals:?}");
    assert!(totals.evictions > 50, "{totals:?}");
    assert!(totals.rollbacks > 0, "{totals:?}");
    eprintln!("{totals:?}");
}

#[derive(Debug, Default)]
struct Counts {
    commits: u64,
    skips: u64,
    aborts: u64,
    evictions: u64,
    rollbacks: u64,
}

fn run(seed: u64) -> Counts {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut s = Sim::new();
    s.core.cfg.total_steps = u64::MAX;
    let mut counts = Counts::default();
    let mut workers: BTreeMap<&str, Worker> = BTreeMap::new();
    let mut incarnation = 1;
    // tag → rank → slice, as the members were told.
    let mut told: BTreeMap<StepTag, BTreeMap<usize, Vec<SampleRange>>> = BTreeMap::new();
    // committed step → every sample of it.
    let mut ledger: BTreeMap<u64, Vec<SampleRange>> = BTreeMap::new();
    let mut last_generation = Generation(0);
    for round in 0..600 {
        let id = IDS[usize::try_from(rng.below(IDS.len() as u64)).expect("small")];
        match rng.below(100) {
            // A (re)start of a process: a new incarnation with the initial parameters.
            0..=7 => {
                incarnation += 1;
                let accepted = s.join(id, incarnation);
                if accepted.is_ok() {
                    let me = w(id, incarnation);
                    workers.insert(id, Worker { me, alive: true, applied: 0, view: None });
                }
            }
            // SIGKILL: it stops talking.
            8..=10 => {
                if let Some(wk) = workers.get_mut(id) {
                    wk.alive = false;
                }
            }
            11 => {
                if let Some(wk) = workers.remove(id) {
                    let req = albatross_proto::domain::LeaveRequest {
                        worker: wk.me,
                        reason: "test".into(),
                    };
                    s.core.leave(s.now, &req).expect("leave");
                }
            }
            // Time passes; live workers heartbeat, ask, and vote.
            _ => {
                s.wait(rng.below(1500) as f64 / 1000.0);
                for wk in workers.values_mut().filter(|wk| wk.alive) {
                    let tag = wk
                        .view
                        .as_ref()
                        .map_or(StepTag { generation: Generation(0), step: 0 }, |v| v.0);
                    let hb =
                        Heartbeat { worker: wk.me.clone(), tag, phase: WorkerPhase::Computing };
                    let reply = s.core.heartbeat(s.now, &hb);
                    if reply.action != albatross_proto::domain::HeartbeatAction::Continue {
                        wk.view = None;
                    }
                    if wk.view.is_none() {
                        let next = s.core.durable().committed_step + 1;
                        let req = QuorumRequest {
                            worker: wk.me.clone(),
                            step: (wk.applied + 1).min(next),
                            applied_step: wk.applied.min(next - 1),
                            state_hash: None,
                            known_members_generation: albatross_proto::domain::Generation(0),
                        };
                        if let Ok(QuorumOutcome::Ready(q)) = s.core.await_quorum(s.now, &req) {
                            if let Some(h) = &q.heal {
                                wk.applied = h.target_step;
                            }
                            told.entry(q.tag)
                                .or_default()
                                .insert(q.rank as usize, q.samples.clone());
                            wk.view = Some((q.tag, q.samples, q.members.len()));
                        }
                    }
                    if let Some((tag, _, _)) = wk.view.clone() {
                        let bad = rng.below(40);
                        let vote = Vote {
                            worker: wk.me.clone(),
                            tag,
                            outcome: if bad == 0 {
                                VoteOutcome::Error("boom".into())
                            } else {
                                VoteOutcome::Ok
                            },
                            non_finite: bad == 1,
                            state_hash: Some(StateHash([u8::from(bad == 2); 32])),
                            stats: StepStats::default(),
                        };
                        match s.core.vote(s.now, &vote) {
                            Ok(VoteStatus::Decided(d)) => {
                                // A skipped step is applied without change: the worker's
                                // state is that of the step.
                                if d.decision != albatross_proto::domain::Decision::Abort {
                                    wk.applied = tag.step;
                                }
                                wk.view = None;
                            }
                            Ok(VoteStatus::Pending { .. }) => {}
                            Err(_) => wk.view = None,
                        }
                    }
                }
                s.core.tick(s.now);
            }
        }
        for effect in s.effects() {
            match effect {
                // A skipped step consumes its samples exactly as a commit does.
                Effect::Committed { tag, .. } | Effect::Skipped { tag, .. } => {
                    if matches!(effect, Effect::Skipped { .. }) {
                        counts.skips += 1;
                    } else {
                        counts.commits += 1;
                    }
                    let ranks = told.get(&tag).expect("a committed quorum was told to its members");
                    let samples: Vec<SampleRange> = ranks.values().flatten().copied().collect();
                    assert!(
                        ledger.insert(tag.step, samples).is_none(),
                        "seed {seed}: step {} decided twice",
                        tag.step
                    );
                }
                Effect::RolledBack { to_step, .. } => {
                    counts.rollbacks += 1;
                    ledger.retain(|step, _| *step <= to_step);
                    for wk in workers.values_mut() {
                        wk.view = None;
                    }
                }
                Effect::QuorumFormed { tag, .. } => {
                    assert!(tag.generation >= last_generation, "seed {seed}: generation went back");
                    last_generation = tag.generation;
                }
                Effect::GenerationChanged { from, to, .. } => {
                    assert!(
                        to > from && from >= last_generation,
                        "seed {seed}: generation {from} -> {to}"
                    );
                }
                Effect::Aborted { .. } => counts.aborts += 1,
                Effect::Evicted { .. } => counts.evictions += 1,
                _ => {}
            }
        }
        if round % 20 == 19 {
            check_ledger(seed, &ledger, s.core.durable().cursor, s.core.durable().committed_step);
        }
    }
    check_ledger(seed, &ledger, s.core.durable().cursor, s.core.durable().committed_step);
    assert!(s.core.durable().committed_step > 0, "seed {seed}: the simulation never committed");
    counts
}

/// The ledger covers positions `0 .. cursor` of the stream, each exactly once.
fn check_ledger(
    seed: u64,
    ledger: &BTreeMap<u64, Vec<SampleRange>>,
    cursor: albatross_proto::domain::DataCursor,
    committed: u64,
) {
    assert_eq!(
        ledger.len() as u64,
        committed,
        "seed {seed}: ledger has {} steps, {committed} committed",
        ledger.len()
    );
    let mut seen = BTreeSet::new();
    for r in ledger.values().flatten() {
        for i in r.start..r.end {
            let pos = r.epoch * EPOCH + i;
            assert!(seen.insert(pos), "seed {seed}: sample {i} of epoch {} used twice", r.epoch);
        }
    }
    let end = cursor.epoch * EPOCH + cursor.next_sample;
    assert_eq!(seen.len() as u64, end, "seed {seed}: samples lost before {cursor:?}");
    assert!(seen.iter().all(|p| *p < end), "seed {seed}: a sample beyond the cursor");
}
