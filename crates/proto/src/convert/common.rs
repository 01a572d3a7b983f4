//! Conversions of the shared types in `common.proto` and `peer.proto`.

use super::error::{ConvertError, known_enum, required, required_digest};
use crate::domain::{
    CheckpointDirective, CheckpointRef, CollectiveOp, DataCursor, ElementType, Generation,
    HeartbeatAction, OpTag, SampleRange, StepStats, StepTag, WorkerId, WorkerPhase, WorkerRef,
};
use crate::wire::v1 as wire;

impl From<WorkerRef> for wire::WorkerRef {
    fn from(w: WorkerRef) -> Self {
        Self { worker_id: w.id.as_str().to_owned(), incarnation: w.incarnation }
    }
}

impl TryFrom<wire::WorkerRef> for WorkerRef {
    type Error = ConvertError;
    fn try_from(w: wire::WorkerRef) -> Result<Self, ConvertError> {
        let id = WorkerId::new(w.worker_id).map_err(|err| ConvertError::new("worker_id", err))?;
        Ok(Self { id, incarnation: w.incarnation })
    }
}

impl From<StepTag> for wire::StepTag {
    fn from(t: StepTag) -> Self {
        Self { generation: t.generation.0, step: t.step }
    }
}

impl TryFrom<wire::StepTag> for StepTag {
    type Error = ConvertError;
    fn try_from(t: wire::StepTag) -> Result<Self, ConvertError> {
        Ok(Self { generation: Generation(t.generation), step: t.step })
    }
}

impl From<OpTag> for wire::OpTag {
    fn from(t: OpTag) -> Self {
        Self { generation: t.generation.0, step: t.step, op_seq: t.op_seq }
    }
}

impl TryFrom<wire::OpTag> for OpTag {
    type Error = ConvertError;
    fn try_from(t: wire::OpTag) -> Result<Self, ConvertError> {
        Ok(Self { generation: Generation(t.generation), step: t.step, op_seq: t.op_seq })
    }
}

impl From<SampleRange> for wire::SampleRange {
    fn from(r: SampleRange) -> Self {
        Self { epoch: r.epoch, start: r.start, end: r.end }
    }
}

impl TryFrom<wire::SampleRange> for SampleRange {
    type Error = ConvertError;
    fn try_from(r: wire::SampleRange) -> Result<Self, ConvertError> {
        SampleRange::new(r.epoch, r.start, r.end).ok_or_else(|| {
            ConvertError::new("end", format_args!("{} is before start {}", r.end, r.start))
        })
    }
}

impl From<DataCursor> for wire::DataCursor {
    fn from(c: DataCursor) -> Self {
        Self { epoch: c.epoch, next_sample: c.next_sample }
    }
}

impl TryFrom<wire::DataCursor> for DataCursor {
    type Error = ConvertError;
    fn try_from(c: wire::DataCursor) -> Result<Self, ConvertError> {
        Ok(Self { epoch: c.epoch, next_sample: c.next_sample })
    }
}

impl From<CheckpointRef> for wire::CheckpointRef {
    fn from(c: CheckpointRef) -> Self {
        Self {
            step: c.step,
            path: c.path,
            manifest_sha256: c.manifest_sha256.0.to_vec().into(),
            cursor: Some(c.cursor.into()),
        }
    }
}

impl TryFrom<wire::CheckpointRef> for CheckpointRef {
    type Error = ConvertError;
    fn try_from(c: wire::CheckpointRef) -> Result<Self, ConvertError> {
        if c.path.is_empty() {
            return Err(ConvertError::missing("path"));
        }
        Ok(Self {
            step: c.step,
            path: c.path,
            manifest_sha256: required_digest(&c.manifest_sha256, "manifest_sha256")?,
            cursor: required(c.cursor, "cursor")?,
        })
    }
}

impl From<CheckpointDirective> for wire::CheckpointDirective {
    fn from(c: CheckpointDirective) -> Self {
        Self { step: c.step, path: c.path }
    }
}

impl TryFrom<wire::CheckpointDirective> for CheckpointDirective {
    type Error = ConvertError;
    fn try_from(c: wire::CheckpointDirective) -> Result<Self, ConvertError> {
        if c.path.is_empty() {
            return Err(ConvertError::missing("path"));
        }
        Ok(Self { step: c.step, path: c.path })
    }
}

impl From<StepStats> for wire::StepStats {
    fn from(s: StepStats) -> Self {
        Self {
            mlm_loss_sum: s.mlm_loss_sum,
            sop_loss_sum: s.sop_loss_sum,
            masked_tokens: s.masked_tokens,
            mlm_correct: s.mlm_correct,
            sop_correct: s.sop_correct,
            samples: s.samples,
            tokens: s.tokens,
            grad_norm: s.grad_norm,
            compute_ms: s.compute_ms,
            reduce_ms: s.reduce_ms,
        }
    }
}

impl TryFrom<wire::StepStats> for StepStats {
    type Error = ConvertError;
    fn try_from(s: wire::StepStats) -> Result<Self, ConvertError> {
        Ok(Self {
            mlm_loss_sum: s.mlm_loss_sum,
            sop_loss_sum: s.sop_loss_sum,
            masked_tokens: s.masked_tokens,
            mlm_correct: s.mlm_correct,
            sop_correct: s.sop_correct,
            samples: s.samples,
            tokens: s.tokens,
            grad_norm: s.grad_norm,
            compute_ms: s.compute_ms,
            reduce_ms: s.reduce_ms,
        })
    }
}

impl From<WorkerPhase> for wire::WorkerPhase {
    fn from(p: WorkerPhase) -> Self {
        match p {
            WorkerPhase::Idle => Self::Idle,
            WorkerPhase::AwaitingQuorum => Self::AwaitingQuorum,
            WorkerPhase::Healing => Self::Healing,
            WorkerPhase::Computing => Self::Computing,
            WorkerPhase::Reducing => Self::Reducing,
            WorkerPhase::Voting => Self::Voting,
            WorkerPhase::Checkpointing => Self::Checkpointing,
            WorkerPhase::Leaving => Self::Leaving,
        }
    }
}

/// Decode a `WorkerPhase` enum field.
pub(crate) fn worker_phase(value: i32, field: &str) -> Result<WorkerPhase, ConvertError> {
    Ok(match known_enum::<wire::WorkerPhase>(value, field)? {
        wire::WorkerPhase::Unspecified => return Err(ConvertError::missing(field)),
        wire::WorkerPhase::Idle => WorkerPhase::Idle,
        wire::WorkerPhase::AwaitingQuorum => WorkerPhase::AwaitingQuorum,
        wire::WorkerPhase::Healing => WorkerPhase::Healing,
        wire::WorkerPhase::Computing => WorkerPhase::Computing,
        wire::WorkerPhase::Reducing => WorkerPhase::Reducing,
        wire::WorkerPhase::Voting => WorkerPhase::Voting,
        wire::WorkerPhase::Checkpointing => WorkerPhase::Checkpointing,
        wire::WorkerPhase::Leaving => WorkerPhase::Leaving,
    })
}

impl From<HeartbeatAction> for wire::HeartbeatAction {
    fn from(a: HeartbeatAction) -> Self {
        match a {
            HeartbeatAction::Continue => Self::Continue,
            HeartbeatAction::AbortStep => Self::AbortStep,
            HeartbeatAction::Rejoin => Self::Rejoin,
            HeartbeatAction::Shutdown => Self::Shutdown,
        }
    }
}

/// Decode a `HeartbeatAction` enum field.
pub(crate) fn heartbeat_action(value: i32, field: &str) -> Result<HeartbeatAction, ConvertError> {
    Ok(match known_enum::<wire::HeartbeatAction>(value, field)? {
        wire::HeartbeatAction::Unspecified => return Err(ConvertError::missing(field)),
        wire::HeartbeatAction::Continue => HeartbeatAction::Continue,
        wire::HeartbeatAction::AbortStep => HeartbeatAction::AbortStep,
        wire::HeartbeatAction::Rejoin => HeartbeatAction::Rejoin,
        wire::HeartbeatAction::Shutdown => HeartbeatAction::Shutdown,
    })
}

impl From<CollectiveOp> for wire::OpKind {
    fn from(op: CollectiveOp) -> Self {
        match op {
            CollectiveOp::AllReduceSum => Self::AllReduceSum,
            CollectiveOp::Broadcast => Self::Broadcast,
            CollectiveOp::ScalarSum => Self::ScalarSum,
        }
    }
}

impl From<ElementType> for wire::WireDtype {
    fn from(t: ElementType) -> Self {
        match t {
            ElementType::F32 => Self::F32Le,
            ElementType::Bf16 => Self::Bf16Le,
            ElementType::F64 => Self::F64Le,
            ElementType::I64 => Self::I64Le,
        }
    }
}
