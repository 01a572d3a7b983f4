//! The coordinator: membership, per-step quorum, failure detection, the exactly-once data cursor,
//! checkpoint scheduling, durable state, gRPC service, status page and metrics.
//!
//! Invariants:
//! - the decision core ([`Core`]) is sans-IO: events plus an injected clock in, replies and
//!   [`Effect`]s out; the gRPC service and HTTP page are thin shells around an actor owning it;
//! - a step commits only if every member of its quorum voted ok with the same state hash;
//! - the data cursor advances only when a step is decided (committed, or skipped for
//!   non-finite values), by exactly one global batch;
//! - generations strictly increase, across restarts too (persisted before use), and the durable
//!   state is written before any reply that depends on it.
//!
//! Entry point for `albatross coordinator --job FILE --listen ADDR --http ADDR --state-dir DIR
//! [--token-file F] [--metrics-log F] [--events-log F] [--ready-file F]`:
//!
//! ```no_run
//! # async fn cli() -> Result<(), Box<dyn std::error::Error>> {
//! use albatross_coordinator::{CoordinatorOptions, read_token_file, run_coordinator};
//! let job = albatross_proto::job::JobSpec::from_path("job.toml".as_ref())?;
//! let options = CoordinatorOptions {
//!     job,
//!     epoch_size: 1_000_000, // samples per epoch, from the prepared data's manifest
//!     listen: "0.0.0.0:50051".parse()?,
//!     http: Some("0.0.0.0:8080".parse()?),
//!     state_dir: "state".into(),
//!     token: Some(read_token_file("token".as_ref())?),
//!     data_fingerprint: None, // or the prepared data manifest's SHA-256
//!     metrics_log: Some("metrics.jsonl".into()), // one JSON line per decided step
//!     events_log: Some("events.jsonl".into()), // one JSON line per decision of the core
//!     tls: None,                               // or TLS: albatross_proto::tls::Tls::load(..)
//!     ready_file: None, // or where to write the bound addresses once serving
//!     health_listen: None, // or a cleartext health-only port for probes when TLS is on
//! };
//! run_coordinator(options, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

mod actor;
mod auth;
mod checkpoint;
mod commit;
mod config;
mod core;
mod effect;
mod error;
mod events_log;
mod failure;
mod http;
mod json_lines;
mod membership;
mod metrics_log;
mod quorum;
mod ready_file;
mod resume;
mod server;
mod service;
mod state_file;
mod status;
mod status_client;
mod step_records;
mod telemetry;

pub use auth::{TokenCheck, read_token_file};
pub use commit::VoteStatus;
pub use config::{CoreConfig, MAX_REGISTERED};
pub use core::Core;
pub use effect::{Durable, Effect};
pub use error::CoordinatorError;
pub use events_log::{LoggedEvent, read_events};
pub use ready_file::{ReadyInfo, write_ready_file};
pub use server::{CoordinatorOptions, Listeners, MAX_REQUEST_BYTES, run_coordinator, serve};
pub use service::{CoordinatorGrpc, MAX_POLL, parse_grpc_timeout, poll_deadline};
pub use state_file::{Restored, StateStore};
pub use status::status_json;
pub use status_client::{fetch_status, fetch_status_tls, status_table};

#[cfg(test)]
mod core_holder_test;
#[cfg(test)]
mod core_interleaving_test;
#[cfg(test)]
mod core_test;
#[cfg(test)]
mod ledger_test;
