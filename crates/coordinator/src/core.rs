//! The decision core: a pure state machine. Every input is an event with the current time passed
//! in; every judgement is returned as a reply plus a list of [`Effect`]s. No I/O, no clock, no
//! randomness, so tests replay any history exactly.
//!
//! This file holds the state and the membership events (join, heartbeat, leave, failure
//! detection, checkpoints); `quorum.rs` forms quorums, `resume.rs` decides where the job goes on
//! from when no ready worker holds the committed step, and `commit.rs` tallies votes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use albatross_proto::domain::{
    CheckpointDirective, DataCursor, Decision, Generation, HealInstruction, Heartbeat,
    HeartbeatAction, HeartbeatReply, JoinAccepted, JoinRequest, LeaveRequest, Member, SampleRange,
    Sha256Digest, StepStats, StepTag, Vote, WorkerId, WorkerPhase, WorkerRef,
};
use albatross_proto::job::JobSpec;
use tracing::info;

use crate::config::CoreConfig;
use crate::effect::Durable;
use crate::effect::Effect;
use crate::error::CoordinatorError;
use crate::membership::{Admission, Membership};
use crate::step_records::{DecisionRecord, RankIndex};

/// The step a quorum is running.
#[derive(Debug, Clone)]
pub(crate) struct ActiveStep {
    pub tag: StepTag,
    /// Ring order.
    pub members: Vec<Member>,
    /// Per rank, the caller's slice of the step's samples.
    pub slices: Vec<Vec<SampleRange>>,
    /// Per rank, where to heal from first.
    pub heal: Vec<Option<HealInstruction>>,
    pub started: Instant,
    pub votes: BTreeMap<WorkerId, Vote>,
    /// `members` by worker id.
    pub ranks: RankIndex,
}

impl ActiveStep {
    pub fn rank_of(&self, worker: &WorkerRef) -> Option<usize> {
        self.ranks.rank_of(worker)
    }
}

/// A checkpoint the coordinator asked for and is waiting to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingCheckpoint {
    pub worker: WorkerRef,
    pub directive: CheckpointDirective,
    /// The cursor after the checkpointed step; the report must carry it.
    pub cursor: DataCursor,
}

/// The job as served to workers.
#[derive(Debug, Clone)]
pub(crate) struct JobInfo {
    pub name: String,
    pub toml: String,
    pub fingerprint: Sha256Digest,
}

/// The coordinator's decision core.
#[derive(Debug)]
pub struct Core {
    pub(crate) cfg: CoreConfig,
    pub(crate) job: JobInfo,
    pub(crate) instance: String,
    pub(crate) durable: Durable,
    pub(crate) members: Membership,
    pub(crate) active: Option<ActiveStep>,
    /// Generation and members of the last quorum formed.
    pub(crate) last_quorum: Option<(Generation, Vec<WorkerRef>)>,
    /// The newest decisions, so that late pollers learn theirs.
    pub(crate) decided: VecDeque<DecisionRecord>,
    pub(crate) last_decided_at: Option<Instant>,
    pub(crate) pending_checkpoint: Option<PendingCheckpoint>,
    /// Suspect → members that reported it, in the current generation.
    pub(crate) suspicions: BTreeMap<WorkerId, BTreeSet<WorkerId>>,
    pub(crate) effects: Vec<Effect>,
    pub(crate) last_stats: StepStats,
    /// Since when the core has been waiting for a live member that holds the committed step
    /// but is not ready (see `wait_for_live_holder`).
    pub(crate) holder_wait_since: Option<Instant>,
    /// The disruption training is recovering from, until the next decided step.
    pub(crate) recovery: Option<Recovery>,
    /// Restored from a previous run: the first event opens a recovery from the restart.
    pub(crate) restart_unseen: bool,
}

/// A disruption of training (a member of the quorum lost, replaced, gone or left out, a step
/// aborted, the coordinator restarted) that no decided step has followed yet. Disruptions that overlap
/// make one recovery: the first one's cause and time are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    pub since: Instant,
    pub cause: String,
}

impl Core {
    /// A core for `job`. `restored` is the durable state of a previous run: the core resumes
    /// from it under the next generation, so nothing the old process tagged is accepted.
    pub fn new(
        cfg: CoreConfig,
        job: &JobSpec,
        restored: Option<Durable>,
        instance: impl Into<String>,
    ) -> Self {
        let mut core = Self {
            cfg,
            job: JobInfo {
                name: job.name.clone(),
                toml: job.to_canonical_toml(),
                fingerprint: job.fingerprint(),
            },
            instance: instance.into(),
            durable: Durable { generation: Generation(1), ..Durable::default() },
            members: Membership::default(),
            active: None,
            last_quorum: None,
            decided: VecDeque::new(),
            last_decided_at: None,
            pending_checkpoint: None,
            suspicions: BTreeMap::new(),
            effects: Vec::new(),
            last_stats: StepStats::default(),
            holder_wait_since: None,
            recovery: None,
            restart_unseen: false,
        };
        if let Some(restored) = restored {
            core.durable = restored;
            core.restart_unseen = true;
            core.bump_generation("coordinator restarted".into());
        }
        core
    }

    /// The state that must be persisted; the shell writes it whenever it changes.
    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    pub fn generation(&self) -> Generation {
        self.durable.generation
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The decisions taken since the last call, oldest first.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn is_finished(&self) -> bool {
        self.durable.committed_step >= self.cfg.total_steps
    }

    /// A worker asks to take part.
    ///
    /// # Errors
    /// [`CoordinatorError::Mismatch`] for another protocol, build or job;
    /// [`CoordinatorError::StaleIncarnation`] and [`CoordinatorError::TooManyWorkers`].
    pub fn join(
        &mut self,
        now: Instant,
        req: &JoinRequest,
    ) -> Result<JoinAccepted, CoordinatorError> {
        let mismatch =
            |what: String| CoordinatorError::Mismatch { worker: req.worker.clone(), what };
        check_address(&req.advertise_address)?;
        if req.build.protocol_version != self.cfg.build.protocol_version {
            return Err(mismatch(format!(
                "protocol version {} differs from the coordinator's {}",
                req.build.protocol_version, self.cfg.build.protocol_version
            )));
        }
        if req.build.version != self.cfg.build.version {
            return Err(mismatch(format!(
                "build version {} differs from the coordinator's {}",
                req.build.version, self.cfg.build.version
            )));
        }
        if let Some(expected) = req.expected_job_fingerprint
            && expected != self.job.fingerprint
        {
            return Err(mismatch(format!(
                "job fingerprint {expected} differs from the coordinator's job {} ({})",
                self.job.name, self.job.fingerprint
            )));
        }
        if let (Some(theirs), Some(ours)) = (req.data_fingerprint, self.cfg.data_fingerprint)
            && theirs != ours
        {
            return Err(mismatch(format!(
                "data fingerprint {theirs} differs from the coordinator's {ours}"
            )));
        }
        self.admit_kernel_set(req)?;
        self.note_restart(now);
        let admission = self.members.admit(
            &req.worker,
            &req.advertise_address,
            now,
            self.cfg.max_registered,
        )?;
        if admission != Admission::Again
            && let Ok(m) = self.members.get_mut(&req.worker)
        {
            // What a (re)started worker holds counts from its join: a holder of the committed
            // step is never rolled past, even before its first quorum request.
            m.applied_step = req.applied_step;
        }
        match admission {
            Admission::Again => {}
            Admission::New => {
                self.effects.push(Effect::Joined { worker: req.worker.clone(), replaced: None });
            }
            Admission::Replaced(old) => {
                self.effects.push(Effect::Joined {
                    worker: req.worker.clone(),
                    replaced: Some(old.clone()),
                });
                self.member_lost(now, &old, format!("{old} was replaced by {}", req.worker));
            }
        }
        let committed = self.durable.committed_step;
        let holder_alive =
            self.members.iter().any(|m| m.worker != req.worker && m.holds(committed));
        Ok(JoinAccepted {
            job_spec_toml: self.job.toml.clone(),
            job_fingerprint: self.job.fingerprint,
            generation: self.durable.generation,
            committed_step: self.durable.committed_step,
            cursor: self.durable.cursor,
            resume_from: if holder_alive { None } else { self.durable.latest_checkpoint.clone() },
            coordinator_instance: self.instance.clone(),
            committed_generation: self.durable.committed_generation,
        })
    }

    /// In exact mode, a worker must run the job's kernel set (the spec's pin, else the first
    /// one declared, which is recorded here and persisted): results differ bit for bit between
    /// kernel sets, so one other worker would break the contract of the whole job.
    fn admit_kernel_set(&mut self, req: &JoinRequest) -> Result<(), CoordinatorError> {
        if !self.cfg.exact {
            return Ok(());
        }
        let mismatch =
            |what: String| CoordinatorError::Mismatch { worker: req.worker.clone(), what };
        let Some(theirs) = req.kernel_set.as_deref() else {
            return Err(mismatch(
                "declares no kernel set, and the job runs in exact mode ([determinism] exact)"
                    .into(),
            ));
        };
        let (ours, whence) = match (&self.cfg.kernel_set, &self.durable.kernel_set) {
            (Some(pinned), _) => (pinned.as_str(), "the job spec's [determinism] kernel_set"),
            (None, Some(recorded)) => (recorded.as_str(), "fixed by the first worker to join"),
            (None, None) => {
                info!(worker = %req.worker, kernel_set = theirs, "exact mode: kernel set fixed for the job");
                self.durable.kernel_set = Some(theirs.to_owned());
                return Ok(());
            }
        };
        if theirs != ours {
            return Err(mismatch(format!(
                "runs kernel set {theirs}, but this exact-mode job runs {ours} ({whence}): \
                 its results would differ bit for bit"
            )));
        }
        Ok(())
    }

    /// Liveness and progress. Never an error: an unknown worker is told to join again.
    pub fn heartbeat(&mut self, now: Instant, hb: &Heartbeat) -> HeartbeatReply {
        let generation = self.durable.generation;
        let reply = |action, reason: String| HeartbeatReply { generation, action, reason };
        let Some(m) = self.members.by_id_mut(&hb.worker.id) else {
            return reply(
                HeartbeatAction::Rejoin,
                format!(
                    "worker {} is not registered (evicted or coordinator restarted)",
                    hb.worker.id
                ),
            );
        };
        if m.worker.incarnation > hb.worker.incarnation {
            return reply(
                HeartbeatAction::Shutdown,
                format!("{} was replaced by incarnation {}", hb.worker, m.worker.incarnation),
            );
        }
        if m.worker.incarnation < hb.worker.incarnation {
            return reply(HeartbeatAction::Rejoin, format!("{} has not joined", hb.worker));
        }
        m.last_heard = now;
        m.phase = hb.phase;
        if self.is_finished() {
            return reply(
                HeartbeatAction::Shutdown,
                format!("the job finished at step {}", self.durable.committed_step),
            );
        }
        let in_step = matches!(
            hb.phase,
            WorkerPhase::Healing
                | WorkerPhase::Computing
                | WorkerPhase::Reducing
                | WorkerPhase::Voting
        );
        let running = self.active.as_ref().map(|a| a.tag);
        if in_step
            && hb.tag.generation < generation
            && running != Some(hb.tag)
            && !self.committed(hb.tag)
        {
            return reply(
                HeartbeatAction::AbortStep,
                format!("{} was abandoned: the coordinator is at {generation}", hb.tag),
            );
        }
        reply(HeartbeatAction::Continue, String::new())
    }

    /// A graceful leave: the next quorum forms without waiting for a timeout.
    ///
    /// # Errors
    /// [`CoordinatorError::StaleIncarnation`] when a newer incarnation is registered.
    pub fn leave(
        &mut self,
        now: Instant,
        req: &LeaveRequest,
    ) -> Result<Generation, CoordinatorError> {
        match self.members.get_mut(&req.worker) {
            Err(CoordinatorError::UnknownWorker(_)) => return Ok(self.durable.generation),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        self.members.remove(&req.worker.id);
        let reason = if req.reason.is_empty() {
            "no reason given".to_owned()
        } else {
            clip(&req.reason).to_owned()
        };
        self.effects.push(Effect::Left { worker: req.worker.clone(), reason: reason.clone() });
        self.member_lost(now, &req.worker, format!("{} left: {reason}", req.worker));
        Ok(self.durable.generation)
    }

    /// The running step if `tag` names it; otherwise the precise reason it is not accepted.
    pub(crate) fn check_running(&self, tag: &StepTag) -> Result<&ActiveStep, CoordinatorError> {
        let current = self.durable.generation;
        if tag.generation < current {
            return Err(CoordinatorError::StaleGeneration { sent: tag.generation, current });
        }
        if tag.generation > current {
            return Err(CoordinatorError::InvalidArgument(format!(
                "generation {} was never issued: the coordinator is at {current}",
                tag.generation
            )));
        }
        match &self.active {
            Some(a) if a.tag == *tag => Ok(a),
            Some(a) => Err(CoordinatorError::WrongStep { sent: *tag, expected: a.tag.to_string() }),
            None => Err(CoordinatorError::WrongStep {
                sent: *tag,
                expected: format!("none, step {} is forming", self.durable.committed_step + 1),
            }),
        }
    }

    /// Whether `tag` is a step that committed or was skipped (its late heartbeats are not
    /// aborted: its members finish it, they do not retry it).
    fn committed(&self, tag: StepTag) -> bool {
        self.decided.iter().any(|d| d.tag == tag && d.decision != Decision::Abort)
    }

    /// Whether `worker` (this incarnation) is a member of the running step or of the last
    /// quorum formed: losing it disrupts training even between steps.
    pub(crate) fn was_member(&self, worker: &WorkerRef) -> bool {
        self.active.as_ref().is_some_and(|a| a.rank_of(worker).is_some())
            || self.last_quorum.as_ref().is_some_and(|(_, refs)| refs.contains(worker))
    }

    /// Training was disrupted by `cause`: a recovery starts unless one is under way.
    pub(crate) fn disrupted(&mut self, now: Instant, cause: String) {
        if self.recovery.is_none() {
            self.recovery = Some(Recovery { since: now, cause });
        }
    }

    /// The first event after a restart opens the recovery from it (the core has no clock of
    /// its own, so the time of the restart is the time of the first event).
    pub(crate) fn note_restart(&mut self, now: Instant) {
        if std::mem::take(&mut self.restart_unseen) {
            self.disrupted(now, "the coordinator restarted".to_owned());
        }
    }

    /// A step was decided: the recovery under way, if any, is over. Counted once per
    /// recovery, whatever number of faults it took.
    pub(crate) fn recovered(&mut self, now: Instant, step: u64) {
        if let Some(Recovery { since, cause }) = self.recovery.take() {
            self.durable.recoveries += 1;
            let after = now.saturating_duration_since(since);
            info!(step, seconds = after.as_secs_f64(), %cause, "recovered");
            self.effects.push(Effect::Recovered { step, cause, after });
        }
    }

    /// Move to a new generation, so every message tagged with the old one is stale.
    pub(crate) fn bump_generation(&mut self, reason: String) {
        let from = self.durable.generation;
        let to = from.next();
        self.durable.generation = to;
        self.suspicions.clear();
        info!(%from, %to, %reason, "generation changed");
        self.effects.push(Effect::GenerationChanged { from, to, reason });
    }
}

/// Longest client-supplied text kept (error messages, reasons); longer text is cut, so no client
/// can make the coordinator hold large strings.
pub const MAX_TEXT: usize = 1024;

/// `text` cut to at most [`MAX_TEXT`] bytes on a character boundary.
pub(crate) fn clip(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A peer address must be `host:port` with a DNS-sized host.
fn check_address(address: &str) -> Result<(), CoordinatorError> {
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if address.len() > 261 || !port_ok {
        let shown: String = address.chars().take(64).collect();
        return Err(CoordinatorError::InvalidArgument(format!(
            "advertise_address {shown:?} is not host:port (at most 261 characters, port 1-65535)"
        )));
    }
    Ok(())
}
