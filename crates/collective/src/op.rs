//! One operation on one rank: its context (tag, members, rank, deadline, cancellation) and its
//! default deadline. The ring driver that executes an operation is in `ring`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use albatross_proto::domain::{Member, OpTag, Quorum};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{CollectiveError, op_name};

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

/// A deadline for moving `bytes` of f32 through an all-reduce: a floor of five seconds plus
/// the time at a pessimistic 50 MB/s for the `2 (n - 1) / n` of the buffer each rank sends.
pub fn default_deadline(bytes: usize, world: usize) -> Duration {
    let world = world.max(1) as f64;
    let wire = bytes as f64 * 2.0 * (world - 1.0) / world;
    Duration::from_secs(5) + Duration::from_secs_f64(wire / 50e6)
}
