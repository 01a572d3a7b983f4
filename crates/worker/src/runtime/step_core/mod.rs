//! The worker's step protocol as a decision core: a plain state machine that takes [`Event`]s
//! (with the current time and the state the worker holds passed in) and returns the
//! [`Command`]s the async driver (`step.rs`) executes. No I/O, no clock, no tokio, so tests
//! replay any fault path exactly.
//!
//! One step: poll quorum → (heal) → compute → all-reduce → vote → apply, skip or discard.
//! Invariants:
//! - an update is applied only after the coordinator's commit of that very step tag; a step
//!   voted ok whose decision was not heard stays pending across a rejoin and is settled by the
//!   join's committed tag (applied if it matches, discarded otherwise);
//! - every batch of commands holds at most one wait ([`Command::is_wait`]), and it comes last;
//!   [`Command::End`] and [`Command::Fail`] come last too and end the session;
//! - the step's gradient buffer lives in the driver: set by the computation, taken by
//!   [`Command::Apply`], dropped by [`Command::Discard`].

mod phases;
mod protocol;
mod session;

pub(crate) use protocol::*;
pub(crate) use session::StepCore;

#[cfg(test)]
#[path = "core_test.rs"]
mod tests;
