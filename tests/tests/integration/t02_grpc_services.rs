//! Every Albatross server exposes `grpc.health.v1` (Kubernetes probes) and reflection over the
//! v1 contract. Served here on 127.0.0.1:0 and stopped through a shutdown signal.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Server};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn serve() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_reporter, health) = albatross_proto::services::health();
    let reflection = albatross_proto::services::reflection().expect("reflection");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        Server::builder().add_service(health).add_service(reflection).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        ),
    );
    Running { addr, stop, task }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_contract() {
    let server = serve().await;
    let channel = channel(server.addr).await;

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in
        ["albatross.v1.CoordinatorService", "albatross.v1.PeerService", "grpc.health.v1.Health"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }

    // A file of the contract is served by name, so grpcurl can describe messages.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "albatross.v1.CoordinatorService".into(),
        )),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    assert!(
        matches!(response.message_response, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
        "{response:?}"
    );

    server.stop.send(()).expect("server still running");
    server.task.await.expect("join").expect("server stopped cleanly");
}

/// The cleartext health-only port answers from the same reporter as the main server, so a
/// probe sees what a TLS client would; it stops with its shutdown signal.
#[tokio::test]
async fn the_health_only_port_shares_the_main_servers_status() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (reporter, health) = albatross_proto::services::health();
    reporter
        .set_service_status("albatross.v1.PeerService", tonic_health::ServingStatus::NotServing)
        .await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(albatross_proto::services::serve_health_only(
        listener,
        health.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = HealthClient::new(channel(addr).await);
    let check = |service: &str| HealthCheckRequest { service: service.to_owned() };
    let status = client.check(check("albatross.v1.PeerService")).await.expect("check");
    assert_eq!(status.into_inner().status(), ServingStatus::NotServing);
    reporter
        .set_service_status("albatross.v1.PeerService", tonic_health::ServingStatus::Serving)
        .await;
    let status = client.check(check("albatross.v1.PeerService")).await.expect("check");
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);
    let unknown = client.check(check("no.such.Service")).await.expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    stop.send(()).expect("server running");
    task.await.expect("join").expect("clean stop");
}
