//! Conversions of the control-plane requests and replies (join, heartbeat, vote).

use bytes::Bytes;

use super::common::{heartbeat_action, worker_phase};
use super::error::{
    ConvertError, known_enum, optional, optional_digest, repeated, required, required_digest,
};
use crate::domain::{
    BuildInfo, Decision, Generation, Heartbeat, HeartbeatReply, JoinAccepted, JoinRequest, Vote,
    VoteDecision, VoteOutcome,
};
use crate::wire::v1 as wire;

fn digest_bytes<D: AsRef<[u8]>>(d: Option<D>) -> Bytes {
    d.map_or_else(Bytes::new, |d| Bytes::copy_from_slice(d.as_ref()))
}

impl From<JoinRequest> for wire::JoinRequest {
    fn from(j: JoinRequest) -> Self {
        Self {
            worker: Some(j.worker.into()),
            advertise_address: j.advertise_address,
            build: Some(wire::BuildInfo {
                version: j.build.version,
                protocol_version: j.build.protocol_version,
            }),
            expected_job_fingerprint: digest_bytes(j.expected_job_fingerprint),
            data_fingerprint: digest_bytes(j.data_fingerprint),
            applied_step: j.applied_step,
            kernel_set: j.kernel_set.unwrap_or_default(),
        }
    }
}

impl TryFrom<wire::JoinRequest> for JoinRequest {
    type Error = ConvertError;
    fn try_from(j: wire::JoinRequest) -> Result<Self, ConvertError> {
        if j.advertise_address.is_empty() {
            return Err(ConvertError::missing("advertise_address"));
        }
        let build = j.build.ok_or_else(|| ConvertError::missing("build"))?;
        Ok(Self {
            worker: required(j.worker, "worker")?,
            advertise_address: j.advertise_address,
            build: BuildInfo { version: build.version, protocol_version: build.protocol_version },
            expected_job_fingerprint: optional_digest(
                &j.expected_job_fingerprint,
                "expected_job_fingerprint",
            )?,
            data_fingerprint: optional_digest(&j.data_fingerprint, "data_fingerprint")?,
            applied_step: j.applied_step,
            kernel_set: Some(j.kernel_set).filter(|k| !k.is_empty()),
        })
    }
}

impl From<JoinAccepted> for wire::JoinResponse {
    fn from(j: JoinAccepted) -> Self {
        Self {
            job_spec_toml: j.job_spec_toml,
            job_fingerprint: digest_bytes(Some(j.job_fingerprint)),
            generation: j.generation.0,
            committed_step: j.committed_step,
            cursor: Some(j.cursor.into()),
            resume_from: j.resume_from.map(Into::into),
            coordinator_instance: j.coordinator_instance,
            committed_generation: j.committed_generation.0,
        }
    }
}

impl TryFrom<wire::JoinResponse> for JoinAccepted {
    type Error = ConvertError;
    fn try_from(j: wire::JoinResponse) -> Result<Self, ConvertError> {
        if j.job_spec_toml.is_empty() {
            return Err(ConvertError::missing("job_spec_toml"));
        }
        Ok(Self {
            job_spec_toml: j.job_spec_toml,
            job_fingerprint: required_digest(&j.job_fingerprint, "job_fingerprint")?,
            generation: Generation(j.generation),
            committed_step: j.committed_step,
            cursor: required(j.cursor, "cursor")?,
            resume_from: optional(j.resume_from, "resume_from")?,
            coordinator_instance: j.coordinator_instance,
            committed_generation: Generation(j.committed_generation),
        })
    }
}

impl From<Heartbeat> for wire::HeartbeatRequest {
    fn from(h: Heartbeat) -> Self {
        Self {
            worker: Some(h.worker.into()),
            tag: Some(h.tag.into()),
            phase: wire::WorkerPhase::from(h.phase).into(),
        }
    }
}

impl TryFrom<wire::HeartbeatRequest> for Heartbeat {
    type Error = ConvertError;
    fn try_from(h: wire::HeartbeatRequest) -> Result<Self, ConvertError> {
        Ok(Self {
            worker: required(h.worker, "worker")?,
            tag: required(h.tag, "tag")?,
            phase: worker_phase(h.phase, "phase")?,
        })
    }
}

impl From<HeartbeatReply> for wire::HeartbeatResponse {
    fn from(h: HeartbeatReply) -> Self {
        Self {
            generation: h.generation.0,
            action: wire::HeartbeatAction::from(h.action).into(),
            reason: h.reason,
        }
    }
}

impl TryFrom<wire::HeartbeatResponse> for HeartbeatReply {
    type Error = ConvertError;
    fn try_from(h: wire::HeartbeatResponse) -> Result<Self, ConvertError> {
        Ok(Self {
            generation: Generation(h.generation),
            action: heartbeat_action(h.action, "action")?,
            reason: h.reason,
        })
    }
}

impl From<Vote> for wire::VoteRequest {
    fn from(v: Vote) -> Self {
        let (outcome, error) = match v.outcome {
            VoteOutcome::Ok => (wire::VoteOutcome::Ok, String::new()),
            VoteOutcome::Error(e) => (wire::VoteOutcome::Error, e),
        };
        Self {
            worker: Some(v.worker.into()),
            tag: Some(v.tag.into()),
            outcome: outcome.into(),
            error,
            non_finite: v.non_finite,
            state_hash: digest_bytes(v.state_hash),
            stats: Some(v.stats.into()),
        }
    }
}

impl TryFrom<wire::VoteRequest> for Vote {
    type Error = ConvertError;
    fn try_from(v: wire::VoteRequest) -> Result<Self, ConvertError> {
        let outcome = match known_enum::<wire::VoteOutcome>(v.outcome, "outcome")? {
            wire::VoteOutcome::Unspecified => return Err(ConvertError::missing("outcome")),
            wire::VoteOutcome::Ok => VoteOutcome::Ok,
            wire::VoteOutcome::Error if v.error.is_empty() => {
                return Err(ConvertError::new("error", "an error vote must say what failed"));
            }
            wire::VoteOutcome::Error => VoteOutcome::Error(v.error),
        };
        Ok(Self {
            worker: required(v.worker, "worker")?,
            tag: required(v.tag, "tag")?,
            outcome,
            non_finite: v.non_finite,
            state_hash: optional_digest(&v.state_hash, "state_hash")?,
            stats: optional(v.stats, "stats")?.unwrap_or_default(),
        })
    }
}

impl From<VoteDecision> for wire::VoteResponse {
    fn from(d: VoteDecision) -> Self {
        let decision = match d.decision {
            Decision::Commit => wire::Decision::Commit,
            Decision::Abort => wire::Decision::Abort,
            Decision::Skip => wire::Decision::Skip,
        };
        Self {
            decision: decision.into(),
            reason: d.reason,
            divergent: d.divergent.into_iter().map(Into::into).collect(),
            checkpoint: d.checkpoint.map(Into::into),
        }
    }
}

impl TryFrom<wire::VoteResponse> for VoteDecision {
    type Error = ConvertError;
    fn try_from(d: wire::VoteResponse) -> Result<Self, ConvertError> {
        let decision = match known_enum::<wire::Decision>(d.decision, "decision")? {
            wire::Decision::Unspecified => return Err(ConvertError::missing("decision")),
            wire::Decision::Commit => Decision::Commit,
            wire::Decision::Abort => Decision::Abort,
            wire::Decision::Skip => Decision::Skip,
        };
        Ok(Self {
            decision,
            reason: d.reason,
            divergent: repeated(d.divergent, "divergent")?,
            checkpoint: optional(d.checkpoint, "checkpoint")?,
        })
    }
}
