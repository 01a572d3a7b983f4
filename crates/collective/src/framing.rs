//! `ReduceChunk` messages on the wire with the payload kept out of every user-space copy.
//!
//! A gRPC message is a 5-byte prefix (compressed flag, big-endian u32 length) and the protobuf
//! encoding. The sending side encodes every field but `payload` with prost, appends the payload
//! field's key and length, and lets the payload follow as its own HTTP/2 DATA frame: the bytes
//! on the wire are a standard `ReduceChunk` (any gRPC peer reads them), but the payload is never
//! copied into an encode buffer. The receiving side ([`ChunkReader`]) scans messages
//! incrementally from the DATA frames as they arrive: the few header fields are collected and
//! decoded by prost, the payload passes through as slices of the frames themselves.

use std::collections::VecDeque;

use albatross_proto::wire::v1::ReduceChunk;
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::payload::Payload;

/// Field number of `ReduceChunk.payload`, and its key with wire type 2 (length-delimited).
const PAYLOAD_FIELD: u64 = 11;
const PAYLOAD_KEY: u8 = ((PAYLOAD_FIELD as u8) << 3) | 2;
/// gRPC message prefix: compressed flag and length.
pub(crate) const PREFIX_LEN: usize = 5;
/// Every field but the payload (tag, sender, kind, indices, offsets) takes far less.
const MAX_HEADER_BYTES: usize = 4096;
/// Longest varint (u64).
const MAX_VARINT: usize = 10;

/// A received chunk: its fields (with an empty `payload`) and the payload's segments.
#[derive(Debug, Clone)]
pub(crate) struct RawChunk {
    pub header: ReduceChunk,
    pub payload: Payload,
}

impl From<ReduceChunk> for RawChunk {
    fn from(mut chunk: ReduceChunk) -> Self {
        let payload = Payload::from(std::mem::take(&mut chunk.payload));
        Self { header: chunk, payload }
    }
}

/// Why a stream of messages cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("message of {len} bytes is too large: the limit is {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("compressed messages are not accepted (no grpc-encoding is negotiated)")]
    Compressed,
    #[error("malformed ReduceChunk: {0}")]
    Malformed(String),
}

/// The bytes that precede a payload of `payload_len` bytes: the gRPC prefix, every field of
/// `header` (whose own `payload` must be empty), then the payload field's key and length.
///
/// # Errors
/// When the message would not fit the gRPC length field.
pub(crate) fn message_prefix(
    header: &ReduceChunk,
    payload_len: usize,
) -> Result<Bytes, FrameError> {
    debug_assert!(header.payload.is_empty(), "the payload travels on its own");
    let fields = header.encoded_len();
    let key_and_len = 1 + prost::length_delimiter_len(payload_len);
    let body = fields + key_and_len + payload_len;
    let body_len = u32::try_from(body)
        .map_err(|_| FrameError::TooLarge { len: body, limit: u32::MAX as usize })?;
    let mut out = BytesMut::with_capacity(PREFIX_LEN + fields + key_and_len);
    out.put_u8(0);
    out.put_u32(body_len);
    header.encode_raw(&mut out);
    out.put_u8(PAYLOAD_KEY);
    prost::encode_length_delimiter(payload_len, &mut out)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(out.freeze())
}

/// Received bytes not yet consumed, as the frames that brought them.
#[derive(Debug, Default)]
struct Input {
    frames: VecDeque<Bytes>,
    available: usize,
}

impl Input {
    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.available += data.len();
            self.frames.push_back(data);
        }
    }

    /// Copies the first `out.len()` bytes without consuming them; false if fewer are here.
    fn peek(&self, out: &mut [u8]) -> bool {
        if self.available < out.len() {
            return false;
        }
        let mut filled = 0;
        for frame in &self.frames {
            let take = (out.len() - filled).min(frame.len());
            out[filled..filled + take].copy_from_slice(&frame[..take]);
            filled += take;
            if filled == out.len() {
                break;
            }
        }
        true
    }

    /// The varint at byte `skip`, reading at most `limit` bytes from the start: `None` until
    /// enough bytes arrived.
    fn peek_varint(&self, skip: usize, limit: usize) -> Result<Option<(u64, usize)>, FrameError> {
        let mut bytes = [0u8; MAX_VARINT + MAX_VARINT];
        let span = (skip + MAX_VARINT).min(limit).min(self.available);
        if span <= skip {
            return self.not_yet_or_truncated(skip, limit);
        }
        self.peek(&mut bytes[..span]);
        let mut value = 0u64;
        for (i, &b) in bytes[skip..span].iter().enumerate() {
            // The tenth byte holds bit 63 only; more (or a continuation) overflows a u64.
            if i == MAX_VARINT - 1 && b > 1 {
                return Err(FrameError::Malformed("a varint overflows 64 bits".to_owned()));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(Some((value, i + 1)));
            }
        }
        // Ten bytes always end in a terminator or an overflow above: fewer were here.
        self.not_yet_or_truncated(span, limit)
    }

    /// `None` (wait for more) unless the message ends at `at`, where a value was cut short.
    fn not_yet_or_truncated(
        &self,
        at: usize,
        limit: usize,
    ) -> Result<Option<(u64, usize)>, FrameError> {
        if at >= limit {
            Err(FrameError::Malformed("a field is cut off by the end of the message".to_owned()))
        } else {
            Ok(None)
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.available -= n;
        while n > 0 {
            let front = self.frames.front_mut().expect("invariant: advance within available");
            if front.len() <= n {
                n -= front.len();
                self.frames.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// Up to `n` bytes from the front, without copying (at most one frame's worth).
    fn take(&mut self, n: usize) -> Option<Bytes> {
        let front = self.frames.front_mut()?;
        let piece = if front.len() <= n { self.frames.pop_front()? } else { front.split_to(n) };
        self.available -= piece.len();
        Some(piece)
    }
}

/// The message being read.
#[derive(Debug)]
struct Body {
    /// Bytes of the message not consumed yet (the payload's included).
    left: usize,
    /// Every non-payload field, as encoded.
    header: Vec<u8>,
    payload: Option<Payload>,
    /// Payload bytes still to come.
    payload_left: usize,
}

/// Reads `ReduceChunk` messages from the DATA frames of one stream.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    input: Input,
    body: Option<Body>,
    max_message: usize,
}

impl ChunkReader {
    /// A reader refusing messages over `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        Self { input: Input::default(), body: None, max_message }
    }

    /// Hands over the next DATA frame.
    pub(crate) fn push(&mut self, data: Bytes) {
        self.input.push(data);
    }

    /// Whether the stream may end here (no message begun, no byte left over).
    pub(crate) fn at_message_boundary(&self) -> bool {
        self.body.is_none() && self.input.available == 0
    }

    /// The next complete message, `None` until its last byte arrived.
    ///
    /// # Errors
    /// An oversize or compressed message, or an encoding that is not a `ReduceChunk`.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<RawChunk>, FrameError> {
        loop {
            let Some(body) = self.body.as_mut() else {
                let mut prefix = [0u8; PREFIX_LEN];
                if !self.input.peek(&mut prefix) {
                    return Ok(None);
                }
                if prefix[0] != 0 {
                    return Err(if prefix[0] == 1 {
                        FrameError::Compressed
                    } else {
                        FrameError::Malformed(format!("compressed flag {}", prefix[0]))
                    });
                }
                let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
                if len > self.max_message {
                    return Err(FrameError::TooLarge { len, limit: self.max_message });
                }
                self.input.advance(PREFIX_LEN);
                self.body =
                    Some(Body { left: len, header: Vec::new(), payload: None, payload_left: 0 });
                continue;
            };
            if body.payload_left > 0 {
                let Some(piece) = self.input.take(body.payload_left) else { return Ok(None) };
                body.payload_left -= piece.len();
                body.payload.get_or_insert_with(Payload::new).push(piece);
                continue;
            }
            if body.left == 0 {
                let Some(body) = self.body.take() else { continue };
                let header = ReduceChunk::decode(body.header.as_slice())
                    .map_err(|e| FrameError::Malformed(e.to_string()))?;
                return Ok(Some(RawChunk { header, payload: body.payload.unwrap_or_default() }));
            }
            if !Self::read_field(&mut self.input, body)? {
                return Ok(None);
            }
        }
    }

    /// Consumes one field of `body`: copies a header field, or starts the payload. False when
    /// more bytes are needed first.
    fn read_field(input: &mut Input, body: &mut Body) -> Result<bool, FrameError> {
        let Some((key, key_len)) = input.peek_varint(0, body.left)? else { return Ok(false) };
        let (field, wire_type) = (key >> 3, key & 7);
        let (value_len, len_len) = match wire_type {
            0 => match input.peek_varint(key_len, body.left)? {
                Some((_, n)) => (n, 0),
                None => return Ok(false),
            },
            1 => (8, 0),
            5 => (4, 0),
            2 => match input.peek_varint(key_len, body.left)? {
                Some((n, n_len)) => (usize::try_from(n).unwrap_or(usize::MAX), n_len),
                None => return Ok(false),
            },
            other => {
                return Err(FrameError::Malformed(format!(
                    "field {field} has wire type {other}, which ReduceChunk does not use"
                )));
            }
        };
        let head = key_len + len_len;
        if head > body.left || value_len > body.left - head {
            return Err(FrameError::Malformed(format!(
                "field {field} runs past the end of the message"
            )));
        }
        if field == PAYLOAD_FIELD && wire_type == 2 {
            if body.payload.is_some() {
                return Err(FrameError::Malformed("payload appears twice".to_owned()));
            }
            input.advance(head);
            body.left -= head + value_len;
            body.payload = Some(Payload::new());
            body.payload_left = value_len;
            return Ok(true);
        }
        let total = head + value_len;
        if body.header.len() + total > MAX_HEADER_BYTES {
            return Err(FrameError::Malformed(format!(
                "fields other than the payload exceed {MAX_HEADER_BYTES} bytes"
            )));
        }
        let start = body.header.len();
        body.header.resize(start + total, 0);
        if !input.peek(&mut body.header[start..]) {
            body.header.truncate(start);
            return Ok(false);
        }
        input.advance(total);
        body.left -= total;
        Ok(true)
    }
}

#[cfg(test)]
#[path = "framing_test.rs"]
mod tests;
