//! The client side of a `Reduce` stream, written as raw HTTP/2: each piece goes out as two
//! DATA frames, its message prefix ([`message_prefix`]) and its payload segments as they are,
//! so the payload is never copied into an encode buffer (HTTP/2 writes it with vectored I/O).
//! The bytes are a standard gRPC client stream of `ReduceChunk`; the answer is read as gRPC
//! (status from headers or trailers, then the `ReduceAck`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use albatross_proto::wire::v1::{ReduceAck, ReduceChunk};
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderValue, Method, Request, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower_service::Service;

use crate::framing::{FrameError, PREFIX_LEN, message_prefix};
use crate::payload::Payload;
use crate::reduce_route::REDUCE_PATH;

/// One piece ready to go: the encoded message prefix and the payload that follows it.
#[derive(Debug)]
pub(crate) struct OutPiece {
    prefix: Bytes,
    payload: Payload,
}

impl OutPiece {
    /// `header` (its own payload empty) carrying `payload`.
    pub(crate) fn new(header: &ReduceChunk, payload: Payload) -> Result<Self, FrameError> {
        Ok(Self { prefix: message_prefix(header, payload.len())?, payload })
    }
}

/// The request body: pieces from the operation, as frames, until the sender is dropped.
struct PieceBody {
    pieces: mpsc::Receiver<OutPiece>,
    queued: VecDeque<Bytes>,
}

impl http_body::Body for PieceBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(segment) = self.queued.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(segment))));
        }
        match ready!(self.pieces.poll_recv(cx)) {
            Some(piece) => {
                self.queued.extend(piece.payload.segments().iter().cloned());
                Poll::Ready(Some(Ok(Frame::data(piece.prefix))))
            }
            None => Poll::Ready(None),
        }
    }
}

/// The `grpc-timeout` header value for `timeout` (milliseconds, at most 8 digits).
fn grpc_timeout_value(timeout: Duration) -> HeaderValue {
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    HeaderValue::from_str(&format!("{millis}m")).unwrap_or(HeaderValue::from_static("1m"))
}

/// Streams `pieces` to the peer behind `channel` as one `Reduce` call and returns its answer.
/// The call ends when the sender of `pieces` is dropped and the peer answered.
pub(crate) async fn reduce(
    mut channel: Channel,
    pieces: mpsc::Receiver<OutPiece>,
    timeout: Duration,
) -> Result<ReduceAck, Status> {
    let body = Body::new(PieceBody { pieces, queued: VecDeque::new() });
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http::Uri::from_static(REDUCE_PATH);
    *request.version_mut() = Version::HTTP_2;
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert("grpc-timeout", grpc_timeout_value(timeout));

    let transport = |e: tonic::transport::Error| Status::from_error(Box::new(e));
    std::future::poll_fn(|cx| channel.poll_ready(cx)).await.map_err(transport)?;
    let response = channel.call(request).await.map_err(transport)?;
    if response.status() != http::StatusCode::OK {
        return Err(http_failure(response.status()));
    }
    let (parts, mut body) = response.into_parts();
    // Trailers-only (an error before any message) puts the status in the headers.
    let mut status = grpc_status(&parts.headers);
    let mut data = BytesMut::new();
    while status.is_none() {
        let Some(frame) = body.frame().await else { break };
        match frame?.into_data() {
            Ok(bytes) if data.len() + bytes.len() <= MAX_ANSWER_BYTES => {
                data.extend_from_slice(&bytes);
            }
            Ok(_) => return Err(Status::internal("Reduce answer exceeds 4096 bytes")),
            Err(frame) => status = frame.trailers_ref().and_then(grpc_status),
        }
    }
    match status {
        Some(status) if status.code() == Code::Ok => decode_ack(&data),
        Some(status) => Err(status),
        None => Err(Status::internal("the Reduce answer carries no grpc-status")),
    }
}

/// An answer is one small `ReduceAck`: anything longer is not one.
const MAX_ANSWER_BYTES: usize = 4096;

/// The gRPC status in `headers`, if there is one. Only `grpc-status` and `grpc-message` are
/// read: tonic's parser panics on a malformed `grpc-status-details-bin`, which a peer controls.
fn grpc_status(headers: &http::HeaderMap) -> Option<Status> {
    let mut status_only = http::HeaderMap::new();
    for name in ["grpc-status", "grpc-message"] {
        if let Some(value) = headers.get(name) {
            status_only.insert(name, value.clone());
        }
    }
    Status::from_header_map(&status_only)
}

/// The status for an HTTP answer that is not 200 (the mapping gRPC specifies for HTTP codes).
fn http_failure(code: http::StatusCode) -> Status {
    let message = format!("the peer answered HTTP {code} to a Reduce call");
    match code.as_u16() {
        400 => Status::internal(message),
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::unimplemented(message),
        429 | 502 | 503 | 504 => Status::unavailable(message),
        _ => Status::unknown(message),
    }
}

/// The one `ReduceAck` message of a response body.
fn decode_ack(data: &[u8]) -> Result<ReduceAck, Status> {
    let malformed = |why: String| Status::internal(format!("malformed Reduce answer: {why}"));
    if data.len() < PREFIX_LEN {
        return Err(malformed(format!("{} bytes, no message", data.len())));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data[0] != 0 || data.len() != PREFIX_LEN + len {
        return Err(malformed(format!("a prefix of {len} bytes in {} bytes", data.len())));
    }
    ReduceAck::decode(&data[PREFIX_LEN..]).map_err(|e| malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_or_are_named_malformed() {
        let ack = ReduceAck { pieces_received: 42 };
        let mut data = vec![0];
        data.extend_from_slice(&(ack.encoded_len() as u32).to_be_bytes());
        data.extend_from_slice(&ack.encode_to_vec());
        assert_eq!(decode_ack(&data).expect("ack"), ack);
        let err = decode_ack(&data[..3]).expect_err("short");
        assert!(err.message().contains("malformed Reduce answer"), "{err:?}");
        data.push(0);
        assert!(decode_ack(&data).is_err(), "trailing bytes");
    }

    #[test]
    fn statuses_come_from_the_grpc_headers_only() {
        let mut headers = http::HeaderMap::new();
        assert!(grpc_status(&headers).is_none());
        headers.insert("grpc-status", HeaderValue::from_static("9"));
        headers.insert("grpc-message", HeaderValue::from_static("stale%20operation"));
        // Not base64: tonic's own parser would panic on it.
        headers.insert("grpc-status-details-bin", HeaderValue::from_static("!!not base64!!"));
        let status = grpc_status(&headers).expect("a status");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "stale operation");
        assert_eq!(http_failure(http::StatusCode::SERVICE_UNAVAILABLE).code(), Code::Unavailable);
        assert_eq!(http_failure(http::StatusCode::IM_A_TEAPOT).code(), Code::Unknown);
    }

    #[test]
    fn timeouts_are_whole_milliseconds_within_eight_digits() {
        assert_eq!(grpc_timeout_value(Duration::from_micros(10)), "1m");
        assert_eq!(grpc_timeout_value(Duration::from_secs(3)), "3000m");
        assert_eq!(grpc_timeout_value(Duration::from_secs(1 << 40)), "99999999m");
    }
}
