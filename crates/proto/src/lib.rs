//! The contract between Albatross processes.
//!
//! - [`wire`]: the generated v1 protobuf messages, tonic clients and servers. Only this crate
//!   names them in conversions; everything else speaks [`domain`] types.
//! - [`domain`]: plain Rust types of the protocol (identities, quorums, votes, …). They never
//!   derive prost; a value of a domain type has passed validation.
//! - [`convert`]: the one place where wire and domain types meet, and the mapping of conversion
//!   errors to `tonic::Status`.
//! - [`job`]: the job spec (one TOML file), its validation and its fingerprint.
//! - [`services`]: gRPC health and reflection shared by every server.

pub mod convert;
pub mod domain;
pub mod job;
pub mod services;
pub mod tls;
pub mod wire;

/// Version of the wire contract this build speaks (`albatross.v1`).
pub const PROTOCOL_VERSION: u32 = 1;
