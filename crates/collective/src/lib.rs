//! Ring all-reduce over gRPC (`albatross.v1.PeerService`): reduce-scatter then all-gather,
//! pipelined chunks, bf16 wire compression, broadcast and a small scalar all-reduce.
//!
//! Not implemented yet (issue "Ring all-reduce over gRPC"). Invariants it will keep:
//! - every rank ends with bit-identical bytes (each chunk is reduced once, by its owner, in a
//!   fixed order);
//! - a chunk from another generation or operation is rejected, never mixed in;
//! - every operation ends within its deadline or on cancellation: no partial result is ever
//!   returned as success.
