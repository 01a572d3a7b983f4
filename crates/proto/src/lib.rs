//! The contract between Albatross processes.
//!
//! - [`wire`]: the generated v1 protobuf messages, tonic clients and servers. Only this crate
//!   names them in conversions; everything else speaks [`domain`] types.
//! - [`domain`]: plain Rust types of the protocol (identities, quorums, votes, …). They never
//!   derive prost; a value of a domain type has passed validation.
//! - [`convert`]: the one place where wire and domain types meet, and the mapping of conversion
//!   errors to `tonic::Status`.
//! - [`job`]: the job spec (one TOML file), its validation and its fingerprint.
//! - [`services`]: gRPC health and reflection shared by every server; [`channel`]: the
//!   endpoint every client builds; [`tls`]: certificates for both.
//! - [`refusal`]: typed reasons a server attaches to a refused call's status.

pub mod channel;
pub mod convert;
pub mod domain;
pub mod job;
pub mod refusal;
pub mod services;
pub mod tls;
pub mod wire;

/// Version of the protocol this build speaks over the `albatross.v1` contract: what its messages
/// mean, not only their shape. 2: state hashes are BLAKE3 (1: SHA-256), so a worker of another
/// version could never agree with this one in a vote or a state transfer; the coordinator
/// refuses it at join.
pub const PROTOCOL_VERSION: u32 = 2;
