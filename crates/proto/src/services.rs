//! gRPC services every Albatross server exposes besides its own: `grpc.health.v1` (used by the
//! Kubernetes gRPC probes) and server reflection (so `grpcurl` works without the .proto files).

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_reflection::server::v1::{ServerReflection, ServerReflectionServer};

use crate::wire::FILE_DESCRIPTOR_SET;

/// The health service and the reporter that flips it. The overall status (empty service name)
/// starts as `SERVING`; a server marks its own service serving once it is ready.
pub fn health() -> (HealthReporter, HealthServer<impl Health>) {
    tonic_health::server::health_reporter()
}

/// Serves only `health` (a clone of the main server's, so both answer alike), in cleartext, on
/// `listener` until `shutdown`. This is the port Kubernetes' gRPC probes use when the main port
/// requires client certificates, which a kubelet cannot present; it tells nothing but whether
/// the process serves.
///
/// # Errors
/// When the server fails.
pub async fn serve_health_only<H: Health>(
    listener: TcpListener,
    health: HealthServer<H>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}

/// The connections `listener` accepts, as a tonic server's incoming stream, each with
/// `TCP_NODELAY` set. Every server here binds its own listener (port 0 in tests, the address
/// reported before serving), and `serve_with_incoming` ignores the builder's `tcp_nodelay`.
/// Without it Nagle's algorithm holds back a small write (a quorum answer, an all-reduce
/// acknowledgement) while earlier bytes are unacknowledged, and the peer's delayed ACK releases
/// it only after up to 40 ms: a fixed floor under every request/answer exchange.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Reflection over the v1 contract and the health service.
///
/// # Errors
/// Fails only if an embedded descriptor set is malformed, which is a build defect.
pub fn reflection() -> Result<ServerReflectionServer<impl ServerReflection>, ReflectionError> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|source| ReflectionError(source.to_string()))
}

/// The embedded descriptor sets could not be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the gRPC reflection service: {0}")]
pub struct ReflectionError(String);

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_delayed_acks() {
        let listener = super::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut incoming = super::incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming.next().await.expect("a connection").expect("accepted");
        assert!(accepted.nodelay().expect("TCP_NODELAY readable"), "TCP_NODELAY is off");
    }
}
