//! A read-only snapshot of the core for operators (`GetStatus`, the HTTP status page).

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    CheckpointRef, DataCursor, Generation, Member, Sha256Digest, StepStats, WorkerPhase,
};

use crate::core::Core;

/// One registered worker as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    /// `rank` is its rank in the running quorum, else its position in the ring of all workers.
    pub member: Member,
    pub phase: WorkerPhase,
    pub last_heartbeat_age: Duration,
    pub in_quorum: bool,
}

/// The cluster at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub job_name: String,
    pub job_fingerprint: Sha256Digest,
    pub generation: Generation,
    pub committed_step: u64,
    pub total_steps: u64,
    pub cursor: DataCursor,
    pub members: Vec<MemberView>,
    pub latest_checkpoint: Option<CheckpointRef>,
    pub aborted_steps: u64,
    /// Steps decided without an update because a member saw non-finite values.
    pub skipped_steps: u64,
    pub recoveries: u64,
    pub last_step: StepStats,
    pub instance: String,
}

impl Core {
    /// Registered workers (quorum members and spares).
    pub fn registered(&self) -> usize {
        self.members.iter().count()
    }

    /// The summed figures of the last committed (or skipped) step.
    pub fn last_step_stats(&self) -> StepStats {
        self.last_stats
    }

    /// The status at `now`.
    pub fn status(&self, now: Instant) -> StatusView {
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let quorum_rank = self.active.as_ref().and_then(|a| a.rank_of(&m.worker));
                let rank = quorum_rank.unwrap_or(i);
                MemberView {
                    member: Member {
                        worker: m.worker.clone(),
                        address: m.address.clone(),
                        rank: u32::try_from(rank).unwrap_or(u32::MAX),
                    },
                    phase: m.phase,
                    last_heartbeat_age: now.saturating_duration_since(m.last_heard),
                    in_quorum: quorum_rank.is_some(),
                }
            })
            .collect();
        StatusView {
            job_name: self.job.name.clone(),
            job_fingerprint: self.job.fingerprint,
            generation: self.durable.generation,
            committed_step: self.durable.committed_step,
            total_steps: self.cfg.total_steps,
            cursor: self.durable.cursor,
            members,
            latest_checkpoint: self.durable.latest_checkpoint.clone(),
            aborted_steps: self.durable.aborted_steps,
            skipped_steps: self.durable.skipped_steps,
            recoveries: self.durable.recoveries,
            last_step: self.last_stats,
            instance: self.instance.clone(),
        }
    }
}
