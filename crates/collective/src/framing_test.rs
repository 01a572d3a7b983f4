use albatross_proto::wire::v1::{OpKind, OpTag, RingPhase, WireDtype, WorkerRef};

use super::*;

fn header(seq: u64) -> ReduceChunk {
    ReduceChunk {
        tag: Some(OpTag { generation: 3, step: 41, op_seq: seq }),
        sender: Some(WorkerRef { worker_id: "worker-7".to_owned(), incarnation: 2 }),
        kind: OpKind::AllReduceSum.into(),
        phase: RingPhase::AllGather.into(),
        ring_step: 1,
        chunk_index: 2,
        piece_index: 5,
        element_offset: 1 << 33,
        total_elements: 1 << 34,
        dtype: WireDtype::F32Le.into(),
        payload: Bytes::new(),
    }
}

fn payload(len: usize, salt: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect::<Vec<u8>>().into()
}

/// The stream as the sending side writes it: prefix, then the payload, per message.
fn zero_copy_stream(messages: &[(ReduceChunk, Bytes)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, p) in messages {
        out.extend_from_slice(&message_prefix(h, p.len()).expect("prefix"));
        out.extend_from_slice(p);
    }
    out
}

/// The stream as a plain gRPC client (prost + tonic) writes it.
fn standard_stream(messages: &[(ReduceChunk, Bytes)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, p) in messages {
        let body = ReduceChunk { payload: p.clone(), ..h.clone() }.encode_to_vec();
        out.push(0);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// Feeds `stream` cut at every `step` bytes and collects what the reader yields.
fn read_all(stream: &[u8], step: usize, limit: usize) -> Result<Vec<RawChunk>, FrameError> {
    let data = Bytes::copy_from_slice(stream);
    let mut reader = ChunkReader::new(limit);
    let mut out = Vec::new();
    for start in (0..data.len()).step_by(step.max(1)) {
        reader.push(data.slice(start..(start + step).min(data.len())));
        while let Some(chunk) = reader.next_chunk()? {
            out.push(chunk);
        }
    }
    assert!(reader.at_message_boundary(), "nothing left over");
    Ok(out)
}

fn messages() -> Vec<(ReduceChunk, Bytes)> {
    vec![
        (header(0), payload(1000, 1)),
        (header(1), payload(0, 2)),
        (header(2), payload(1, 3)),
        (header(3), payload(70_001, 4)),
    ]
}

#[test]
fn both_encodings_read_back_whatever_the_frame_cuts() {
    let messages = messages();
    for stream in [zero_copy_stream(&messages), standard_stream(&messages)] {
        for step in [1, 3, 5, 64, 999, 4096, 1 << 20] {
            let chunks = read_all(&stream, step, 1 << 20).expect("read");
            assert_eq!(chunks.len(), messages.len(), "step {step}");
            for (chunk, (h, p)) in chunks.iter().zip(&messages) {
                assert_eq!(&chunk.header, h, "step {step}");
                assert_eq!(chunk.payload.to_vec(), p.to_vec(), "step {step}");
            }
        }
    }
}

#[test]
fn the_zero_copy_encoding_is_a_standard_reduce_chunk() {
    let (h, p) = (header(9), payload(513, 9));
    let mut stream = zero_copy_stream(&[(h.clone(), p.clone())]);
    let body = stream.split_off(PREFIX_LEN);
    assert_eq!(
        u32::from_be_bytes([stream[1], stream[2], stream[3], stream[4]]) as usize,
        body.len()
    );
    let decoded = ReduceChunk::decode(body.as_slice()).expect("prost decodes it");
    assert_eq!(decoded, ReduceChunk { payload: p, ..h });
}

#[test]
fn payload_slices_share_the_frames() {
    let stream = Bytes::from(zero_copy_stream(&[(header(0), payload(4096, 0))]));
    let mut reader = ChunkReader::new(1 << 20);
    reader.push(stream.clone());
    let chunk = reader.next_chunk().expect("read").expect("complete");
    let segment = &chunk.payload.segments()[0];
    let inside = stream.as_ptr_range();
    assert!(inside.contains(&segment.as_ptr()), "the payload points into the received frame");
}

#[test]
fn fields_after_the_payload_are_read_too() {
    let h = header(4);
    let p = payload(10, 4);
    // Payload first, then the other fields: valid protobuf in any field order.
    let mut body = vec![PAYLOAD_KEY, 10];
    body.extend_from_slice(&p);
    body.extend_from_slice(&h.encode_to_vec());
    let mut stream = vec![0];
    stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
    stream.extend_from_slice(&body);
    let chunks = read_all(&stream, 7, 1 << 20).expect("read");
    assert_eq!(chunks[0].header, h);
    assert_eq!(chunks[0].payload.to_vec(), p.to_vec());
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut stream = vec![0];
    stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
    stream.extend_from_slice(body);
    stream
}

#[test]
fn bad_streams_are_named() {
    let big = standard_stream(&[(header(0), payload(2000, 0))]);
    let err = read_all(&big, 100, 1024).expect_err("too large");
    assert!(matches!(err, FrameError::TooLarge { limit: 1024, .. }), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");

    let mut compressed = standard_stream(&[(header(0), payload(8, 0))]);
    compressed[0] = 1;
    assert_eq!(
        read_all(&compressed, 100, 1 << 20).expect_err("compressed"),
        FrameError::Compressed
    );

    let cases: [(&[u8], &str); 7] = [
        (&[PAYLOAD_KEY, 5, 1, 2], "runs past the end"),
        (&[PAYLOAD_KEY], "cut off"),
        (&[PAYLOAD_KEY, 1, 0, PAYLOAD_KEY, 1, 0], "payload appears twice"),
        (&[(1 << 3) | 3], "wire type 3"),
        (&[0x80; 11], "overflows 64 bits"),
        (&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02], "overflows 64 bits"),
        (&[(2 << 3) | 2, 0xff, 0x7f], "runs past the end"),
    ];
    for (body, message) in cases {
        let err = read_all(&framed(body), 3, 1 << 20).expect_err(message);
        assert!(err.to_string().contains(message), "{err} lacks {message:?}");
    }

    let mut huge_header = vec![(2 << 3) | 2];
    prost::encode_length_delimiter(5000, &mut huge_header).expect("varint");
    huge_header.extend_from_slice(&[0u8; 5000]);
    let err = read_all(&framed(&huge_header), 4096, 1 << 20).expect_err("header too big");
    assert!(err.to_string().contains("exceed 4096 bytes"), "{err}");
}

#[test]
fn a_stream_cut_mid_message_is_not_at_a_boundary() {
    let stream = Bytes::from(zero_copy_stream(&[(header(0), payload(100, 0))]));
    let mut reader = ChunkReader::new(1 << 20);
    assert!(reader.at_message_boundary());
    reader.push(stream.slice(..50));
    assert!(reader.next_chunk().expect("no error yet").is_none());
    assert!(!reader.at_message_boundary());
}
