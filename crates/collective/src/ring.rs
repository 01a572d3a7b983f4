//! The driver that executes a [`RingPlan`] on one rank: a single loop that applies received
//! pieces to the caller's buffer and feeds the outgoing stream to the ring successor as soon as
//! the piece it carries is final, so sending, receiving and adding overlap. Every wait in it
//! ends on the operation's deadline or cancellation.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use albatross_proto::domain::{CollectiveOp, Member};
use albatross_proto::wire::v1::ReduceAck;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFuture;
use tonic::{Code, Status};

use crate::chunk::ChunkHeader;
use crate::codec::RingCodec;
use crate::error::CollectiveError;
use crate::landing::{Landing, landings};
use crate::op::OpContext;
use crate::payload::Payload;
use crate::reduce_call::{self, OutPiece};
use crate::registry::{ActiveOp, Expect, Incoming};
use crate::schedule::{RecvStep, RingPlan, SendStep};
use crate::shared::{OpProgress, Shared};

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

/// Execute `plan` (all-reduce or broadcast) on `buf`, its elements travelling and combining
/// as `codec` says. On error the buffer holds partial data.
pub(crate) async fn run_ring<C: RingCodec>(
    shared: &Shared,
    ctx: &OpContext,
    kind: CollectiveOp,
    plan: RingPlan,
    codec: C,
    buf: &mut [C::Elem],
) -> Result<(), CollectiveError> {
    let result = drive_ring(shared, ctx, kind, plan, codec, buf).await;
    if let Err(err) = &result {
        shared.pool.evict(&ctx.successor().address);
        tracing::warn!(op = ctx.op(), rank = ctx.rank, error = %err, "collective failed");
    }
    result
}

async fn drive_ring<C: RingCodec>(
    shared: &Shared,
    ctx: &OpContext,
    kind: CollectiveOp,
    plan: RingPlan,
    codec: C,
    buf: &mut [C::Elem],
) -> Result<(), CollectiveError> {
    let RingPlan { sends, recvs } = plan;
    let recvs: Arc<[RecvStep]> = recvs.into();
    let progress = Progress { ctx, sent: 0, sends: sends.len(), applied: 0, recvs: recvs.len() };
    if ctx.cancel.is_cancelled() {
        return Err(progress.cancelled());
    }
    if sends.is_empty() && recvs.is_empty() {
        return Ok(());
    }
    let depth = shared.config.queue_pieces.max(1);
    let (inbox_tx, inbox) = mpsc::channel::<Incoming>(depth);
    let (failures_tx, failures) = mpsc::unbounded_channel::<String>();
    let _registered = shared.registry.begin(ActiveOp {
        tag: ctx.tag,
        kind,
        members: Arc::clone(&ctx.members),
        rank: ctx.rank as usize,
        total_elements: buf.len() as u64,
        expect: Expect::Ring { recvs: Arc::clone(&recvs), dtype: codec.element_type() },
        inbox: inbox_tx,
        failures: failures_tx,
    })?;
    let mut run = RingRun::new(shared, ctx, kind, codec, sends, recvs, buf.len());
    run.report();
    let (out_tx, out_rx) = mpsc::channel::<OutPiece>(depth);
    let mut links = Links {
        acked: run.sends.is_empty(),
        rpc: run.open_stream(out_rx).await?,
        out_tx: Some(out_tx),
        inbox,
        failures,
        deadline: Box::pin(tokio::time::sleep_until(ctx.deadline)),
        cancelled: Box::pin(ctx.cancel.cancelled()),
    };
    run.exchange(&mut links, buf).await?;
    run.await_ack(&mut links).await?;
    tracing::debug!(op = ctx.op(), rank = ctx.rank, elements = buf.len(), "collective done");
    Ok(())
}

/// The channels and pending futures of one operation's loop.
struct Links<'a> {
    /// The successor's call: it ends with its acknowledgement (or the reason it failed).
    rpc: RpcFuture,
    acked: bool,
    /// The request stream of `rpc`; dropped once every piece is sent, which ends the stream.
    out_tx: Option<mpsc::Sender<OutPiece>>,
    /// Pieces from the predecessor, checked by the peer server.
    inbox: mpsc::Receiver<Incoming>,
    /// A broken stream from the predecessor, in words.
    failures: mpsc::UnboundedReceiver<String>,
    deadline: Pin<Box<Sleep>>,
    cancelled: Pin<Box<WaitForCancellationFuture<'a>>>,
}

/// What woke the loop.
enum Event<'p> {
    /// The successor's call ended.
    Ended(Result<ReduceAck, Status>),
    /// The predecessor's next piece (`None`: its stream is gone).
    Received(Option<Incoming>),
    /// Room for the next piece on the request stream.
    CanSend(mpsc::Permit<'p, OutPiece>),
    /// The request stream closed.
    StreamGone,
}

/// Whether the successor's call or its request stream ended, as [`RingRun::handle`] found.
enum Ended {
    No,
    Call(Result<ReduceAck, Status>),
    Stream,
}

/// One rank's ring operation between the events of its loop.
struct RingRun<'a, C> {
    shared: &'a Shared,
    ctx: &'a OpContext,
    codec: C,
    sends: Vec<SendStep>,
    recvs: Arc<[RecvStep]>,
    /// What becomes of each received piece (see [`Landing`]).
    landings: Vec<Landing>,
    /// Ranges whose partial sums are relayed: never encoded from the buffer.
    relayed: HashSet<usize>,
    /// Outgoing payloads made on receipt, by the start of their range. Only what goes on is
    /// kept: a held payload pins HTTP/2 read buffers.
    forward: HashMap<usize, Payload>,
    header: ChunkHeader,
    progress: Progress<'a>,
    started: Instant,
}

impl<'a, C: RingCodec> RingRun<'a, C> {
    fn new(
        shared: &'a Shared,
        ctx: &'a OpContext,
        kind: CollectiveOp,
        codec: C,
        sends: Vec<SendStep>,
        recvs: Arc<[RecvStep]>,
        elements: usize,
    ) -> Self {
        let landings = landings(&sends, &recvs);
        let relayed = recvs
            .iter()
            .zip(&landings)
            .filter(|(_, landing)| **landing == Landing::Relay)
            .map(|(r, _)| r.transfer.range.start)
            .collect();
        let header = ChunkHeader {
            tag: ctx.tag,
            sender: ctx.me().worker.clone(),
            kind,
            total_elements: elements as u64,
            dtype: codec.element_type(),
        };
        let progress =
            Progress { ctx, sent: 0, sends: sends.len(), applied: 0, recvs: recvs.len() };
        Self {
            shared,
            ctx,
            codec,
            sends,
            recvs,
            landings,
            relayed,
            forward: HashMap::new(),
            header,
            progress,
            started: Instant::now(),
        }
    }

    fn report(&self) {
        let p = &self.progress;
        self.shared.progress.send_replace(OpProgress {
            tag: Some(self.ctx.tag),
            sent: p.sent,
            sends: p.sends,
            received: p.applied,
            recvs: p.recvs,
        });
    }

    /// The call to the successor that carries this rank's pieces (none when it sends nothing).
    async fn open_stream(
        &self,
        out_rx: mpsc::Receiver<OutPiece>,
    ) -> Result<RpcFuture, CollectiveError> {
        if self.sends.is_empty() {
            return Ok(Box::pin(std::future::pending()));
        }
        let ctx = self.ctx;
        let successor = &ctx.successor().address;
        let channel = self.shared.pool.get(successor, ctx.deadline, &ctx.cancel, &ctx.op()).await?;
        let timeout = ctx.deadline.saturating_duration_since(Instant::now());
        Ok(Box::pin(reduce_call::reduce(channel, out_rx, timeout)))
    }

    /// Receives, applies and sends until every piece is sent and every piece received.
    async fn exchange(
        &mut self,
        links: &mut Links<'_>,
        buf: &mut [C::Elem],
    ) -> Result<(), CollectiveError> {
        loop {
            let (sent, applied) = (self.progress.sent, self.progress.applied);
            if sent == self.sends.len() {
                // Ends the request stream: the successor acknowledges once it took every piece.
                links.out_tx = None;
                if applied == self.recvs.len() {
                    return Ok(());
                }
            }
            let ready = self.sends.get(sent).is_some_and(|s: &SendStep| s.after_recvs <= applied);
            let event = tokio::select! {
                biased;
                () = &mut links.cancelled => return Err(self.progress.cancelled()),
                () = &mut links.deadline => return Err(self.progress.timeout(self.started)),
                Some(reason) = links.failures.recv() => {
                    return Err(self.progress.peer_failed(self.ctx.predecessor(), reason));
                }
                result = &mut links.rpc, if !links.acked => Event::Ended(result),
                incoming = links.inbox.recv(), if applied < self.recvs.len() => {
                    Event::Received(incoming)
                }
                permit = reserve(&links.out_tx), if ready => match permit {
                    Some(permit) => Event::CanSend(permit),
                    None => Event::StreamGone,
                },
            };
            match self.handle(event, buf)? {
                Ended::No => {}
                Ended::Call(result) => {
                    links.acked = true;
                    match result {
                        Ok(ack) if ack.pieces_received == self.sends.len() as u64 => {}
                        result => return Err(self.successor_ended(result, links).await),
                    }
                }
                // The request stream is gone: the call ended; its status says why.
                Ended::Stream => return Err(self.stream_gone(links).await),
            }
        }
    }

    /// Applies or sends a piece; what ended otherwise is left to the caller, which may then
    /// use every link (the event, and the borrow of a permit, are gone).
    fn handle(&mut self, event: Event<'_>, buf: &mut [C::Elem]) -> Result<Ended, CollectiveError> {
        match event {
            Event::Received(incoming) => self.apply(incoming, buf)?,
            Event::CanSend(permit) => self.send(permit, buf)?,
            Event::Ended(result) => return Ok(Ended::Call(result)),
            Event::StreamGone => return Ok(Ended::Stream),
        }
        Ok(Ended::No)
    }

    /// Applies the next received piece to `buf` and keeps what goes on (see [`Landing`]).
    fn apply(
        &mut self,
        incoming: Option<Incoming>,
        buf: &mut [C::Elem],
    ) -> Result<(), CollectiveError> {
        let applied = self.progress.applied;
        let Some(incoming) = incoming.filter(|i| i.index == applied) else {
            return Err(self.progress.peer_failed(self.ctx.predecessor(), "pieces out of order"));
        };
        let codec = self.codec;
        let step = &self.recvs[applied];
        let range = step.transfer.range.clone();
        let values = &mut buf[range.clone()];
        let outgoing = match self.landings[applied] {
            Landing::Apply => {
                codec.apply(values, &incoming.payload, step.action);
                None
            }
            Landing::ApplyAndForward => {
                codec.apply(values, &incoming.payload, step.action);
                Some(incoming.payload)
            }
            Landing::Relay => Some(codec.add_encode(values, &incoming.payload).into()),
            Landing::Keep => Some(codec.add_keep_encode(values, &incoming.payload).into()),
        };
        if let Some(payload) = outgoing {
            self.forward.insert(range.start, payload);
        }
        self.progress.applied += 1;
        self.report();
        Ok(())
    }

    /// Sends the next piece: the bytes received for its range when they go on unchanged,
    /// else the buffer's range encoded.
    fn send(
        &mut self,
        permit: mpsc::Permit<'_, OutPiece>,
        buf: &mut [C::Elem],
    ) -> Result<(), CollectiveError> {
        let codec = self.codec;
        let step = &self.sends[self.progress.sent];
        let range = step.transfer.range.clone();
        let wire_bytes = range.len() * codec.element_bytes();
        let payload = match self.forward.remove(&range.start) {
            Some(received) if received.len() == wire_bytes => received,
            _ if self.relayed.contains(&range.start) => {
                return Err(CollectiveError::InvalidArgument(format!(
                    "invariant: the partial sum of elements {range:?} was not received \
                     before it is passed on"
                )));
            }
            _ => {
                if step.owner_source {
                    codec.round_in_place(&mut buf[range.clone()]);
                }
                Payload::from(codec.encode(&buf[range]))
            }
        };
        let piece = OutPiece::new(&self.header.ring(&step.transfer, Bytes::new()), payload)
            .map_err(|e| CollectiveError::InvalidArgument(e.to_string()))?;
        permit.send(piece);
        self.progress.sent += 1;
        self.report();
        Ok(())
    }

    /// The successor's call ended before this rank finished: why, naming whom.
    async fn successor_ended(
        &self,
        result: Result<ReduceAck, Status>,
        links: &mut Links<'_>,
    ) -> CollectiveError {
        let reason = match result {
            Err(status) if status.code() == Code::Aborted => {
                // The successor is alive and ended the operation itself: the failure lies
                // elsewhere in the ring, and when it is this rank's predecessor the broken
                // stream says so a moment later. Name that cause if it comes within a short
                // grace, rather than the successor.
                if let Some(err) = self.predecessor_failure_within_grace(links).await {
                    return err;
                }
                format!("{}: {}", status.code(), status.message())
            }
            Err(status) => format!("{}: {}", status.code(), status.message()),
            Ok(ack) => {
                format!("acknowledged {} of {} pieces", ack.pieces_received, self.sends.len())
            }
        };
        self.progress.peer_failed(self.ctx.successor(), reason)
    }

    /// A failure the predecessor's stream reports within [`SECONDARY_FAILURE_GRACE`] (or the
    /// cancellation), if any.
    async fn predecessor_failure_within_grace(
        &self,
        links: &mut Links<'_>,
    ) -> Option<CollectiveError> {
        let grace = Instant::now() + SECONDARY_FAILURE_GRACE;
        let grace = tokio::time::sleep_until(grace.min(self.ctx.deadline));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                biased;
                () = &mut links.cancelled => return Some(self.progress.cancelled()),
                Some(reason) = links.failures.recv() => {
                    return Some(self.progress.peer_failed(self.ctx.predecessor(), reason));
                }
                // Pieces still arriving are dropped (the operation has failed): a handler
                // blocked on a full inbox would never read on to the break of its stream that
                // names the cause.
                Some(_) = links.inbox.recv() => {}
                () = &mut grace => return None,
            }
        }
    }

    /// The request stream closed under a piece ready to send: the call's status says why.
    async fn stream_gone(&self, links: &mut Links<'_>) -> CollectiveError {
        let status = tokio::time::timeout_at(self.ctx.deadline, &mut links.rpc).await;
        let reason = match status {
            Ok(Err(status)) => format!("{}: {}", status.code(), status.message()),
            _ => "the successor closed the stream".to_owned(),
        };
        self.progress.peer_failed(self.ctx.successor(), reason)
    }

    /// Waits for the successor's acknowledgement of every piece, if it has not come yet.
    async fn await_ack(&self, links: &mut Links<'_>) -> Result<(), CollectiveError> {
        links.out_tx = None;
        if links.acked {
            return Ok(());
        }
        tokio::select! {
            biased;
            () = &mut links.cancelled => Err(self.progress.cancelled()),
            () = &mut links.deadline => Err(self.progress.timeout(self.started)),
            result = &mut links.rpc => match result {
                Ok(ack) if ack.pieces_received == self.sends.len() as u64 => Ok(()),
                Ok(ack) => {
                    let got = ack.pieces_received;
                    let reason = format!("acknowledged {got} of {} pieces", self.sends.len());
                    Err(self.progress.peer_failed(self.ctx.successor(), reason))
                }
                Err(status) => {
                    let reason = format!("{}: {}", status.code(), status.message());
                    Err(self.progress.peer_failed(self.ctx.successor(), reason))
                }
            },
        }
    }
}
