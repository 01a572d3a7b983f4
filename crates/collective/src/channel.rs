//! Channels to peers: connecting with retries (jittered backoff until the operation's
//! deadline, a refused peer given up on early) and a pool that reuses one connection per peer
//! address. The endpoint itself (timeouts, keep-alive, windows, TLS) comes from
//! `albatross_proto::channel`, the one place every process builds its channels.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use albatross_proto::channel::{ChannelOptions, endpoint};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::error::CollectiveError;

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
    let endpoint = endpoint(address, options)
        .map_err(|err| CollectiveError::InvalidArgument(err.to_string()))?;
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
    use std::time::Duration;

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
