//! The `PeerService` as mounted on a worker's server: `Reduce` streams are read straight from
//! their HTTP/2 DATA frames ([`ChunkReader`]), so a payload goes from the connection's read
//! buffer to the add without being copied; every other method is the generated service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use albatross_proto::wire::v1::ReduceAck;
use albatross_proto::wire::v1::peer_service_server::PeerServiceServer;
use bytes::{BufMut, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower_service::Service;

use crate::framing::{ChunkReader, FrameError, PREFIX_LEN, RawChunk};
use crate::server::{ChunkSource, PeerServer};

/// The HTTP/2 path of `PeerService.Reduce`.
pub(crate) const REDUCE_PATH: &str = "/albatross.v1.PeerService/Reduce";

impl PeerServer {
    /// The service to mount: `Reduce` streams are read without copying payloads, every other
    /// method goes to the generated service (with the message size limit applied).
    pub fn into_service(self) -> PeerRouter {
        PeerRouter::new(self)
    }
}

/// A worker's `PeerService`: zero-copy `Reduce`, generated handlers for the rest.
#[derive(Debug, Clone)]
pub struct PeerRouter {
    server: PeerServer,
    generated: PeerServiceServer<PeerServer>,
}

impl PeerRouter {
    pub(crate) fn new(server: PeerServer) -> Self {
        let generated = server.clone().into_generated_service();
        Self { server, generated }
    }
}

impl NamedService for PeerRouter {
    const NAME: &'static str = <PeerServiceServer<PeerServer> as NamedService>::NAME;
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl Service<http::Request<Body>> for PeerRouter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both handlers are always ready (the generated service holds no back-pressure).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> ResponseFuture {
        if request.uri().path() == REDUCE_PATH {
            let server = self.server.clone();
            Box::pin(async move { Ok(reduce(server, request).await) })
        } else {
            Box::pin(self.generated.call(request))
        }
    }
}

/// Serves one `Reduce` stream read from raw frames; every failure becomes a gRPC status.
async fn reduce(server: PeerServer, request: http::Request<Body>) -> http::Response<Body> {
    let request = tonic::Request::from_http(request);
    let remote = request.remote_addr();
    let (metadata, _, body) = request.into_parts();
    let source = FrameSource { body, reader: ChunkReader::new(server.max_message_bytes()) };
    match server.serve_reduce(&metadata, remote, source).await {
        Ok(ack) => ok_response(&ack),
        Err(status) => status.into_http(),
    }
}

/// A gRPC response carrying `ack`, then `grpc-status: 0` in the trailers.
fn ok_response(ack: &ReduceAck) -> http::Response<Body> {
    let mut data = BytesMut::with_capacity(PREFIX_LEN + ack.encoded_len());
    data.put_u8(0);
    data.put_u32(u32::try_from(ack.encoded_len()).unwrap_or(u32::MAX));
    ack.encode_raw(&mut data);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [Ok::<_, Status>(Frame::data(data.freeze())), Ok(Frame::trailers(trailers))];
    let mut response = http::Response::new(Body::new(StreamBody::new(tokio_stream::iter(frames))));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The status a stream that cannot be read ends with.
fn frame_status(err: FrameError) -> Status {
    match err {
        FrameError::TooLarge { .. } => Status::out_of_range(err.to_string()),
        FrameError::Compressed => Status::unimplemented(err.to_string()),
        FrameError::Malformed(_) => Status::invalid_argument(err.to_string()),
    }
}

/// Chunks read from a request body's DATA frames.
struct FrameSource {
    body: Body,
    reader: ChunkReader,
}

impl ChunkSource for FrameSource {
    async fn next_chunk(&mut self) -> Result<Option<RawChunk>, Status> {
        loop {
            if let Some(chunk) = self.reader.next_chunk().map_err(frame_status)? {
                return Ok(Some(chunk));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    // Trailers (none are expected from a client) carry nothing to read.
                    if let Ok(data) = frame.into_data() {
                        self.reader.push(data);
                    }
                }
                Some(Err(status)) => return Err(status),
                None if self.reader.at_message_boundary() => return Ok(None),
                None => {
                    return Err(Status::invalid_argument(
                        "the stream ended in the middle of a message",
                    ));
                }
            }
        }
    }
}
