//! `GetStatusResponse` ⇄ [`JobStatus`].

use std::time::Duration;

use super::common::worker_phase;
use super::error::{ConvertError, optional, repeated, required, required_digest};
use crate::domain::{Generation, JobStatus, MemberStatus, StepStats};
use crate::wire::v1 as wire;

impl From<MemberStatus> for wire::MemberStatus {
    fn from(m: MemberStatus) -> Self {
        Self {
            member: Some(m.member.into()),
            phase: wire::WorkerPhase::from(m.phase).into(),
            last_heartbeat_age_ms: u64::try_from(m.last_heartbeat_age.as_millis())
                .unwrap_or(u64::MAX),
            in_quorum: m.in_quorum,
        }
    }
}

impl TryFrom<wire::MemberStatus> for MemberStatus {
    type Error = ConvertError;
    fn try_from(m: wire::MemberStatus) -> Result<Self, ConvertError> {
        Ok(Self {
            member: required(m.member, "member")?,
            phase: worker_phase(m.phase, "phase")?,
            last_heartbeat_age: Duration::from_millis(m.last_heartbeat_age_ms),
            in_quorum: m.in_quorum,
        })
    }
}

impl From<JobStatus> for wire::GetStatusResponse {
    fn from(s: JobStatus) -> Self {
        Self {
            job_name: s.job_name,
            job_fingerprint: s.job_fingerprint.0.to_vec().into(),
            generation: s.generation.0,
            committed_step: s.committed_step,
            total_steps: s.total_steps,
            cursor: Some(s.cursor.into()),
            members: s.members.into_iter().map(Into::into).collect(),
            latest_checkpoint: s.latest_checkpoint.map(Into::into),
            aborted_steps: s.aborted_steps,
            skipped_steps: s.skipped_steps,
            recoveries: s.recoveries,
            last_step: Some(s.last_step.into()),
            coordinator_instance: s.instance,
        }
    }
}

impl TryFrom<wire::GetStatusResponse> for JobStatus {
    type Error = ConvertError;
    fn try_from(s: wire::GetStatusResponse) -> Result<Self, ConvertError> {
        Ok(Self {
            job_name: s.job_name,
            job_fingerprint: required_digest(&s.job_fingerprint, "job_fingerprint")?,
            instance: s.coordinator_instance,
            generation: Generation(s.generation),
            committed_step: s.committed_step,
            total_steps: s.total_steps,
            cursor: required(s.cursor, "cursor")?,
            members: repeated(s.members, "members")?,
            latest_checkpoint: optional(s.latest_checkpoint, "latest_checkpoint")?,
            aborted_steps: s.aborted_steps,
            skipped_steps: s.skipped_steps,
            recoveries: s.recoveries,
            last_step: optional::<_, StepStats>(s.last_step, "last_step")?.unwrap_or_default(),
        })
    }
}
