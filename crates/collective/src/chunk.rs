//! `ReduceChunk` at the edge: building the chunks a rank sends and checking a received chunk
//! against the piece the local plan expects next. Pure functions, no IO.

use albatross_proto::domain::{CollectiveOp, ElementType, OpTag, WorkerRef};
use albatross_proto::wire::v1::{OpKind, ReduceChunk, RingPhase, WireDtype};
use bytes::Bytes;

use crate::error::op_name;
use crate::framing::RawChunk;
use crate::registry::{Expect, Link, Reject};
use crate::schedule::{Phase, Transfer};

pub(crate) fn ring_phase(phase: Phase) -> RingPhase {
    match phase {
        Phase::ReduceScatter => RingPhase::ReduceScatter,
        Phase::AllGather => RingPhase::AllGather,
        Phase::Broadcast => RingPhase::Broadcast,
    }
}

/// The header every chunk of one operation shares.
#[derive(Debug, Clone)]
pub(crate) struct ChunkHeader {
    pub tag: OpTag,
    pub sender: WorkerRef,
    pub kind: CollectiveOp,
    pub total_elements: u64,
    pub dtype: ElementType,
}

impl ChunkHeader {
    /// The chunk carrying `transfer` of a ring operation.
    pub fn ring(&self, transfer: &Transfer, payload: Bytes) -> ReduceChunk {
        ReduceChunk {
            tag: Some(self.tag.into()),
            sender: Some(self.sender.clone().into()),
            kind: OpKind::from(self.kind).into(),
            phase: ring_phase(transfer.phase).into(),
            ring_step: transfer.ring_step,
            chunk_index: transfer.segment,
            piece_index: transfer.piece,
            element_offset: transfer.range.start as u64,
            total_elements: self.total_elements,
            dtype: WireDtype::from(self.dtype).into(),
            payload,
        }
    }

    /// The one chunk a rank sends to every peer in a scalar sum.
    pub fn scalar(&self, sender_rank: u32, payload: Bytes) -> ReduceChunk {
        ReduceChunk {
            tag: Some(self.tag.into()),
            sender: Some(self.sender.clone().into()),
            kind: OpKind::from(self.kind).into(),
            phase: RingPhase::Unspecified.into(),
            ring_step: 0,
            chunk_index: sender_rank,
            piece_index: 0,
            element_offset: 0,
            total_elements: self.total_elements,
            dtype: WireDtype::from(self.dtype).into(),
            payload,
        }
    }
}

/// Tag and sender of a chunk (the first one of a stream decides whose stream it is).
pub(crate) fn identify(chunk: &ReduceChunk) -> Result<(OpTag, WorkerRef), Reject> {
    let tag = chunk.tag.ok_or_else(|| Reject::Invalid("chunk has no tag".to_owned()))?;
    let tag = OpTag::try_from(tag).map_err(|e| Reject::Invalid(e.to_string()))?;
    let sender =
        chunk.sender.clone().ok_or_else(|| Reject::Invalid("chunk has no sender".into()))?;
    let sender =
        WorkerRef::try_from(sender).map_err(|e| Reject::Invalid(format!("sender: {e}")))?;
    Ok((tag, sender))
}

fn mismatch(field: &str, got: impl std::fmt::Display, want: impl std::fmt::Display) -> Reject {
    Reject::Invalid(format!("{field} is {got}, expected {want}"))
}

/// Check chunk number `index` of a stream against the operation the stream is linked to.
pub(crate) fn check(raw: &RawChunk, index: usize, link: &Link) -> Result<(), Reject> {
    let chunk = &raw.header;
    let payload_len = raw.payload.len();
    let Link { tag, kind, world, sender, sender_rank, total_elements, expect, .. } = link;
    let (tag, kind, world, sender_rank, total_elements) =
        (*tag, *kind, *world, *sender_rank, *total_elements);
    let (chunk_tag, chunk_sender) = identify(chunk)?;
    if chunk_tag != tag {
        return Err(Reject::Stale(format!(
            "chunk of operation {} on a stream of operation {}",
            op_name(&chunk_tag),
            op_name(&tag)
        )));
    }
    if chunk_sender != *sender {
        return Err(Reject::NotMember(format!(
            "chunk from {chunk_sender} on a stream opened by {sender}"
        )));
    }
    let chunk_kind = OpKind::try_from(chunk.kind)
        .map_err(|_| Reject::Invalid(format!("unknown op kind {}", chunk.kind)))?;
    let kind = OpKind::from(kind);
    if chunk_kind != kind {
        return Err(mismatch("kind", chunk_kind.as_str_name(), kind.as_str_name()));
    }
    let dtype = WireDtype::try_from(chunk.dtype)
        .map_err(|_| Reject::Invalid(format!("unknown dtype {}", chunk.dtype)))?;
    if chunk.chunk_index as usize >= world {
        return Err(Reject::Invalid(format!(
            "chunk_index {} out of range for a world of {world} ranks",
            chunk.chunk_index
        )));
    }
    if chunk.total_elements != total_elements {
        return Err(mismatch("total_elements", chunk.total_elements, total_elements));
    }
    match expect {
        Expect::Ring { recvs, dtype: want_dtype } => {
            let Some(step) = recvs.get(index) else {
                return Err(Reject::Invalid(format!(
                    "piece {} is beyond the {} pieces of this operation",
                    index + 1,
                    recvs.len()
                )));
            };
            let t = &step.transfer;
            expect_field(dtype, WireDtype::from(*want_dtype), "dtype", |d| d.as_str_name())?;
            let phase = RingPhase::try_from(chunk.phase)
                .map_err(|_| Reject::Invalid(format!("unknown ring phase {}", chunk.phase)))?;
            expect_field(phase, ring_phase(t.phase), "phase", |p| p.as_str_name())?;
            expect_field(chunk.ring_step, t.ring_step, "ring_step", |v| v)?;
            expect_field(chunk.chunk_index, t.segment, "chunk_index", |v| v)?;
            expect_field(chunk.piece_index, t.piece, "piece_index", |v| v)?;
            expect_field(chunk.element_offset, t.range.start as u64, "element_offset", |v| v)?;
            check_len(payload_len, t.range.len(), *want_dtype)
        }
        Expect::Scalar { len } => {
            expect_field(dtype, WireDtype::F64Le, "dtype", |d| d.as_str_name())?;
            if index > 0 {
                return Err(Reject::Invalid("a scalar sum sends exactly one chunk".to_owned()));
            }
            expect_field(chunk.chunk_index as usize, sender_rank, "chunk_index", |v| v)?;
            expect_field(chunk.element_offset, 0, "element_offset", |v| v)?;
            check_len(payload_len, *len, ElementType::F64)
        }
    }
}

fn expect_field<T: PartialEq + Copy, D: std::fmt::Display>(
    got: T,
    want: T,
    field: &str,
    show: impl Fn(T) -> D,
) -> Result<(), Reject> {
    if got == want { Ok(()) } else { Err(mismatch(field, show(got), show(want))) }
}

fn check_len(payload_len: usize, elements: usize, dtype: ElementType) -> Result<(), Reject> {
    let want = elements * dtype.bytes();
    if payload_len == want {
        Ok(())
    } else {
        Err(Reject::Invalid(format!(
            "payload is {payload_len} bytes, expected {want} ({elements} elements of {})",
            WireDtype::from(dtype).as_str_name()
        )))
    }
}

#[cfg(test)]
#[path = "chunk_test.rs"]
mod chunk_test;
