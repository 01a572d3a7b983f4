//! Domain types of the protocol. Constructors validate, so a value in hand is well-formed.

mod checkpoint;
mod collective;
mod data;
mod digest;
mod identity;
mod join;
mod phase;
mod quorum;
mod request;
mod status;
mod step;
mod vote;

pub use checkpoint::{CheckpointDirective, CheckpointRef};
pub use collective::{CollectiveOp, ElementType, OpTag};
pub use data::{DataCursor, SampleRange};
pub use digest::{DigestLengthError, Sha256Digest, StateHash};
pub use identity::{InvalidWorkerId, WorkerId, WorkerRef};
pub use join::{BuildInfo, JoinAccepted, JoinRequest};
pub use phase::{Heartbeat, HeartbeatAction, HeartbeatReply, WorkerPhase};
pub use quorum::{HealInstruction, JobFinished, Member, NotYet, Quorum, QuorumOutcome, Rewind};
pub use request::{CheckpointReport, LeaveRequest, PeerFailureReport, QuorumRequest};
pub use status::{JobStatus, MemberStatus};
pub use step::{Generation, StepTag};
pub use vote::{Decision, StepStats, Vote, VoteDecision, VoteOutcome};
