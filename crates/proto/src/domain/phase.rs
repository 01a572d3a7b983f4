/// What a worker is doing; reported in heartbeats, shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerPhase {
    Idle,
    AwaitingQuorum,
    Healing,
    Computing,
    Reducing,
    Voting,
    Checkpointing,
    Leaving,
}

impl WorkerPhase {
    /// The phase in snake case, as status pages and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::AwaitingQuorum => "awaiting_quorum",
            Self::Healing => "healing",
            Self::Computing => "computing",
            Self::Reducing => "reducing",
            Self::Voting => "voting",
            Self::Checkpointing => "checkpointing",
            Self::Leaving => "leaving",
        }
    }
}

/// The coordinator's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeartbeatAction {
    Continue,
    /// The generation moved on: cancel the running collective, ask for a new quorum.
    AbortStep,
    /// The coordinator does not know this incarnation: join again.
    Rejoin,
    /// The job is over or being stopped: leave and exit.
    Shutdown,
}

/// A worker's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub worker: super::identity::WorkerRef,
    pub tag: super::step::StepTag,
    pub phase: WorkerPhase,
}

/// The coordinator's reply to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub generation: super::step::Generation,
    pub action: HeartbeatAction,
    pub reason: String,
}
