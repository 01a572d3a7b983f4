//! Conversions of `AwaitQuorumResponse` and the quorum it carries.

use std::time::Duration;

use super::error::{ConvertError, optional, repeated, required};
use crate::domain::{HealInstruction, JobFinished, Member, NotYet, Quorum, QuorumOutcome, Rewind};
use crate::wire::v1 as wire;

impl From<Member> for wire::Member {
    fn from(m: Member) -> Self {
        Self { worker: Some(m.worker.into()), address: m.address, rank: m.rank }
    }
}

impl TryFrom<wire::Member> for Member {
    type Error = ConvertError;
    fn try_from(m: wire::Member) -> Result<Self, ConvertError> {
        if m.address.is_empty() {
            return Err(ConvertError::missing("address"));
        }
        Ok(Self { worker: required(m.worker, "worker")?, address: m.address, rank: m.rank })
    }
}

impl From<HealInstruction> for wire::HealInstruction {
    fn from(h: HealInstruction) -> Self {
        Self { source: Some(h.source.into()), target_step: h.target_step }
    }
}

impl TryFrom<wire::HealInstruction> for HealInstruction {
    type Error = ConvertError;
    fn try_from(h: wire::HealInstruction) -> Result<Self, ConvertError> {
        Ok(Self { source: required(h.source, "source")?, target_step: h.target_step })
    }
}

impl From<Quorum> for wire::Quorum {
    fn from(q: Quorum) -> Self {
        Self {
            tag: Some(q.tag.into()),
            members: q.members.into_iter().map(Into::into).collect(),
            rank: q.rank,
            samples: q.samples.into_iter().map(Into::into).collect(),
            global_samples: q.global_samples,
            heal: q.heal.map(Into::into),
            collective_deadline_ms: millis(q.collective_deadline),
            members_omitted: q.members_omitted,
        }
    }
}

impl TryFrom<wire::Quorum> for Quorum {
    type Error = ConvertError;
    fn try_from(q: wire::Quorum) -> Result<Self, ConvertError> {
        let members: Vec<Member> = repeated(q.members, "members")?;
        if q.members_omitted && !members.is_empty() {
            return Err(ConvertError::new("members", "must be empty when members_omitted is set"));
        }
        if members.is_empty() && !q.members_omitted {
            return Err(ConvertError::new("members", "a quorum has at least one member"));
        }
        if let Some((i, m)) = members.iter().enumerate().find(|(i, m)| m.rank as usize != *i) {
            return Err(ConvertError::new(
                format!("members[{i}].rank"),
                format_args!("is {} but members are in ring order, so it must be {i}", m.rank),
            ));
        }
        if !q.members_omitted && q.rank as usize >= members.len() {
            return Err(ConvertError::new(
                "rank",
                format_args!("{} is out of range for {} members", q.rank, members.len()),
            ));
        }
        let samples: Vec<_> = repeated(q.samples, "samples")?;
        let slice: u64 = samples.iter().map(|r: &crate::domain::SampleRange| r.len()).sum();
        if slice > q.global_samples {
            return Err(ConvertError::new(
                "global_samples",
                format_args!("{} is smaller than this rank's slice of {slice}", q.global_samples),
            ));
        }
        Ok(Self {
            tag: required(q.tag, "tag")?,
            members,
            rank: q.rank,
            samples,
            global_samples: q.global_samples,
            heal: optional(q.heal, "heal")?,
            collective_deadline: Duration::from_millis(q.collective_deadline_ms),
            members_omitted: q.members_omitted,
        })
    }
}

impl From<QuorumOutcome> for wire::AwaitQuorumResponse {
    fn from(outcome: QuorumOutcome) -> Self {
        use wire::await_quorum_response::Outcome;
        let outcome = match outcome {
            QuorumOutcome::Ready(q) => Outcome::Quorum(q.into()),
            QuorumOutcome::NotYet(n) => Outcome::NotYet(wire::NotYet {
                reason: n.reason,
                retry_after_ms: millis(n.retry_after),
                live_workers: n.live_workers,
                min_workers: n.min_workers,
            }),
            QuorumOutcome::Finished(f) => Outcome::Finished(wire::JobFinished {
                final_step: f.final_step,
                final_checkpoint: f.final_checkpoint.map(Into::into),
            }),
            QuorumOutcome::Rewind(r) => Outcome::Rewind(wire::Rewind {
                committed_step: r.committed_step,
                resume_from: r.resume_from.map(Into::into),
                reason: r.reason,
            }),
        };
        Self { outcome: Some(outcome) }
    }
}

impl TryFrom<wire::AwaitQuorumResponse> for QuorumOutcome {
    type Error = ConvertError;
    fn try_from(r: wire::AwaitQuorumResponse) -> Result<Self, ConvertError> {
        use wire::await_quorum_response::Outcome;
        Ok(match r.outcome.ok_or_else(|| ConvertError::missing("outcome"))? {
            Outcome::Quorum(q) => {
                QuorumOutcome::Ready(Quorum::try_from(q).map_err(|e| e.within("quorum"))?)
            }
            Outcome::NotYet(n) => QuorumOutcome::NotYet(NotYet {
                reason: n.reason,
                retry_after: Duration::from_millis(n.retry_after_ms),
                live_workers: n.live_workers,
                min_workers: n.min_workers,
            }),
            Outcome::Finished(f) => QuorumOutcome::Finished(JobFinished {
                final_step: f.final_step,
                final_checkpoint: optional(f.final_checkpoint, "finished.final_checkpoint")?,
            }),
            Outcome::Rewind(r) => {
                let resume_from: Option<crate::domain::CheckpointRef> =
                    optional(r.resume_from, "rewind.resume_from")?;
                if let Some(c) = &resume_from
                    && c.step > r.committed_step
                {
                    return Err(ConvertError::new(
                        "rewind.resume_from.step",
                        format_args!(
                            "{} is past committed_step {}: a rewind never rolls forward",
                            c.step, r.committed_step
                        ),
                    ));
                }
                QuorumOutcome::Rewind(Rewind {
                    committed_step: r.committed_step,
                    resume_from,
                    reason: r.reason,
                })
            }
        })
    }
}

/// Durations travel as whole milliseconds; anything longer than u64 milliseconds saturates.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
