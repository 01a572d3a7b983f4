//! The small all-reduce for a handful of f64 scalars (loss sums, squared gradient norm,
//! non-finite flag): every rank sends its values to every other rank in one message, so the
//! operation costs one round trip instead of `2 (n - 1)` ring hops. Every rank adds the `n`
//! vectors in rank order, so the sums are bit-identical everywhere.

use std::sync::Arc;

use albatross_proto::domain::{CollectiveOp, ElementType};
use albatross_proto::wire::v1::peer_service_client::PeerServiceClient;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::chunk::ChunkHeader;
use crate::compress;
use crate::error::CollectiveError;
use crate::op::OpContext;
use crate::registry::{ActiveOp, Expect, Incoming};
use crate::shared::Shared;

/// Largest number of scalars in one scalar sum (the bulk path is for anything bigger).
pub const MAX_SCALARS: usize = 4096;

pub(crate) async fn run_scalar(
    shared: &Shared,
    ctx: &OpContext,
    values: &mut [f64],
) -> Result<(), CollectiveError> {
    let op = ctx.op();
    if values.len() > MAX_SCALARS {
        return Err(CollectiveError::InvalidArgument(format!(
            "scalar sum of {} values exceeds {MAX_SCALARS}; use all_reduce_sum",
            values.len()
        )));
    }
    let n = ctx.world_size();
    let rank = ctx.rank as usize;
    let cancelled = |progress: String| CollectiveError::Cancelled { op: op.clone(), progress };
    if ctx.cancel.is_cancelled() {
        return Err(cancelled("before start".to_owned()));
    }
    if n == 1 {
        return Ok(());
    }
    let (inbox_tx, mut inbox) = mpsc::channel::<Incoming>(n);
    let (failures_tx, mut failures) = mpsc::unbounded_channel::<String>();
    let _registered = shared.registry.begin(ActiveOp {
        tag: ctx.tag,
        kind: CollectiveOp::ScalarSum,
        members: Arc::clone(&ctx.members),
        rank,
        total_elements: values.len() as u64,
        expect: Expect::Scalar { len: values.len() },
        inbox: inbox_tx,
        failures: failures_tx,
    })?;
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
        let chunk = header.scalar(ctx.rank, payload.clone());
        let (pool, address, cancel) =
            (Arc::clone(&shared.pool), peer.address.clone(), ctx.cancel.clone());
        let (deadline, op) = (ctx.deadline, op.clone());
        let budget = deadline.saturating_duration_since(Instant::now());
        sends.spawn(async move {
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
        });
    }

    let mut slots: Vec<Option<Vec<f64>>> = vec![None; n];
    slots[rank] = Some(values.to_vec());
    let mut received = 1;
    let started = Instant::now();
    let describe = |received: usize, pending: usize| {
        format!("received scalars from {received}/{n} ranks, {pending} sends pending")
    };
    while received < n || !sends.is_empty() {
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Err(cancelled(describe(received, sends.len()))),
            () = tokio::time::sleep_until(ctx.deadline) => {
                return Err(CollectiveError::Timeout {
                    op,
                    waited: ctx.deadline.saturating_duration_since(started),
                    progress: describe(received, sends.len()),
                });
            }
            Some(reason) = failures.recv() => {
                return Err(CollectiveError::PeerFailed {
                    op,
                    peer: "a peer".into(),
                    address: None,
                    reason,
                });
            }
            Some(done) = sends.join_next() => match done {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(join) => {
                    return Err(CollectiveError::PeerFailed {
                        op,
                        peer: "a peer".into(),
                        address: None,
                        reason: format!("send task failed: {join}"),
                    });
                }
            },
            Some(incoming) = inbox.recv(), if received < n => {
                let slot = slots.get_mut(incoming.index);
                if let Some(slot @ None) = slot {
                    *slot = Some(compress::decode_f64(&incoming.payload.to_vec()));
                    received += 1;
                }
            }
        }
    }
    for (i, value) in values.iter_mut().enumerate() {
        // Rank order on every rank: bit-identical sums.
        let mut ranks = slots.iter().flatten();
        let first = ranks.next().map_or(0.0, |s| s[i]);
        *value = ranks.fold(first, |acc, s| acc + s[i]);
    }
    Ok(())
}
