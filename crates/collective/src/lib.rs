//! Ring all-reduce over gRPC (`albatross.v1.PeerService`): reduce-scatter then all-gather,
//! pipelined pieces, optional bf16 wire compression, an exact i64 all-reduce (wrapping
//! addition), broadcast and a small scalar all-reduce.
//!
//! - [`schedule`]: the sans-IO ring schedule (segments, pieces, which piece every rank sends
//!   and receives in which order, and what each send waits for).
//! - [`compress`]: payload encodings (raw little-endian f32, bf16 with f32 accumulation, f64);
//!   `exact`: raw little-endian i64 summed with wrapping addition; `codec`: what the ring
//!   driver needs of either.
//! - [`Collective`]: a worker's handle: `all_reduce_sum`, `all_reduce_sum_i64`, `broadcast`,
//!   `scalar_sum`, and the
//!   [`PeerServer`] that receives pieces from the ring predecessor.
//!
//! One operation on one rank: it registers with the worker's registry (tag, members, the
//! pieces it expects), opens one client stream `Reduce` to its ring successor and, in a single
//! loop, applies pieces arriving from its predecessor (through the `PeerServer`, which checks
//! each chunk against the plan) and sends each piece as soon as the plan says it is final. The
//! loop ends on completion, on the deadline, on the cancellation token, or on the first broken
//! link; dropping the operation closes its streams, so a failure propagates around the ring.
//!
//! Usage by a worker:
//! ```no_run
//! # async fn demo(quorum: albatross_proto::domain::Quorum, grads: &mut [f32])
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use albatross_collective::{Collective, CollectiveConfig, OpContext};
//! let collective = Collective::new(CollectiveConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:7070").await?;
//! let server = collective.config().server.server_builder()
//!     .add_service(collective.peer_server().into_service())
//!     .serve_with_incoming(albatross_proto::services::incoming(listener));
//! tokio::spawn(server);
//! let cancel = tokio_util::sync::CancellationToken::new();
//! collective.all_reduce_sum(&OpContext::for_quorum(&quorum, 0, cancel), grads).await?;
//! # Ok(()) }
//! ```
//!
//! Invariants:
//! - every rank ends with bit-identical bytes (each segment is reduced once, along the ring in
//!   a fixed order, and its owner's bytes are copied to every rank);
//! - a chunk from another generation or operation is rejected (`FAILED_PRECONDITION`), never
//!   mixed in; only the expected quorum member may send (`PERMISSION_DENIED`); a malformed
//!   chunk is `INVALID_ARGUMENT` naming the field;
//! - every operation ends within its deadline or on cancellation: no partial result is ever
//!   returned as success.

mod channel;
mod chunk;
mod codec;
mod collective;
pub mod compress;
mod config;
mod error;
mod exact;
mod framing;
mod landing;
mod op;
mod payload;
mod reduce_call;
mod reduce_route;
mod registry;
mod ring;
mod scalar;
pub mod schedule;
mod server;
mod shared;
#[doc(hidden)]
pub mod testing;

pub use albatross_proto::channel::ChannelOptions;
pub use channel::{connect, jitter};
pub use collective::Collective;
pub use compress::WireFormat;
pub use config::CollectiveConfig;
pub use error::{CollectiveError, op_name};
pub use op::{OpContext, default_deadline};
pub use payload::Payload;
pub use reduce_route::PeerRouter;
pub use scalar::MAX_SCALARS;
pub use server::{
    PeerServer, SenderAuth, ServerOptions, StateSource, StateStream, TrustClaimedSender,
};
pub use shared::OpProgress;
