//! The small all-reduce for a handful of f64 scalars (loss sums, squared gradient norm,
//! non-finite flag): every rank sends its values to every other rank in one message, so the
//! operation costs one round trip instead of `2 (n - 1)` ring hops. Every rank adds the `n`
//! vectors in rank order, so the sums are bit-identical everywhere.

use std::sync::Arc;

use albatross_proto::domain::{CollectiveOp, ElementType};
use albatross_proto::wire::v1::ReduceChunk;
use albatross_proto::wire::v1::peer_service_client::PeerServiceClient;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelPool;
use crate::chunk::ChunkHeader;
use crate::compress;
use crate::error::CollectiveError;
use crate::op::OpContext;
use crate::registry::{ActiveOp, Expect, Incoming};
use crate::shared::Shared;

/// Largest number of scalars in one scalar sum (the bulk path is for anything bigger).
pub const MAX_SCALARS: usize = 4096;

/// Sums `values` over the ranks of `ctx`, in rank order on every rank.
pub(crate) async fn run_scalar(
    shared: &Shared,
    ctx: &OpContext,
    values: &mut [f64],
) -> Result<(), CollectiveError> {
    if values.len() > MAX_SCALARS {
        return Err(CollectiveError::InvalidArgument(format!(
            "scalar sum of {} values exceeds {MAX_SCALARS}; use all_reduce_sum",
            values.len()
        )));
    }
    let n = ctx.world_size();
    if ctx.cancel.is_cancelled() {
        return Err(CollectiveError::Cancelled { op: ctx.op(), progress: "before start".into() });
    }
    if n == 1 {
        return Ok(());
    }
    let (inbox_tx, inbox) = mpsc::channel::<Incoming>(n);
    let (failures_tx, failures) = mpsc::unbounded_channel::<String>();
    let _registered = shared.registry.begin(ActiveOp {
        tag: ctx.tag,
        kind: CollectiveOp::ScalarSum,
        members: Arc::clone(&ctx.members),
        rank: ctx.rank as usize,
        total_elements: values.len() as u64,
        expect: Expect::Scalar { len: values.len() },
        inbox: inbox_tx,
        failures: failures_tx,
    })?;
    let sends = send_to_every_peer(shared, ctx, values);
    let slots = gather(ctx, values, Links { inbox, failures, sends }).await?;
    sum_in_rank_order(values, &slots);
    Ok(())
}

/// What the gathering loop waits on.
struct Links {
    /// The other ranks' vectors, checked by the peer server.
    inbox: mpsc::Receiver<Incoming>,
    /// A broken stream from a peer, in words.
    failures: mpsc::UnboundedReceiver<String>,
    /// This rank's sends, one task per peer.
    sends: JoinSet<Result<(), CollectiveError>>,
}

/// Starts one task per other rank that sends it `values` in one chunk.
fn send_to_every_peer(
    shared: &Shared,
    ctx: &OpContext,
    values: &[f64],
) -> JoinSet<Result<(), CollectiveError>> {
    let header = ChunkHeader {
        tag: ctx.tag,
        sender: ctx.me().worker.clone(),
        kind: CollectiveOp::ScalarSum,
        total_elements: values.len() as u64,
        dtype: ElementType::F64,
    };
    let payload = compress::encode_f64(values);
    let mut sends = JoinSet::new();
    for peer in ctx.members.iter().filter(|m| m.rank != ctx.rank) {
        let send = Send {
            pool: Arc::clone(&shared.pool),
            address: peer.address.clone(),
            chunk: header.scalar(ctx.rank, payload.clone()),
            deadline: ctx.deadline,
            cancel: ctx.cancel.clone(),
            op: ctx.op(),
        };
        sends.spawn(send.run());
    }
    sends
}

/// One rank's vector on its way to one peer.
struct Send {
    pool: Arc<ChannelPool>,
    address: String,
    chunk: ReduceChunk,
    deadline: Instant,
    cancel: CancellationToken,
    op: String,
}

impl Send {
    async fn run(self) -> Result<(), CollectiveError> {
        let Send { pool, address, chunk, deadline, cancel, op } = self;
        let budget = deadline.saturating_duration_since(Instant::now());
        let channel = pool.get(&address, deadline, &cancel, &op).await?;
        let mut request = tonic::Request::new(tokio_stream::once(chunk));
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let mut client = PeerServiceClient::new(channel);
        let call = client.reduce(request);
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => {
                pool.evict(&address);
                Err(CollectiveError::PeerFailed {
                    op,
                    peer: address.clone(),
                    address: Some(address),
                    reason: format!("{}: {}", status.code(), status.message()),
                })
            }
            Err(_) => Err(CollectiveError::Timeout {
                op,
                waited: budget,
                progress: format!("sending scalars to {address}"),
            }),
        }
    }
}

/// Every rank's vector, by rank (this rank's is `values`), once all arrived and every send
/// finished.
async fn gather(
    ctx: &OpContext,
    values: &[f64],
    mut links: Links,
) -> Result<Vec<Option<Vec<f64>>>, CollectiveError> {
    let n = ctx.world_size();
    let op = ctx.op();
    let mut slots: Vec<Option<Vec<f64>>> = vec![None; n];
    slots[ctx.rank as usize] = Some(values.to_vec());
    let mut received = 1;
    let started = Instant::now();
    let describe = |received: usize, pending: usize| {
        format!("received scalars from {received}/{n} ranks, {pending} sends pending")
    };
    let a_peer_failed = |reason| CollectiveError::PeerFailed {
        op: op.clone(),
        peer: "a peer".into(),
        address: None,
        reason,
    };
    while received < n || !links.sends.is_empty() {
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                let progress = describe(received, links.sends.len());
                return Err(CollectiveError::Cancelled { op, progress });
            }
            () = tokio::time::sleep_until(ctx.deadline) => {
                return Err(CollectiveError::Timeout {
                    op,
                    waited: ctx.deadline.saturating_duration_since(started),
                    progress: describe(received, links.sends.len()),
                });
            }
            Some(reason) = links.failures.recv() => return Err(a_peer_failed(reason)),
            Some(done) = links.sends.join_next() => match done {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(join) => return Err(a_peer_failed(format!("send task failed: {join}"))),
            },
            Some(incoming) = links.inbox.recv(), if received < n => {
                let slot = slots.get_mut(incoming.index);
                if let Some(slot @ None) = slot {
                    *slot = Some(compress::decode_f64(&incoming.payload.to_vec()));
                    received += 1;
                }
            }
        }
    }
    Ok(slots)
}

/// Adds the vectors in rank order into `values`: the same order on every rank, so the sums
/// are bit-identical everywhere.
fn sum_in_rank_order(values: &mut [f64], slots: &[Option<Vec<f64>>]) {
    for (i, value) in values.iter_mut().enumerate() {
        let mut ranks = slots.iter().flatten();
        let first = ranks.next().map_or(0.0, |s| s[i]);
        *value = ranks.fold(first, |acc, s| acc + s[i]);
    }
}
