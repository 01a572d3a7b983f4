//! Failure semantics: absent, dropped and cancelled ranks; refused and malformed chunks.

use std::net::SocketAddr;
use std::time::Duration;

use albatross_collective::{CollectiveConfig, CollectiveError, OpContext, ServerOptions};
use albatross_proto::domain::{OpTag, WorkerId, WorkerRef};
use albatross_proto::wire::v1::peer_service_client::PeerServiceClient;
use albatross_proto::wire::v1::{
    FetchStateRequest, OpKind, ReduceAck, ReduceChunk, RingPhase, WireDtype,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Code;

use crate::support::{Ring, inputs, start, tag, worker};

type OpResult = Result<Vec<f32>, CollectiveError>;

fn spawn_all_reduce(ring: &Ring, ctx: OpContext, mut buf: Vec<f32>) -> JoinHandle<OpResult> {
    let collective = ring.ranks[ctx.rank as usize].collective.clone();
    tokio::spawn(async move { collective.all_reduce_sum(&ctx, &mut buf).await.map(|()| buf) })
}

/// Wait (bounded) until `rank` has registered operation `tag` and received `received` pieces.
async fn wait_progress(ring: &Ring, rank: usize, tag: OpTag, received: usize) {
    let mut progress = ring.ranks[rank].collective.progress();
    tokio::time::timeout(
        Duration::from_secs(5),
        progress.wait_for(|p| p.tag == Some(tag) && p.received >= received),
    )
    .await
    .expect("progress in time")
    .expect("collective alive");
}

async fn expect_err(task: JoinHandle<OpResult>, within: Duration) -> CollectiveError {
    let started = Instant::now();
    let result = tokio::time::timeout(within, task).await.expect("op ends in time").expect("join");
    assert!(started.elapsed() <= within);
    result.expect_err("no partial result may be returned as success")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rank_that_never_shows_up_fails_the_others_within_the_deadline() {
    let ring = start(3, CollectiveConfig::default()).await;
    let deadline = Duration::from_millis(1500);
    let started = Instant::now();
    let input = inputs(3, 1000, 1);
    let t0 = spawn_all_reduce(&ring, ring.ctx(0, tag(1, 0), deadline), input[0].clone());
    let t1 = spawn_all_reduce(&ring, ring.ctx(1, tag(1, 0), deadline), input[1].clone());
    for task in [t0, t1] {
        let err = expect_err(task, Duration::from_secs(3)).await;
        // Whichever deadline passes first, the other rank may hear of it as a broken link.
        assert!(
            matches!(err, CollectiveError::Timeout { .. } | CollectiveError::PeerFailed { .. }),
            "{err}"
        );
    }
    assert!(started.elapsed() >= deadline);
    assert!(started.elapsed() < deadline + Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rank_dropped_mid_operation_fails_the_others_promptly() {
    let config = crate::support::small_pieces();
    let ring = start(3, config).await;
    let deadline = Duration::from_secs(8);
    let input = inputs(3, 300_000, 2);
    let op = tag(1, 0);
    // Ranks 2 and 0 start; rank 1 has not, so nobody can finish. Once rank 0 has a piece from
    // rank 2, rank 2 is mid-operation: drop it there.
    let t2 = spawn_all_reduce(&ring, ring.ctx(2, op, deadline), input[2].clone());
    let t0 = spawn_all_reduce(&ring, ring.ctx(0, op, deadline), input[0].clone());
    wait_progress(&ring, 0, op, 1).await;
    t2.abort();
    assert!(t2.await.is_err_and(|e| e.is_cancelled()));
    let started = Instant::now();
    let t1 = spawn_all_reduce(&ring, ring.ctx(1, op, deadline), input[1].clone());
    let err0 = expect_err(t0, deadline).await;
    let err1 = expect_err(t1, deadline).await;
    // Both learn from the broken links, long before the deadline.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(err0, CollectiveError::PeerFailed { .. }), "{err0}");
    assert!(err0.to_string().contains("w2"), "{err0}");
    // Rank 1 hears it first either from rank 2 (the operation already ended there) or from
    // rank 0 (whose stream broke off when it failed).
    assert!(matches!(err1, CollectiveError::PeerFailed { .. }), "{err1}");
    let text = err1.to_string();
    assert!(text.contains("already ended") || text.contains("w0#1"), "{err1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_ends_the_operation_promptly_on_every_rank() {
    let ring = start(3, CollectiveConfig::default()).await;
    let op = tag(1, 0);
    let input = inputs(3, 1000, 3);
    let (c0, c1) =
        (ring.ctx(0, op, Duration::from_secs(30)), ring.ctx(1, op, Duration::from_secs(30)));
    let (k0, k1) = (c0.cancel.clone(), c1.cancel.clone());
    let t0 = spawn_all_reduce(&ring, c0, input[0].clone());
    let t1 = spawn_all_reduce(&ring, c1, input[1].clone());
    wait_progress(&ring, 0, op, 0).await;
    wait_progress(&ring, 1, op, 0).await;
    k0.cancel();
    k1.cancel();
    let err0 = expect_err(t0, Duration::from_secs(2)).await;
    let err1 = expect_err(t1, Duration::from_secs(2)).await;
    assert!(matches!(err0, CollectiveError::Cancelled { .. }), "{err0}");
    assert!(
        matches!(err1, CollectiveError::Cancelled { .. } | CollectiveError::PeerFailed { .. }),
        "{err1}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_behind_a_full_inbox_still_names_the_predecessor() {
    // Rank 0 of three; rank 1 is real and ends the operation early (its answer to rank 0 is
    // ABORTED), rank 2 is played by a raw client that then sends more pieces than rank 0's
    // inbox holds and a malformed one. Rank 0 must read on to the malformed piece while it
    // waits to learn what broke, and name rank 2, not the live rank 1.
    let config = crate::support::small_pieces();
    let piece_elems = config.piece_bytes / 4;
    let segment = 12 * piece_elems;
    let ring = start(3, config).await;
    let op = tag(1, 0);
    let deadline = Duration::from_secs(10);
    let len = 3 * segment;
    let t0 = spawn_all_reduce(&ring, ring.ctx(0, op, deadline), vec![1.0; len]);
    let ctx1 = ring.ctx(1, op, deadline);
    let cancel1 = ctx1.cancel.clone();
    let t1 = spawn_all_reduce(&ring, ctx1, vec![1.0; len]);
    wait_progress(&ring, 1, op, 1).await;

    // Rank 2's first reduce-scatter pieces to rank 0: segment 2, in order.
    let piece = |index: usize| ReduceChunk {
        chunk_index: 2,
        piece_index: index as u32,
        element_offset: (2 * segment + index * piece_elems) as u64,
        total_elements: len as u64,
        payload: vec![0u8; piece_elems * 4].into(),
        ..first_chunk(op, worker(2))
    };
    let (chunks, stream) = tokio::sync::mpsc::channel(16);
    chunks.send(piece(0)).await.expect("queued");
    let addr = ring.ranks[0].addr;
    let rank2 = tokio::spawn(async move {
        let mut client =
            PeerServiceClient::connect(format!("http://{addr}")).await.expect("connect");
        client.reduce(tokio_stream::wrappers::ReceiverStream::new(stream)).await
    });
    wait_progress(&ring, 0, op, 1).await;

    cancel1.cancel();
    let err1 = expect_err(t1, Duration::from_secs(3)).await;
    assert!(matches!(err1, CollectiveError::Cancelled { .. }), "{err1}");
    // Rank 0 now hears ABORTED from rank 1 and waits for word from its predecessor, which
    // comes behind more pieces than its inbox holds.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for index in 1..10 {
        chunks.send(piece(index)).await.expect("queued");
    }
    let malformed = ReduceChunk { element_offset: 0, ..piece(10) };
    chunks.send(malformed).await.expect("queued");
    let err0 = expect_err(t0, Duration::from_secs(3)).await;
    assert!(matches!(err0, CollectiveError::PeerFailed { .. }), "{err0}");
    let text = err0.to_string();
    assert!(text.contains("w2") && text.contains("element_offset is 0"), "{err0}");
    drop(chunks);
    let status = rank2.await.expect("join").expect_err("the malformed piece is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

/// The first chunk rank 0 sends to rank 1 in a two-rank all-reduce of 1000 elements.
fn first_chunk(tag: OpTag, sender: WorkerRef) -> ReduceChunk {
    ReduceChunk {
        tag: Some(tag.into()),
        sender: Some(sender.into()),
        kind: OpKind::AllReduceSum.into(),
        phase: RingPhase::ReduceScatter.into(),
        ring_step: 0,
        chunk_index: 0,
        piece_index: 0,
        element_offset: 0,
        total_elements: 1000,
        dtype: WireDtype::F32Le.into(),
        payload: vec![0u8; 500 * 4].into(),
    }
}

async fn send_raw(addr: SocketAddr, chunks: Vec<ReduceChunk>) -> Result<ReduceAck, tonic::Status> {
    let mut client = PeerServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    client.reduce(tokio_stream::iter(chunks)).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_generation_and_foreign_senders_are_refused_and_never_mixed_in() {
    let ring = start(2, CollectiveConfig::default()).await;
    let op = tag(5, 0);
    let ctx = ring.ctx(1, op, Duration::from_secs(10));
    let cancel = ctx.cancel.clone();
    let t1 = spawn_all_reduce(&ring, ctx, vec![1.0; 1000]);
    wait_progress(&ring, 1, op, 0).await;
    let addr = ring.ranks[1].addr;

    let stale = send_raw(addr, vec![first_chunk(tag(4, 0), worker(0))]).await;
    let status = stale.expect_err("stale generation refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("stale operation g4/step 7/op 0"), "{status:?}");

    let intruder = WorkerRef { id: WorkerId::new("intruder").expect("id"), incarnation: 1 };
    let status = send_raw(addr, vec![first_chunk(op, intruder)]).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("not a member"), "{status:?}");

    // Rank 1 itself is a member but not rank 1's predecessor... in a ring of two it is; a
    // restarted incarnation of rank 0 is not the member of this quorum.
    let reincarnated = WorkerRef { incarnation: 2, ..worker(0) };
    let status = send_raw(addr, vec![first_chunk(op, reincarnated)]).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // None of it touched the operation, which is still waiting for rank 0.
    assert_eq!(ring.ranks[1].collective.progress().borrow().received, 0);
    cancel.cancel();
    let err = expect_err(t1, Duration::from_secs(2)).await;
    assert!(matches!(err, CollectiveError::Cancelled { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunks_are_invalid_argument_and_fail_the_operation() {
    let ring = start(2, CollectiveConfig::default()).await;
    let addr = ring.ranks[1].addr;
    type Corrupt = fn(&mut ReduceChunk);
    let cases: [(&str, Corrupt); 7] = [
        ("payload is 1996 bytes, expected 2000", |c| c.payload = vec![0u8; 1996].into()),
        ("chunk_index 2 out of range for a world of 2 ranks", |c| c.chunk_index = 2),
        ("unknown dtype 9", |c| c.dtype = 9),
        ("total_elements is 999, expected 1000", |c| c.total_elements = 999),
        ("element_offset is 4, expected 0", |c| c.element_offset = 4),
        ("dtype is WIRE_DTYPE_BF16_LE, expected WIRE_DTYPE_F32_LE", |c| {
            c.dtype = WireDtype::Bf16Le.into();
        }),
        ("dtype is WIRE_DTYPE_I64_LE, expected WIRE_DTYPE_F32_LE", |c| {
            c.dtype = WireDtype::I64Le.into();
            c.payload = vec![0u8; 500 * 8].into();
        }),
    ];
    for (seq, (message, corrupt)) in cases.into_iter().enumerate() {
        let op = tag(1, seq as u64);
        let t1 = spawn_all_reduce(&ring, ring.ctx(1, op, Duration::from_secs(10)), vec![1.0; 1000]);
        wait_progress(&ring, 1, op, 0).await;
        let mut chunk = first_chunk(op, worker(0));
        corrupt(&mut chunk);
        let status = send_raw(addr, vec![chunk]).await.expect_err(message);
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(message), "{status:?} lacks {message:?}");
        let err = expect_err(t1, Duration::from_secs(2)).await;
        assert!(matches!(err, CollectiveError::PeerFailed { .. }), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_empty_streams_are_refused_and_state_is_unavailable() {
    let server = ServerOptions { max_message_bytes: 64 << 10, ..ServerOptions::default() };
    let config = CollectiveConfig { piece_bytes: 16 << 10, server, ..CollectiveConfig::default() };
    let ring = start(2, config).await;
    let addr = ring.ranks[1].addr;
    let mut big = first_chunk(tag(1, 0), worker(0));
    big.payload = vec![0u8; 128 << 10].into();
    let status = send_raw(addr, vec![big]).await.expect_err("oversize refused");
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");

    let status = send_raw(addr, vec![]).await.expect_err("empty refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let mut client = PeerServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    let request =
        FetchStateRequest { requester: Some(worker(0).into()), generation: 1, target_step: 3 };
    let status = client.fetch_state(request).await.expect_err("no state source");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no state source"), "{status:?}");
}
