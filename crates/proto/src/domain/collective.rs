use super::step::Generation;

/// Names one collective operation: every rank issues the same operations of a step in the same
/// order, so `(generation, step, op_seq)` identifies an operation across the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpTag {
    pub generation: Generation,
    pub step: u64,
    pub op_seq: u64,
}
