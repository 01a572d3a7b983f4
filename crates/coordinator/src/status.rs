//! A read-only snapshot of the core for operators ([`JobStatus`]: `GetStatus`, the HTTP status
//! page), and its JSON form.

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    CheckpointRef, DataCursor, JobStatus, Member, MemberStatus, StepStats,
};
use serde_json::{Value, json};

use crate::core::Core;

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
    pub fn status(&self, now: Instant) -> JobStatus {
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let quorum_rank = self.active.as_ref().and_then(|a| a.rank_of(&m.worker));
                let rank = quorum_rank.unwrap_or(i);
                MemberStatus {
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
        JobStatus {
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

/// The status as JSON: `albatross status --json`, and the fields of `/status` without its
/// history.
pub fn status_json(s: &JobStatus) -> Value {
    let cursor = |c: &DataCursor| json!({ "epoch": c.epoch, "next_sample": c.next_sample });
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            json!({
                "worker_id": m.member.worker.id.as_str(),
                "incarnation": m.member.worker.incarnation,
                "address": m.member.address,
                "rank": m.member.rank,
                "in_quorum": m.in_quorum,
                "phase": m.phase.name(),
                "last_heartbeat_age_ms": millis(m.last_heartbeat_age),
            })
        })
        .collect();
    let checkpoint = s.latest_checkpoint.as_ref().map(|c: &CheckpointRef| {
        json!({
            "step": c.step,
            "path": c.path,
            "manifest_sha256": hex::encode(c.manifest_sha256.0),
            "cursor": cursor(&c.cursor),
        })
    });
    let last: &StepStats = &s.last_step;
    json!({
        "job": { "name": s.job_name, "fingerprint": hex::encode(s.job_fingerprint.0) },
        "coordinator_instance": s.instance,
        "generation": s.generation.0,
        "committed_step": s.committed_step,
        "total_steps": s.total_steps,
        "cursor": cursor(&s.cursor),
        "members": members,
        "latest_checkpoint": checkpoint,
        "aborted_steps": s.aborted_steps,
        "skipped_steps": s.skipped_steps,
        "recoveries": s.recoveries,
        "last_step": {
            "samples": last.samples,
            "tokens": last.tokens,
            "mlm_loss_sum": last.mlm_loss_sum,
            "sop_loss_sum": last.sop_loss_sum,
            "masked_tokens": last.masked_tokens,
            "grad_norm": last.grad_norm,
            "compute_ms": last.compute_ms,
            "reduce_ms": last.reduce_ms,
        },
    })
}

/// Whole milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
