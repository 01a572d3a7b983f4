//! The meeting point of the local operation and the `Reduce` streams that feed it.
//!
//! A worker runs one collective operation at a time. The operation registers itself (tag,
//! members, what it expects to receive, an inbox); a `Reduce` handler claims a link to it for
//! its sender. A stream that arrives before the local operation started waits for it (bounded);
//! one for an operation not newer than the latest registered one is stale and refused.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use albatross_proto::domain::{CollectiveOp, ElementType};
use albatross_proto::domain::{Member, OpTag, WorkerRef};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::{CollectiveError, op_name};
use crate::payload::Payload;
use crate::schedule::RecvStep;

/// A piece handed from a `Reduce` handler to the local operation.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// Ring ops: index into the receive plan. Scalar sums: the sender's rank.
    pub index: usize,
    pub payload: Payload,
}

/// What the local operation expects from the network.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// Pieces in plan order from the ring predecessor, over one stream.
    Ring { recvs: Arc<[RecvStep]>, dtype: ElementType },
    /// One message of `len` f64 from every other member.
    Scalar { len: usize },
}

/// A registered operation.
#[derive(Debug)]
pub(crate) struct ActiveOp {
    pub tag: OpTag,
    pub kind: CollectiveOp,
    pub members: Arc<[Member]>,
    pub rank: usize,
    pub total_elements: u64,
    pub expect: Expect,
    pub inbox: mpsc::Sender<Incoming>,
    /// Handlers report a broken stream here; unbounded so reporting never blocks.
    pub failures: mpsc::UnboundedSender<String>,
}

/// What a handler holds after claiming its place in an operation.
#[derive(Debug)]
pub(crate) struct Link {
    pub tag: OpTag,
    pub kind: CollectiveOp,
    pub world: usize,
    pub sender: WorkerRef,
    pub sender_rank: usize,
    pub total_elements: u64,
    pub expect: Expect,
    pub inbox: mpsc::Sender<Incoming>,
    pub failures: mpsc::UnboundedSender<String>,
}

/// Why a stream was refused; each maps to one gRPC status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Another generation or operation (`FAILED_PRECONDITION`).
    Stale(String),
    /// The sender may not send to this rank (`PERMISSION_DENIED`).
    NotMember(String),
    /// The chunk contradicts the operation (`INVALID_ARGUMENT`).
    Invalid(String),
    /// A second stream for the same sender and operation (`ALREADY_EXISTS`).
    Duplicate(String),
    /// The local operation ended while the stream was open (`ABORTED`).
    Ended(String),
}

impl From<Reject> for tonic::Status {
    fn from(reject: Reject) -> Self {
        match reject {
            Reject::Stale(m) => Self::failed_precondition(m),
            Reject::NotMember(m) => Self::permission_denied(m),
            Reject::Invalid(m) => Self::invalid_argument(m),
            Reject::Duplicate(m) => Self::already_exists(m),
            Reject::Ended(m) => Self::aborted(m),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    latest: Option<OpTag>,
    active: Option<ActiveOp>,
    /// Ranks that already opened a stream for the active operation.
    claimed: Vec<usize>,
}

/// Shared between the local operations of one worker and its `PeerService`.
#[derive(Debug)]
pub(crate) struct Registry {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Self { state: Mutex::new(State::default()), changed: watch::Sender::new(0) }
    }
}

/// Unregisters the operation when dropped, however the operation ends.
#[derive(Debug)]
pub(crate) struct OpGuard {
    registry: Arc<Registry>,
    tag: OpTag,
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        self.registry.finish(self.tag);
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The latest operation tag registered here.
    pub fn latest(&self) -> Option<OpTag> {
        self.lock().latest
    }

    /// Register `op` as the active operation.
    pub fn begin(self: &Arc<Self>, op: ActiveOp) -> Result<OpGuard, CollectiveError> {
        let tag = op.tag;
        {
            let mut state = self.lock();
            if let Some(active) = &state.active {
                return Err(CollectiveError::Busy {
                    active: op_name(&active.tag),
                    requested: op_name(&tag),
                });
            }
            if let Some(latest) = state.latest.filter(|latest| *latest >= tag) {
                return Err(CollectiveError::StaleTag {
                    requested: op_name(&tag),
                    latest: op_name(&latest),
                });
            }
            state.latest = Some(tag);
            state.active = Some(op);
            state.claimed.clear();
        }
        self.notify();
        Ok(OpGuard { registry: Arc::clone(self), tag })
    }

    fn finish(&self, tag: OpTag) {
        {
            let mut state = self.lock();
            if state.active.as_ref().is_some_and(|op| op.tag == tag) {
                state.active = None;
                state.claimed.clear();
            }
        }
        self.notify();
    }

    /// Claim `sender`'s place in operation `tag`, waiting until `wait_until` for the local
    /// operation to start if the stream came early.
    pub async fn claim(
        &self,
        tag: OpTag,
        sender: &WorkerRef,
        wait_until: Instant,
    ) -> Result<Link, Reject> {
        let mut changed = self.changed.subscribe();
        loop {
            if let Some(result) = self.try_claim(tag, sender) {
                return result;
            }
            match tokio::time::timeout_at(wait_until, changed.changed()).await {
                Ok(Ok(())) => {}
                // The sender half lives as long as `self`, so only the timeout ends the wait.
                Ok(Err(_)) | Err(_) => {
                    return Err(Reject::Stale(format!(
                        "operation {} did not start on this rank in time (latest here: {})",
                        op_name(&tag),
                        self.latest().map_or_else(|| "none".to_owned(), |t| op_name(&t))
                    )));
                }
            }
        }
    }

    /// `None` while the stream must wait for the local operation.
    fn try_claim(&self, tag: OpTag, sender: &WorkerRef) -> Option<Result<Link, Reject>> {
        let mut state = self.lock();
        let latest = state.latest;
        let Some(op) = state.active.as_ref().filter(|op| op.tag == tag) else {
            return match latest.filter(|latest| *latest >= tag) {
                Some(latest) if latest == tag => Some(Err(Reject::Stale(format!(
                    "operation {} already ended on this rank",
                    op_name(&tag)
                )))),
                Some(latest) => Some(Err(Reject::Stale(format!(
                    "stale operation {}: this rank is at {}",
                    op_name(&tag),
                    op_name(&latest)
                )))),
                None => None,
            };
        };
        let world = op.members.len();
        let Some(sender_rank) = op.members.iter().position(|m| m.worker == *sender) else {
            return Some(Err(Reject::NotMember(format!(
                "worker {sender} is not a member of the quorum of {}",
                op.tag.generation
            ))));
        };
        if let Expect::Ring { .. } = op.expect {
            let predecessor = (op.rank + world - 1) % world;
            if sender_rank != predecessor {
                return Some(Err(Reject::NotMember(format!(
                    "worker {sender} (rank {sender_rank}) is not the ring predecessor of rank {}",
                    op.rank
                ))));
            }
        } else if sender_rank == op.rank {
            return Some(Err(Reject::NotMember(format!(
                "worker {sender} sent to its own rank {sender_rank}"
            ))));
        }
        let link = Link {
            tag: op.tag,
            kind: op.kind,
            world,
            sender: sender.clone(),
            sender_rank,
            total_elements: op.total_elements,
            expect: op.expect.clone(),
            inbox: op.inbox.clone(),
            failures: op.failures.clone(),
        };
        if state.claimed.contains(&sender_rank) {
            return Some(Err(Reject::Duplicate(format!(
                "a second stream from {sender} for operation {}",
                op_name(&tag)
            ))));
        }
        state.claimed.push(sender_rank);
        Some(Ok(link))
    }
}

#[cfg(test)]
#[path = "registry_test.rs"]
mod registry_test;
