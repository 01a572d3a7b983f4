//! Channels to peers: the one helper that connects (per-attempt timeout, HTTP/2 keep-alive,
//! large flow-control windows for bulk streams, retry with jittered backoff until the
//! operation's deadline) and a pool that reuses one connection per peer address.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::error::CollectiveError;

/// HTTP/2 stream flow-control window of peers, both ways: two pieces of the default 1 MiB in
/// flight, one being consumed while the next arrives. HTTP/2's default of 64 KiB would cap a
/// stream at a fraction of loopback bandwidth; a much larger one only lets a sender run ahead
/// into receive buffers that have left the cache by the time they are read: 16 MiB windows
/// measured 5–10 % lower busbw than 2 MiB at 2 ranks and 2–11 % at 4 ranks with 48 MiB
/// (`bench allreduce`, alternating runs on a 2-core machine). A link whose bandwidth × round trip exceeds the
/// window (25 Gb/s at 0.7 ms) needs larger pieces and windows (see
/// [`crate::CollectiveConfig::with_piece_bytes`]).
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
    pub tls: Option<albatross_proto::tls::Tls>,
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

/// The endpoint for a peer's `host:port` (or a full `http://` URI).
///
/// # Errors
/// When `address` is not a valid URI authority.
pub fn endpoint(address: &str, options: &ChannelOptions) -> Result<Endpoint, CollectiveError> {
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let uri = match address.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{address}"),
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(|err| {
        CollectiveError::InvalidArgument(format!("peer address {address:?} is invalid: {err}"))
    })?;
    if let Some(tls) = &options.tls {
        endpoint = endpoint
            .tls_config(tls.client(albatross_proto::tls::host_of(address)))
            .map_err(|e| CollectiveError::InvalidArgument(format!("TLS configuration: {e}")))?;
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

/// A pseudo-random factor in [0.5, 1.5) for backoff jitter.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    0.5 + f64::from(nanos % 1000) / 1000.0
}

/// Connect to `address`, retrying until `deadline` or cancellation.
///
/// # Errors
/// [`CollectiveError::Unreachable`] when no attempt succeeded before the deadline,
/// [`CollectiveError::Cancelled`] when `cancel` fired first.
pub async fn connect(
    address: &str,
    options: &ChannelOptions,
    deadline: Instant,
    cancel: &CancellationToken,
    op: &str,
) -> Result<Channel, CollectiveError> {
    let endpoint = endpoint(address, options)?;
    let mut backoff = options.initial_backoff;
    let mut attempts = 0u32;
    let mut refused = 0u32;
    loop {
        attempts += 1;
        let attempt = tokio::time::timeout_at(deadline, endpoint.connect());
        let reason = tokio::select! {
            () = cancel.cancelled() => {
                return Err(CollectiveError::Cancelled {
                    op: op.to_owned(),
                    progress: format!("while connecting to {address}"),
                });
            }
            result = attempt => match result {
                Ok(Ok(channel)) => return Ok(channel),
                Ok(Err(err)) => {
                    refused = if is_refused(&err) { refused + 1 } else { 0 };
                    err.to_string()
                }
                Err(_) => "deadline passed during a connection attempt".to_owned(),
            },
        };
        let pause = backoff.mul_f64(jitter());
        if refused >= options.refused_limit.max(1) {
            return Err(CollectiveError::Unreachable {
                address: address.to_owned(),
                reason: format!("connection refused {refused} times in a row: {reason}"),
            });
        }
        if Instant::now() + pause >= deadline {
            return Err(CollectiveError::Unreachable {
                address: address.to_owned(),
                reason: format!("{attempts} attempts failed, last: {reason}"),
            });
        }
        tracing::debug!(address, attempts, reason, "peer not reachable yet");
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// Whether a connection error is, somewhere in its chain, an actively refused connection.
fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// One channel per peer address, reused across operations.
#[derive(Debug, Default)]
pub(crate) struct ChannelPool {
    options: ChannelOptions,
    channels: Mutex<HashMap<String, Channel>>,
}

impl ChannelPool {
    pub fn new(options: ChannelOptions) -> Self {
        Self { options, channels: Mutex::default() }
    }

    pub async fn get(
        &self,
        address: &str,
        deadline: Instant,
        cancel: &CancellationToken,
        op: &str,
    ) -> Result<Channel, CollectiveError> {
        let cached = self.lock().get(address).cloned();
        if let Some(channel) = cached {
            return Ok(channel);
        }
        let channel = connect(address, &self.options, deadline, cancel, op).await?;
        self.lock().insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Forget the channel to a peer that failed, so the next operation dials afresh.
    pub fn evict(&self, address: &str) {
        self.lock().remove(address);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_peer_is_unreachable_long_before_the_deadline() {
        // A port that was just free: nothing listens there any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let err = connect(
            &address,
            &ChannelOptions::default(),
            deadline,
            &CancellationToken::new(),
            "test op",
        )
        .await
        .expect_err("nobody listens");
        assert!(matches!(err, CollectiveError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
}
