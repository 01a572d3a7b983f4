//! The one place where wire (prost) and domain types meet.
//!
//! Domain → wire is infallible (`From`). Wire → domain is `TryFrom` and fails with a
//! [`ConvertError`] that names the offending field by its path in the message, e.g.
//! `quorum.members[1].worker.worker_id`. Servers turn it into `INVALID_ARGUMENT`.

mod common;
mod control;
mod error;
mod quorum;
mod request;
mod status;

pub use error::ConvertError;

#[cfg(test)]
mod convert_test;
