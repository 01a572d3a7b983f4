//! One operation on one rank: its context (tag, members, rank, deadline, cancellation) and the
//! driver that executes a [`RingPlan`] over the network. The driver is a single loop that
//! applies received pieces to the caller's buffer and feeds the outgoing stream to the ring
//! successor as soon as the piece it carries is final, so sending, receiving and adding overlap.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use albatross_proto::domain::CollectiveOp;
use albatross_proto::domain::{Member, OpTag, Quorum};
use albatross_proto::wire::v1::ReduceAck;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::chunk::{ChunkHeader, element_type};
use crate::compress::{self, WireFormat};
use crate::error::{CollectiveError, op_name};
use crate::payload::Payload;
use crate::reduce_call::{self, OutPiece};
use crate::registry::{ActiveOp, Expect, Incoming};
use crate::schedule::{RecvAction, RecvStep, RingPlan, SendStep};
use crate::shared::{OpProgress, Shared};

/// Everything one rank needs to take part in one collective operation.
#[derive(Debug, Clone)]
pub struct OpContext {
    /// Identical on every rank: `(generation, step, op_seq)`; must grow from one operation to
    /// the next on a worker.
    pub tag: OpTag,
    /// The quorum in ring order: `members[i].rank == i`.
    pub members: Arc<[Member]>,
    /// This rank: `members[rank]` is the caller.
    pub rank: u32,
    /// The operation fails with [`CollectiveError::Timeout`] if it is not done by then.
    pub deadline: Instant,
    /// Cancelling ends the operation promptly with [`CollectiveError::Cancelled`].
    pub cancel: CancellationToken,
}

impl OpContext {
    /// Operation `op_seq` of the step `quorum` runs, with the quorum's collective deadline
    /// counted from now.
    pub fn for_quorum(quorum: &Quorum, op_seq: u64, cancel: CancellationToken) -> Self {
        Self {
            tag: OpTag { generation: quorum.tag.generation, step: quorum.tag.step, op_seq },
            members: quorum.members.clone().into(),
            rank: quorum.rank,
            deadline: Instant::now() + quorum.collective_deadline,
            cancel,
        }
    }

    pub fn world_size(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn op(&self) -> String {
        op_name(&self.tag)
    }

    pub(crate) fn me(&self) -> &Member {
        &self.members[self.rank as usize]
    }

    pub(crate) fn successor(&self) -> &Member {
        &self.members[(self.rank as usize + 1) % self.members.len()]
    }

    pub(crate) fn predecessor(&self) -> &Member {
        let n = self.members.len();
        &self.members[(self.rank as usize + n - 1) % n]
    }

    /// Check that the context describes a well-formed ring containing this rank.
    ///
    /// # Errors
    /// [`CollectiveError::InvalidArgument`] naming the first problem found.
    pub fn validate(&self) -> Result<(), CollectiveError> {
        let invalid = |m: String| Err(CollectiveError::InvalidArgument(m));
        if self.members.is_empty() {
            return invalid(format!("operation {} has no members", self.op()));
        }
        if self.rank as usize >= self.members.len() {
            return invalid(format!(
                "rank {} is outside the {} members of {}",
                self.rank,
                self.members.len(),
                self.op()
            ));
        }
        let mut seen = HashSet::new();
        for (i, member) in self.members.iter().enumerate() {
            if member.rank as usize != i {
                return invalid(format!("members[{i}] has rank {}, expected {i}", member.rank));
            }
            if !seen.insert(&member.worker) {
                return invalid(format!("worker {} appears twice in the quorum", member.worker));
            }
        }
        Ok(())
    }
}

/// What becomes of a received piece, decided once per operation from the plan, so that no
/// range is encoded again when the bytes to send are already in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landing {
    /// Applied to the buffer, never sent on (the last pieces a rank receives).
    Apply,
    /// Copied into the buffer and forwarded as received: the all-gather and broadcast send
    /// exactly the bytes they received for a range.
    ApplyAndForward,
    /// An inner reduce-scatter step: the sum goes straight into the outgoing payload, never
    /// into the buffer (the all-gather overwrites that range later).
    Relay,
    /// The owner's last reduce-scatter step: added into the buffer, rounded to the wire
    /// precision and encoded in the same pass for its all-gather send.
    Keep,
}

/// The [`Landing`] of every receive step, in plan order.
fn landings(sends: &[SendStep], recvs: &[RecvStep]) -> Vec<Landing> {
    let sent: HashMap<(usize, usize), bool> = sends
        .iter()
        .map(|s| ((s.transfer.range.start, s.transfer.range.end), s.owner_source))
        .collect();
    recvs
        .iter()
        .map(|r| {
            let owner_sends = sent.get(&(r.transfer.range.start, r.transfer.range.end));
            match (r.action, owner_sends) {
                (_, None) => Landing::Apply,
                (RecvAction::Overwrite, Some(_)) => Landing::ApplyAndForward,
                (RecvAction::Accumulate, Some(false)) => Landing::Relay,
                (RecvAction::Accumulate, Some(true)) => Landing::Keep,
            }
        })
        .collect()
}

/// A deadline for moving `bytes` of f32 through an all-reduce: a floor of five seconds plus
/// the time at a pessimistic 50 MB/s for the `2 (n - 1) / n` of the buffer each rank sends.
pub fn default_deadline(bytes: usize, world: usize) -> Duration {
    let world = world.max(1) as f64;
    let wire = bytes as f64 * 2.0 * (world - 1.0) / world;
    Duration::from_secs(5) + Duration::from_secs_f64(wire / 50e6)
}

/// How long a rank whose successor ended the operation (`ABORTED`: alive, failed elsewhere)
/// waits for word of a failure from its predecessor before naming the successor.
const SECONDARY_FAILURE_GRACE: Duration = Duration::from_millis(250);

type RpcFuture = Pin<Box<dyn Future<Output = Result<ReduceAck, Status>> + Send>>;

/// How far the operation got, for error messages.
struct Progress<'a> {
    ctx: &'a OpContext,
    sent: usize,
    sends: usize,
    applied: usize,
    recvs: usize,
}

impl Progress<'_> {
    fn describe(&self) -> String {
        format!(
            "sent {}/{} pieces to {}, received {}/{} from {}",
            self.sent,
            self.sends,
            self.ctx.successor().address,
            self.applied,
            self.recvs,
            self.ctx.predecessor().address
        )
    }

    fn timeout(&self, started: Instant) -> CollectiveError {
        CollectiveError::Timeout {
            op: self.ctx.op(),
            waited: self.ctx.deadline.saturating_duration_since(started),
            progress: self.describe(),
        }
    }

    fn cancelled(&self) -> CollectiveError {
        CollectiveError::Cancelled { op: self.ctx.op(), progress: self.describe() }
    }

    fn peer_failed(&self, peer: &Member, reason: impl Into<String>) -> CollectiveError {
        CollectiveError::PeerFailed {
            op: self.ctx.op(),
            peer: format!("{} ({})", peer.worker, peer.address),
            address: Some(peer.address.clone()),
            reason: format!("{}; {}", reason.into(), self.describe()),
        }
    }
}

async fn reserve<T>(tx: &Option<mpsc::Sender<T>>) -> Option<mpsc::Permit<'_, T>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

/// Execute `plan` (all-reduce or broadcast) on `buf`. On error the buffer holds partial data.
pub(crate) async fn run_ring(
    shared: &Shared,
    ctx: &OpContext,
    kind: CollectiveOp,
    plan: RingPlan,
    format: WireFormat,
    buf: &mut [f32],
) -> Result<(), CollectiveError> {
    let result = drive_ring(shared, ctx, kind, plan, format, buf).await;
    if let Err(err) = &result {
        shared.pool.evict(&ctx.successor().address);
        tracing::warn!(op = ctx.op(), rank = ctx.rank, error = %err, "collective failed");
    }
    result
}

async fn drive_ring(
    shared: &Shared,
    ctx: &OpContext,
    kind: CollectiveOp,
    plan: RingPlan,
    format: WireFormat,
    buf: &mut [f32],
) -> Result<(), CollectiveError> {
    let started = Instant::now();
    let RingPlan { sends, recvs } = plan;
    let recvs: Arc<[RecvStep]> = recvs.into();
    let mut progress =
        Progress { ctx, sent: 0, sends: sends.len(), applied: 0, recvs: recvs.len() };
    if ctx.cancel.is_cancelled() {
        return Err(progress.cancelled());
    }
    if sends.is_empty() && recvs.is_empty() {
        return Ok(());
    }
    let depth = shared.config.queue_pieces.max(1);
    let (inbox_tx, mut inbox) = mpsc::channel::<Incoming>(depth);
    let (failures_tx, mut failures) = mpsc::unbounded_channel::<String>();
    let report = |p: &Progress<'_>| {
        shared.progress.send_replace(OpProgress {
            tag: Some(ctx.tag),
            sent: p.sent,
            sends: p.sends,
            received: p.applied,
            recvs: p.recvs,
        });
    };
    let _registered = shared.registry.begin(ActiveOp {
        tag: ctx.tag,
        kind,
        members: Arc::clone(&ctx.members),
        rank: ctx.rank as usize,
        total_elements: buf.len() as u64,
        expect: Expect::Ring { recvs: Arc::clone(&recvs), dtype: element_type(format) },
        inbox: inbox_tx,
        failures: failures_tx,
    })?;
    report(&progress);
    let header = ChunkHeader {
        tag: ctx.tag,
        sender: ctx.me().worker.clone(),
        kind,
        total_elements: buf.len() as u64,
        dtype: element_type(format),
    };

    let (out_tx, out_rx) = mpsc::channel::<OutPiece>(depth);
    let mut out_tx = Some(out_tx);
    let mut rpc: RpcFuture = Box::pin(std::future::pending());
    let mut acked = sends.is_empty();
    if !sends.is_empty() {
        let successor = &ctx.successor().address;
        let channel = shared.pool.get(successor, ctx.deadline, &ctx.cancel, &ctx.op()).await?;
        let timeout = ctx.deadline.saturating_duration_since(Instant::now());
        rpc = Box::pin(reduce_call::reduce(channel, out_rx, timeout));
    }
    // Outgoing payloads made on receipt (see `Landing`), by the start of their range. Only what
    // goes on is kept: a held payload pins HTTP/2 read buffers.
    let landings = landings(&sends, &recvs);
    let relayed: HashSet<usize> = recvs
        .iter()
        .zip(&landings)
        .filter(|(_, landing)| **landing == Landing::Relay)
        .map(|(r, _)| r.transfer.range.start)
        .collect();
    let mut forward: HashMap<usize, Payload> = HashMap::new();

    let deadline = tokio::time::sleep_until(ctx.deadline);
    tokio::pin!(deadline);
    let cancelled = ctx.cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let (sent, applied) = (progress.sent, progress.applied);
        if sent == sends.len() {
            // Ends the request stream: the successor acknowledges once it took every piece.
            out_tx = None;
            if applied == recvs.len() {
                break;
            }
        }
        let ready = sends.get(sent).is_some_and(|s: &SendStep| s.after_recvs <= applied);
        tokio::select! {
            biased;
            () = &mut cancelled => return Err(progress.cancelled()),
            () = &mut deadline => return Err(progress.timeout(started)),
            Some(reason) = failures.recv() => {
                return Err(progress.peer_failed(ctx.predecessor(), reason));
            }
            result = &mut rpc, if !acked => {
                acked = true;
                let reason = match result {
                    Err(status) if status.code() == Code::Aborted => {
                        // The successor is alive and ended the operation itself: the failure
                        // lies elsewhere in the ring, and when it is this rank's predecessor
                        // the broken stream says so a moment later. Name that cause if it
                        // comes within a short grace, rather than the successor.
                        let grace = Instant::now() + SECONDARY_FAILURE_GRACE;
                        let grace = tokio::time::sleep_until(grace.min(ctx.deadline));
                        tokio::pin!(grace);
                        loop {
                            tokio::select! {
                                biased;
                                () = &mut cancelled => return Err(progress.cancelled()),
                                Some(reason) = failures.recv() => {
                                    return Err(progress.peer_failed(ctx.predecessor(), reason));
                                }
                                // Pieces still arriving are dropped (the operation has failed):
                                // a handler blocked on a full inbox would never read on to
                                // the break of its stream that names the cause.
                                Some(_) = inbox.recv() => {}
                                () = &mut grace => break,
                            }
                        }
                        format!("{}: {}", status.code(), status.message())
                    }
                    Err(status) => format!("{}: {}", status.code(), status.message()),
                    Ok(ack) if ack.pieces_received == sends.len() as u64 => continue,
                    Ok(ack) => format!(
                        "acknowledged {} of {} pieces",
                        ack.pieces_received,
                        sends.len()
                    ),
                };
                return Err(progress.peer_failed(ctx.successor(), reason));
            }
            incoming = inbox.recv(), if applied < recvs.len() => {
                let Some(incoming) = incoming.filter(|i| i.index == applied) else {
                    return Err(progress.peer_failed(ctx.predecessor(), "pieces out of order"));
                };
                let step = &recvs[applied];
                let range = step.transfer.range.clone();
                let values = &mut buf[range.clone()];
                let outgoing = match landings[applied] {
                    Landing::Apply => {
                        compress::apply(values, &incoming.payload, format, step.action);
                        None
                    }
                    Landing::ApplyAndForward => {
                        compress::apply(values, &incoming.payload, format, step.action);
                        Some(incoming.payload)
                    }
                    Landing::Relay => {
                        Some(compress::add_encode(values, &incoming.payload, format).into())
                    }
                    Landing::Keep => {
                        Some(compress::add_keep_encode(values, &incoming.payload, format).into())
                    }
                };
                if let Some(payload) = outgoing {
                    forward.insert(range.start, payload);
                }
                progress.applied += 1;
                report(&progress);
            }
            permit = reserve(&out_tx), if ready => {
                let Some(permit) = permit else {
                    // The request stream is gone: the call ended; its status says why.
                    let status = tokio::time::timeout_at(ctx.deadline, &mut rpc).await;
                    let reason = match status {
                        Ok(Err(status)) => format!("{}: {}", status.code(), status.message()),
                        _ => "the successor closed the stream".to_owned(),
                    };
                    return Err(progress.peer_failed(ctx.successor(), reason));
                };
                let step = &sends[sent];
                let range = step.transfer.range.clone();
                let wire_bytes = range.len() * format.element_bytes();
                let payload = match forward.remove(&range.start) {
                    Some(received) if received.len() == wire_bytes => received,
                    _ if relayed.contains(&range.start) => {
                        return Err(CollectiveError::InvalidArgument(format!(
                            "invariant: the partial sum of elements {range:?} was not received \
                             before it is passed on"
                        )));
                    }
                    _ => {
                        if step.owner_source {
                            compress::round_in_place(&mut buf[range.clone()], format);
                        }
                        Payload::from(compress::encode(&buf[range], format))
                    }
                };
                let piece = OutPiece::new(&header.ring(&step.transfer, Bytes::new()), payload)
                    .map_err(|e| CollectiveError::InvalidArgument(e.to_string()))?;
                permit.send(piece);
                progress.sent += 1;
                report(&progress);
            }
        }
    }
    drop(out_tx);
    if !acked {
        tokio::select! {
            biased;
            () = &mut cancelled => return Err(progress.cancelled()),
            () = &mut deadline => return Err(progress.timeout(started)),
            result = &mut rpc => match result {
                Ok(ack) if ack.pieces_received == sends.len() as u64 => {}
                Ok(ack) => {
                    let got = ack.pieces_received;
                    let reason = format!("acknowledged {got} of {} pieces", sends.len());
                    return Err(progress.peer_failed(ctx.successor(), reason));
                }
                Err(status) => {
                    let reason = format!("{}: {}", status.code(), status.message());
                    return Err(progress.peer_failed(ctx.successor(), reason));
                }
            },
        }
    }
    tracing::debug!(op = ctx.op(), rank = ctx.rank, elements = buf.len(), "collective done");
    Ok(())
}
