//! The `PeerService` server: a thin shell that checks each `ReduceChunk` and hands its payload
//! to the local operation through the [`Registry`]. `FetchState` is answered by an installed
//! [`StateSource`] (the worker's training state) or `UNAVAILABLE` while none is installed.
//!
//! `Reduce` streams normally arrive through [`crate::reduce_route::PeerRouter`], which reads their frames
//! without copying payloads; the generated handler below serves the same logic over tonic's
//! decoded stream for callers that mount the plain generated service.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use albatross_proto::domain::WorkerRef;
use albatross_proto::wire::v1::peer_service_server::{PeerService, PeerServiceServer};
use albatross_proto::wire::v1::{FetchStateRequest, ReduceAck, ReduceChunk, StateChunk};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::chunk;
use crate::error::op_name;
use crate::framing::RawChunk;
use crate::registry::{Expect, Incoming, Link, Registry, Reject};
use albatross_proto::channel::{DEFAULT_CONNECTION_WINDOW_BYTES, DEFAULT_STREAM_WINDOW_BYTES};

/// Authentication hook: decides whether a stream may speak for the worker it names. Until the
/// coordinator issues credentials, [`TrustClaimedSender`] accepts the claim and membership of
/// the quorum is checked afterwards.
pub trait SenderAuth: Debug + Send + Sync + 'static {
    /// # Errors
    /// A status (typically `UNAUTHENTICATED` or `PERMISSION_DENIED`) to refuse the stream.
    fn authorize(
        &self,
        claimed: &WorkerRef,
        metadata: &MetadataMap,
        remote: Option<SocketAddr>,
    ) -> Result<(), Status>;
}

/// Accepts every claimed sender identity (membership is still enforced).
#[derive(Debug, Default, Clone, Copy)]
pub struct TrustClaimedSender;

impl SenderAuth for TrustClaimedSender {
    fn authorize(
        &self,
        _: &WorkerRef,
        _: &MetadataMap,
        _: Option<SocketAddr>,
    ) -> Result<(), Status> {
        Ok(())
    }
}

/// The stream of a state transfer.
pub type StateStream = Pin<Box<dyn Stream<Item = Result<StateChunk, Status>> + Send + 'static>>;

/// Serves this worker's training state to a peer that heals (implemented by the worker).
pub trait StateSource: Debug + Send + Sync + 'static {
    /// # Errors
    /// A status explaining why the state cannot be served (e.g. it is older than requested).
    fn fetch_state(&self, request: FetchStateRequest) -> Result<StateStream, Status>;
}

/// Where the worker installs its [`StateSource`] once it holds state.
pub(crate) type StateSlot = Arc<RwLock<Option<Arc<dyn StateSource>>>>;

/// Limits and HTTP/2 settings of the peer server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Largest encoded `ReduceChunk` accepted (and sent).
    pub max_message_bytes: usize,
    /// How long a stream that arrives before the local operation started waits for it.
    pub early_stream_wait: Duration,
    /// HTTP/2 flow-control windows of streams to this server (see
    /// [`DEFAULT_STREAM_WINDOW_BYTES`]).
    pub stream_window_bytes: u32,
    pub connection_window_bytes: u32,
    pub max_frame_bytes: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 << 20,
            early_stream_wait: Duration::from_secs(30),
            stream_window_bytes: DEFAULT_STREAM_WINDOW_BYTES,
            connection_window_bytes: DEFAULT_CONNECTION_WINDOW_BYTES,
            max_frame_bytes: 1 << 20,
        }
    }
}

impl ServerOptions {
    /// A tonic server builder with these HTTP/2 settings; add the peer service (and health,
    /// reflection, …) to it.
    pub fn server_builder(&self) -> tonic::transport::Server {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(self.stream_window_bytes)
            .initial_connection_window_size(self.connection_window_bytes)
            .max_frame_size(self.max_frame_bytes)
            .http2_keepalive_interval(Some(Duration::from_secs(5)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
    }
}

/// The `PeerService` implementation of one worker.
#[derive(Debug, Clone)]
pub struct PeerServer {
    registry: Arc<Registry>,
    auth: Arc<dyn SenderAuth>,
    state: StateSlot,
    options: ServerOptions,
}

impl PeerServer {
    pub(crate) fn new(
        registry: Arc<Registry>,
        auth: Arc<dyn SenderAuth>,
        state: StateSlot,
        options: ServerOptions,
    ) -> Self {
        Self { registry, auth, state, options }
    }

    /// The generated tonic service alone, with the message size limit applied (its `Reduce`
    /// decodes through tonic's buffers).
    pub fn into_generated_service(self) -> PeerServiceServer<Self> {
        let limit = self.options.max_message_bytes;
        PeerServiceServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }
}

/// Parse the `grpc-timeout` header (`<digits><unit>`, unit one of `HMSmun`).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Reports a stream that ends abnormally to the local operation, also when the handler is
/// dropped mid-stream (connection reset).
struct FailureGuard {
    failures: mpsc::UnboundedSender<String>,
    armed: Option<String>,
}

impl FailureGuard {
    fn fail(&mut self, reject: Reject) -> Status {
        let status = Status::from(reject);
        self.armed = None;
        let _ = self.failures.send(status.message().to_owned());
        status
    }
}

impl Drop for FailureGuard {
    fn drop(&mut self) {
        if let Some(reason) = self.armed.take() {
            let _ = self.failures.send(reason);
        }
    }
}

/// Where a `Reduce` handler reads chunks from, in order; `Ok(None)` at the end of the stream.
pub(crate) trait ChunkSource: Send {
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<RawChunk>, Status>> + Send;
}

impl ChunkSource for Streaming<ReduceChunk> {
    async fn next_chunk(&mut self) -> Result<Option<RawChunk>, Status> {
        Ok(self.message().await?.map(RawChunk::from))
    }
}

impl PeerServer {
    /// Serves one `Reduce` stream: identifies and authorises its sender from the first chunk,
    /// links it to the local operation (waiting for it within the client's deadline, capped by
    /// `early_stream_wait`) and hands over every checked piece.
    pub(crate) async fn serve_reduce(
        &self,
        metadata: &MetadataMap,
        remote: Option<SocketAddr>,
        mut source: impl ChunkSource,
    ) -> Result<ReduceAck, Status> {
        let wait = grpc_timeout(metadata)
            .map_or(self.options.early_stream_wait, |t| t.min(self.options.early_stream_wait));
        let first = tokio::time::timeout(wait, source.next_chunk())
            .await
            .map_err(|_| Status::deadline_exceeded(format!("no chunk arrived within {wait:?}")))??
            .ok_or_else(|| {
                Status::invalid_argument(
                    "empty Reduce stream: an operation sends at least one chunk",
                )
            })?;
        let (tag, sender) = chunk::identify(&first.header)?;
        self.auth.authorize(&sender, metadata, remote)?;
        let link = self.registry.claim(tag, &sender, Instant::now() + wait).await.map_err(|r| {
            tracing::warn!(op = op_name(&tag), %sender, ?r, "stream refused");
            Status::from(r)
        })?;
        receive(link, first, source).await
    }

    /// The largest message a `Reduce` stream may carry.
    pub(crate) fn max_message_bytes(&self) -> usize {
        self.options.max_message_bytes
    }
}

async fn receive(
    link: Link,
    first: RawChunk,
    mut stream: impl ChunkSource,
) -> Result<ReduceAck, Status> {
    let op = op_name(&link.tag);
    let mut guard = FailureGuard {
        failures: link.failures.clone(),
        armed: Some(format!("stream from {} for {op} was dropped", link.sender)),
    };
    let expected = match &link.expect {
        Expect::Ring { recvs, .. } => recvs.len(),
        Expect::Scalar { .. } => 1,
    };
    let mut next = Some(first);
    let mut index = 0usize;
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None => {
                // Once every piece is handed over the local operation may finish first; only
                // the end of the stream is still awaited.
                let message = tokio::select! {
                    message = stream.next_chunk() => message,
                    () = link.inbox.closed(), if index < expected => {
                        return Err(guard.fail(Reject::Ended(format!(
                            "the receiving rank ended {op} after {index} of {expected} pieces"
                        ))));
                    }
                };
                match message {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) if index == expected => break,
                    Ok(None) => {
                        return Err(guard.fail(Reject::Invalid(format!(
                            "stream from {} ended after {index} of {expected} pieces of {op}",
                            link.sender
                        ))));
                    }
                    Err(status) => {
                        let reason = format!(
                            "stream from {} broke after {index} of {expected} pieces of {op}: {}",
                            link.sender,
                            status.message()
                        );
                        // A chunk that cannot be read is the sender's fault, as one that reads
                        // but contradicts the plan: keep its code rather than `ABORTED`.
                        let reject = match status.code() {
                            Code::InvalidArgument | Code::OutOfRange | Code::Unimplemented => {
                                Reject::Invalid(reason)
                            }
                            _ => Reject::Ended(reason),
                        };
                        return Err(guard.fail(reject));
                    }
                }
            }
        };
        if let Err(reject) = chunk::check(&chunk, index, &link) {
            tracing::warn!(op, sender = %link.sender, index, ?reject, "chunk rejected");
            return Err(guard.fail(reject));
        }
        let slot = match link.expect {
            Expect::Ring { .. } => index,
            Expect::Scalar { .. } => link.sender_rank,
        };
        if link.inbox.send(Incoming { index: slot, payload: chunk.payload }).await.is_err() {
            return Err(guard.fail(Reject::Ended(format!(
                "the receiving rank ended {op} after {index} of {expected} pieces"
            ))));
        }
        index += 1;
    }
    guard.armed = None;
    Ok(ReduceAck { pieces_received: index as u64 })
}

#[tonic::async_trait]
impl PeerService for PeerServer {
    async fn reduce(
        &self,
        request: Request<Streaming<ReduceChunk>>,
    ) -> Result<Response<ReduceAck>, Status> {
        let remote = request.remote_addr();
        let (metadata, _, stream) = request.into_parts();
        self.serve_reduce(&metadata, remote, stream).await.map(Response::new)
    }

    type FetchStateStream = StateStream;

    async fn fetch_state(
        &self,
        request: Request<FetchStateRequest>,
    ) -> Result<Response<StateStream>, Status> {
        let source = self.state.read().unwrap_or_else(PoisonError::into_inner).clone();
        match source {
            Some(source) => source.fetch_state(request.into_inner()).map(Response::new),
            None => Err(Status::unavailable(
                "this worker has no training state to serve yet (no state source installed)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout_units() {
        let mut meta = MetadataMap::new();
        for (value, want) in [
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("2M", Some(Duration::from_secs(120))),
            ("7u", Some(Duration::from_micros(7))),
            ("S", None),
            ("12x", None),
        ] {
            meta.insert("grpc-timeout", value.parse().expect("ascii"));
            assert_eq!(grpc_timeout(&meta), want, "{value}");
        }
    }
}
