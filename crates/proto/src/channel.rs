//! Channels to Albatross servers (coordinator, peers): the one place that builds a tonic
//! endpoint from an address and the process's settings (per-attempt connect timeout, HTTP/2
//! keep-alive, flow-control windows for bulk streams, TLS).

use std::time::Duration;

use tonic::transport::Endpoint;

use crate::tls::{Tls, host_of};

/// Why no endpoint could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("address {address:?} is invalid: {reason}")]
    Address { address: String, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// HTTP/2 stream flow-control window of peers, both ways: two pieces of the default 1 MiB in
/// flight, one being consumed while the next arrives. HTTP/2's default of 64 KiB would cap a
/// stream at a fraction of loopback bandwidth; a much larger one only lets a sender run ahead
/// into receive buffers that have left the cache by the time they are read: 16 MiB windows
/// measured 5–10 % lower busbw than 2 MiB at 2 ranks and 2–11 % at 4 ranks with 48 MiB
/// (`bench allreduce`, alternating runs on a 2-core machine). A link whose bandwidth × round trip exceeds the
/// window (25 Gb/s at 0.7 ms) needs larger pieces and windows (see
/// `CollectiveConfig::with_piece_bytes` in `albatross-collective`).
pub const DEFAULT_STREAM_WINDOW_BYTES: u32 = 2 << 20;
/// HTTP/2 connection window: a reduce stream and a state transfer can share a connection.
pub const DEFAULT_CONNECTION_WINDOW_BYTES: u32 = 2 * DEFAULT_STREAM_WINDOW_BYTES;

/// How peers are dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Limit of one connection attempt.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval; a peer that does not answer within `keep_alive_timeout` is dead.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// HTTP/2 flow-control windows (see [`DEFAULT_STREAM_WINDOW_BYTES`]).
    pub stream_window_bytes: u32,
    pub connection_window_bytes: u32,
    /// First and largest pause between connection attempts (each pause is jittered).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive refused connections after which the peer counts as unreachable at once,
    /// deadline or not: a quorum member listens before it joins, so a refusal means its
    /// process is gone, and waiting out a step-long deadline would only delay recovery.
    pub refused_limit: u32,
    /// Mutual TLS towards peers (their certificates must name their advertised host).
    pub tls: Option<Tls>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(10),
            stream_window_bytes: DEFAULT_STREAM_WINDOW_BYTES,
            connection_window_bytes: DEFAULT_CONNECTION_WINDOW_BYTES,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            refused_limit: 5,
            tls: None,
        }
    }
}

/// The endpoint for a server's `host:port` (or a full URI, whose scheme is replaced: https with
/// TLS, http without).
///
/// # Errors
/// When `address` is not a valid URI authority, or the TLS configuration is refused.
pub fn endpoint(address: &str, options: &ChannelOptions) -> Result<Endpoint, EndpointError> {
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let uri = match address.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{address}"),
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(|err| EndpointError::Address {
        address: address.to_owned(),
        reason: err.to_string(),
    })?;
    if let Some(tls) = &options.tls {
        endpoint = endpoint
            .tls_config(tls.client(host_of(address)))
            .map_err(|e| EndpointError::Tls(e.to_string()))?;
    }
    Ok(endpoint
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(options.stream_window_bytes)
        .initial_connection_window_size(options.connection_window_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_follows_tls_and_bad_addresses_are_named() {
        let plain = endpoint("https://127.0.0.1:7070", &ChannelOptions::default()).expect("ok");
        assert_eq!(plain.uri().to_string(), "http://127.0.0.1:7070/");
        let bare = endpoint("127.0.0.1:7070", &ChannelOptions::default()).expect("ok");
        assert_eq!(bare.uri().to_string(), "http://127.0.0.1:7070/");
        let err = endpoint("bad host:1", &ChannelOptions::default()).expect_err("invalid");
        assert!(err.to_string().starts_with("address \"bad host:1\" is invalid: "), "{err}");
    }
}
