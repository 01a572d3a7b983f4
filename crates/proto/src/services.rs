//! gRPC services every Albatross server exposes besides its own: `grpc.health.v1` (used by the
//! Kubernetes gRPC probes) and server reflection (so `grpcurl` works without the .proto files).

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
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
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
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
