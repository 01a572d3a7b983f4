use super::step::Generation;

/// Names one collective operation: every rank issues the same operations of a step in the same
/// order, so `(generation, step, op_seq)` identifies an operation across the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpTag {
    pub generation: Generation,
    pub step: u64,
    pub op_seq: u64,
}

/// What a collective operation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectiveOp {
    /// Bulk sum of a gradient buffer: reduce-scatter then all-gather.
    AllReduceSum,
    /// Copy of the root's buffer to every rank.
    Broadcast,
    /// Sum of a handful of f64 scalars in one message.
    ScalarSum,
}

/// How a payload's elements travel (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    F32,
    /// bfloat16, accumulated in f32 by the receiver: half the bytes.
    Bf16,
    F64,
    /// Two's-complement i64, summed with wrapping addition: exact and order-independent.
    I64,
}

impl ElementType {
    /// Bytes per element on the wire.
    pub fn bytes(self) -> usize {
        match self {
            Self::Bf16 => 2,
            Self::F32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }
}
