//! A user-space TCP fault proxy: sits between processes of a training cluster on loopback and
//! injects network faults (delay, loss, partition, reset) into the traffic it forwards.
//!
//! The kernels this runs on have no `netem`, so everything happens here, per chunk read from a
//! socket. Each direction of a connection is a small pipeline: chunks are read, stamped with the
//! instant they may be delivered and written once that instant has passed. Stamps never decrease,
//! so a connection's byte order is preserved exactly as TCP would preserve it, and a delay does
//! not serialise the stream (many chunks can be in flight at once).
//!
//! The current fault lives in a [`watch`] channel that every connection task listens to, so a
//! change applies to existing connections at once, not only to new ones.

mod connection;
mod proxy;
mod shared;
mod spec;

pub use proxy::{BackgroundProxy, FaultProxy};
pub use shared::ProxyStats;
pub use spec::NetFault;

#[cfg(test)]
mod tests;
