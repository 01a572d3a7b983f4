//! A received chunk checked against the plan of the local operation (no network).

use albatross_proto::domain::{Generation, WorkerId};
use tokio::sync::mpsc;

use super::*;
use crate::schedule::{RingPlan, RingShape};

fn worker(i: usize) -> WorkerRef {
    WorkerRef { id: WorkerId::new(format!("w{i}")).expect("id"), incarnation: 1 }
}

const TAG: OpTag = OpTag { generation: Generation(1), step: 3, op_seq: 0 };

/// Rank 1's link to rank 0 in a two-rank all-reduce of 1000 elements, of `dtype`, in pieces
/// of 500 elements.
fn link(dtype: ElementType) -> Link {
    let shape = RingShape { world: 2, rank: 1, len: 1000, piece_elems: 500 };
    let (inbox, _) = mpsc::channel(1);
    let (failures, _) = mpsc::unbounded_channel();
    Link {
        tag: TAG,
        kind: CollectiveOp::AllReduceSum,
        world: 2,
        sender: worker(0),
        sender_rank: 0,
        total_elements: 1000,
        expect: Expect::Ring { recvs: RingPlan::all_reduce(shape).recvs.into(), dtype },
        inbox,
        failures,
    }
}

/// Rank 0's first piece to rank 1 (elements `0..500`) as `dtype`, with `payload_bytes`.
fn first_piece(dtype: ElementType, payload_bytes: usize) -> RawChunk {
    let header = ChunkHeader {
        tag: TAG,
        sender: worker(0),
        kind: CollectiveOp::AllReduceSum,
        total_elements: 1000,
        dtype,
    };
    let transfer =
        Transfer { phase: Phase::ReduceScatter, ring_step: 0, segment: 0, piece: 0, range: 0..500 };
    RawChunk::from(header.ring(&transfer, vec![0u8; payload_bytes].into()))
}

fn rejection(result: Result<(), Reject>) -> String {
    match result {
        Err(Reject::Invalid(message)) => message,
        other => panic!("expected an invalid-argument rejection, got {other:?}"),
    }
}

#[test]
fn each_dtype_is_accepted_by_its_own_operation_at_its_own_size() {
    for (dtype, bytes) in
        [(ElementType::F32, 2000), (ElementType::Bf16, 1000), (ElementType::I64, 4000)]
    {
        assert_eq!(check(&first_piece(dtype, bytes), 0, &link(dtype)), Ok(()), "{dtype:?}");
    }
}

#[test]
fn an_i64_chunk_on_an_f32_operation_is_refused_naming_both_dtypes() {
    let message =
        rejection(check(&first_piece(ElementType::I64, 4000), 0, &link(ElementType::F32)));
    assert_eq!(message, "dtype is WIRE_DTYPE_I64_LE, expected WIRE_DTYPE_F32_LE");
}

#[test]
fn f32_and_bf16_chunks_on_an_i64_operation_are_refused_naming_both_dtypes() {
    for (dtype, bytes, name) in [
        (ElementType::F32, 4000, "WIRE_DTYPE_F32_LE"),
        (ElementType::Bf16, 4000, "WIRE_DTYPE_BF16_LE"),
    ] {
        let message = rejection(check(&first_piece(dtype, bytes), 0, &link(ElementType::I64)));
        assert_eq!(message, format!("dtype is {name}, expected WIRE_DTYPE_I64_LE"));
    }
}

#[test]
fn an_i64_piece_must_carry_eight_bytes_per_element() {
    // The size of the same piece in f32: the dtype is right, the length is not.
    let message =
        rejection(check(&first_piece(ElementType::I64, 2000), 0, &link(ElementType::I64)));
    assert_eq!(message, "payload is 2000 bytes, expected 4000 (500 elements of WIRE_DTYPE_I64_LE)");
}
