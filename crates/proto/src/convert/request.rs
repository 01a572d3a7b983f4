//! Conversions of `AwaitQuorumRequest`, `ReportPeerFailureRequest`, `LeaveRequest` and
//! `ReportCheckpointRequest`.

use bytes::Bytes;

use super::error::{ConvertError, optional_digest, required};
use crate::domain::{CheckpointReport, LeaveRequest, PeerFailureReport, QuorumRequest};
use crate::wire::v1 as wire;

impl From<QuorumRequest> for wire::AwaitQuorumRequest {
    fn from(r: QuorumRequest) -> Self {
        Self {
            worker: Some(r.worker.into()),
            step: r.step,
            applied_step: r.applied_step,
            state_hash: r.state_hash.map_or_else(Bytes::new, |d| Bytes::copy_from_slice(&d.0)),
            known_members_generation: r.known_members_generation.0,
        }
    }
}

impl TryFrom<wire::AwaitQuorumRequest> for QuorumRequest {
    type Error = ConvertError;
    fn try_from(r: wire::AwaitQuorumRequest) -> Result<Self, ConvertError> {
        if r.step == 0 {
            return Err(ConvertError::new("step", "is 0 but steps are numbered from 1"));
        }
        if r.applied_step >= r.step {
            return Err(ConvertError::new(
                "applied_step",
                format_args!("{} must be below the requested step {}", r.applied_step, r.step),
            ));
        }
        Ok(Self {
            worker: required(r.worker, "worker")?,
            step: r.step,
            applied_step: r.applied_step,
            state_hash: optional_digest(&r.state_hash, "state_hash")?,
            known_members_generation: crate::domain::Generation(r.known_members_generation),
        })
    }
}

impl From<PeerFailureReport> for wire::ReportPeerFailureRequest {
    fn from(r: PeerFailureReport) -> Self {
        Self {
            reporter: Some(r.reporter.into()),
            tag: Some(r.tag.into()),
            suspect: Some(r.suspect.into()),
            reason: r.reason,
        }
    }
}

impl TryFrom<wire::ReportPeerFailureRequest> for PeerFailureReport {
    type Error = ConvertError;
    fn try_from(r: wire::ReportPeerFailureRequest) -> Result<Self, ConvertError> {
        Ok(Self {
            reporter: required(r.reporter, "reporter")?,
            tag: required(r.tag, "tag")?,
            suspect: required(r.suspect, "suspect")?,
            reason: r.reason,
        })
    }
}

impl From<LeaveRequest> for wire::LeaveRequest {
    fn from(r: LeaveRequest) -> Self {
        Self { worker: Some(r.worker.into()), reason: r.reason }
    }
}

impl TryFrom<wire::LeaveRequest> for LeaveRequest {
    type Error = ConvertError;
    fn try_from(r: wire::LeaveRequest) -> Result<Self, ConvertError> {
        Ok(Self { worker: required(r.worker, "worker")?, reason: r.reason })
    }
}

impl From<CheckpointReport> for wire::ReportCheckpointRequest {
    fn from(r: CheckpointReport) -> Self {
        let (ok, error) = match r.result {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e),
        };
        Self { worker: Some(r.worker.into()), checkpoint: Some(r.checkpoint.into()), ok, error }
    }
}

impl TryFrom<wire::ReportCheckpointRequest> for CheckpointReport {
    type Error = ConvertError;
    fn try_from(r: wire::ReportCheckpointRequest) -> Result<Self, ConvertError> {
        let result = match (r.ok, r.error) {
            (true, _) => Ok(()),
            (false, e) if e.is_empty() => {
                return Err(ConvertError::new("error", "a failed checkpoint must say what failed"));
            }
            (false, e) => Err(e),
        };
        Ok(Self {
            worker: required(r.worker, "worker")?,
            checkpoint: required(r.checkpoint, "checkpoint")?,
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Generation, StepTag, WorkerId, WorkerRef};

    fn worker() -> WorkerRef {
        WorkerRef { id: WorkerId::new("w-0").expect("valid id"), incarnation: 3 }
    }

    #[test]
    fn quorum_request_round_trips_and_rejects_bad_steps() {
        let r = QuorumRequest {
            worker: worker(),
            step: 5,
            applied_step: 4,
            state_hash: None,
            known_members_generation: crate::domain::Generation(0),
        };
        let wire = wire::AwaitQuorumRequest::from(r.clone());
        assert_eq!(QuorumRequest::try_from(wire.clone()), Ok(r));
        let err = QuorumRequest::try_from(wire::AwaitQuorumRequest { step: 0, ..wire.clone() })
            .expect_err("step 0");
        assert_eq!(err.field, "step");
        let err = QuorumRequest::try_from(wire::AwaitQuorumRequest { applied_step: 5, ..wire })
            .expect_err("applied == step");
        assert_eq!(err.field, "applied_step");
    }

    #[test]
    fn peer_failure_and_leave_round_trip() {
        let r = PeerFailureReport {
            reporter: worker(),
            tag: StepTag { generation: Generation(2), step: 7 },
            suspect: WorkerRef { id: WorkerId::new("w-1").expect("valid id"), incarnation: 1 },
            reason: "connection refused".into(),
        };
        let back = PeerFailureReport::try_from(wire::ReportPeerFailureRequest::from(r.clone()));
        assert_eq!(back, Ok(r));
        let l = LeaveRequest { worker: worker(), reason: "sigterm".into() };
        assert_eq!(LeaveRequest::try_from(wire::LeaveRequest::from(l.clone())), Ok(l));
        let err = LeaveRequest::try_from(wire::LeaveRequest::default()).expect_err("no worker");
        assert_eq!(err.field, "worker");
    }

    #[test]
    fn failed_checkpoint_report_needs_an_error() {
        let err = CheckpointReport::try_from(wire::ReportCheckpointRequest {
            worker: Some(worker().into()),
            ok: false,
            ..Default::default()
        })
        .expect_err("no error text");
        assert_eq!(err.field, "error");
    }
}
