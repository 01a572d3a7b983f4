//! `--events-log FILE`: one JSON object per line for every decision of the core (each
//! [`Effect`]) and a `started` line each time the coordinator starts serving, so membership
//! changes, quorums, decisions, checkpoints and restarts can be read back after the fact (`jq`)
//! without a log pipeline.
//!
//! Every line has `unix_ms`, `event` (the effect's kind in snake case) and `generation` (the
//! core's generation after the batch of effects the line belongs to), then the effect's own
//! fields: workers as `"id#incarnation"`, step tags as `{generation, step}`, cursors as
//! `{epoch, next_sample}`, durations in milliseconds.
//!
//! The file discipline is the metrics log's ([`JsonLines`]): append mode, so a restarted
//! coordinator continues it; flushed per line; a write failure is a warning, never fatal.

use std::path::Path;
use std::time::Duration;

use albatross_proto::domain::{
    CheckpointDirective, CheckpointRef, DataCursor, Generation, StepTag, WorkerRef,
};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::effect::Effect;
use crate::error::CoordinatorError;
use crate::json_lines::JsonLines;
use crate::metrics_log::CursorLine;

/// A line of the log as a reader sees it: when, and which kind of event (the fields a recovery
/// report joins with its own records).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedEvent {
    pub unix_ms: u64,
    pub event: String,
}

/// Reads an events log back (missing: none; torn or foreign lines are skipped: the log is a
/// record for people and reports, never state).
pub fn read_events(path: &Path) -> Vec<LoggedEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The open events log.
#[derive(Debug)]
pub(crate) struct EventsLog {
    out: JsonLines,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct EventLine {
    pub unix_ms: u64,
    /// `started`, or the effect's kind: `joined`, `left`, `evicted`, `generation_changed`,
    /// `quorum_formed`, `committed`, `skipped`, `aborted`, `suspicion_not_confirmed`,
    /// `checkpoint_requested`, `checkpoint_recorded`, `checkpoint_failed`, `rolled_back`,
    /// `rewound`, `recovered`.
    pub event: &'static str,
    pub generation: u64,
    #[serde(flatten)]
    pub fields: EventFields,
}

/// The fields particular to each kind of line; the kind itself is [`EventLine::event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum EventFields {
    Started {
        instance: String,
        committed_step: u64,
    },
    Joined {
        worker: String,
        replaced: Option<String>,
    },
    Left {
        worker: String,
        reason: String,
    },
    Evicted {
        worker: String,
        reason: String,
        detected_after_ms: u64,
    },
    GenerationChanged {
        from: u64,
        to: u64,
        reason: String,
    },
    QuorumFormed {
        tag: TagLine,
        members: Vec<String>,
        healing: Vec<String>,
        fast: bool,
        reason: String,
    },
    Committed {
        tag: TagLine,
        cursor: CursorLine,
    },
    Skipped {
        tag: TagLine,
        cursor: CursorLine,
        reason: String,
    },
    Aborted {
        tag: TagLine,
        reason: String,
        divergent: Vec<String>,
    },
    SuspicionNotConfirmed {
        reporter: String,
        suspect: String,
        reason: String,
    },
    CheckpointRequested {
        worker: String,
        step: u64,
        path: String,
    },
    CheckpointRecorded {
        step: u64,
        path: String,
        manifest_sha256: String,
        cursor: CursorLine,
    },
    CheckpointFailed {
        worker: String,
        step: u64,
        error: String,
    },
    RolledBack {
        from_step: u64,
        to_step: u64,
        cursor: CursorLine,
        reason: String,
    },
    Rewound {
        worker: String,
        held_step: u64,
        committed_step: u64,
        reason: String,
    },
    Recovered {
        step: u64,
        cause: String,
        recovery_ms: u64,
    },
}

/// A step tag as `{"generation", "step"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct TagLine {
    pub generation: u64,
    pub step: u64,
}

impl From<StepTag> for TagLine {
    fn from(tag: StepTag) -> Self {
        Self { generation: tag.generation.0, step: tag.step }
    }
}

fn names(workers: &[WorkerRef]) -> Vec<String> {
    workers.iter().map(ToString::to_string).collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl EventLine {
    /// The line written when a coordinator starts serving: a restart shows as a new `instance`
    /// with a higher `generation`.
    pub fn started(
        instance: &str,
        generation: Generation,
        committed_step: u64,
        unix_ms: u64,
    ) -> Self {
        let fields = EventFields::Started { instance: instance.to_owned(), committed_step };
        Self { unix_ms, event: fields.kind(), generation: generation.0, fields }
    }

    /// The line for `effect`; `generation` is the core's after the batch it came in.
    pub fn new(effect: &Effect, generation: Generation, unix_ms: u64) -> Self {
        let fields = EventFields::from(effect);
        Self { unix_ms, event: fields.kind(), generation: generation.0, fields }
    }
}

impl EventFields {
    /// The line's `event`: the kind of these fields in snake case, so the name cannot disagree
    /// with the fields written after it.
    fn kind(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::Joined { .. } => "joined",
            Self::Left { .. } => "left",
            Self::Evicted { .. } => "evicted",
            Self::GenerationChanged { .. } => "generation_changed",
            Self::QuorumFormed { .. } => "quorum_formed",
            Self::Committed { .. } => "committed",
            Self::Skipped { .. } => "skipped",
            Self::Aborted { .. } => "aborted",
            Self::SuspicionNotConfirmed { .. } => "suspicion_not_confirmed",
            Self::CheckpointRequested { .. } => "checkpoint_requested",
            Self::CheckpointRecorded { .. } => "checkpoint_recorded",
            Self::CheckpointFailed { .. } => "checkpoint_failed",
            Self::RolledBack { .. } => "rolled_back",
            Self::Rewound { .. } => "rewound",
            Self::Recovered { .. } => "recovered",
        }
    }
}

impl From<&Effect> for EventFields {
    /// The effect's own fields in their logged form: workers as names, tags and cursors as
    /// objects, durations in milliseconds. Fields that fit a line are built in place; the
    /// others by the constructors below, grouped as these arms are.
    fn from(effect: &Effect) -> Self {
        match effect {
            // Membership.
            Effect::Joined { worker, replaced } => Self::joined(worker, replaced.as_ref()),
            Effect::Left { worker, reason } => Self::left(worker, reason),
            Effect::Evicted { worker, reason, detected_after } => {
                Self::evicted(worker, reason, *detected_after)
            }
            Effect::SuspicionNotConfirmed { reporter, suspect, reason } => {
                Self::suspicion_not_confirmed(reporter, suspect, reason)
            }
            Effect::GenerationChanged { from, to, reason } => {
                Self::GenerationChanged { from: from.0, to: to.0, reason: reason.clone() }
            }
            // Steps: formed, decided, undone.
            Effect::QuorumFormed { tag, members, healing, fast, reason } => Self::QuorumFormed {
                tag: (*tag).into(),
                members: names(members),
                healing: names(healing),
                fast: *fast,
                reason: reason.clone(),
            },
            Effect::Committed { tag, cursor } => {
                Self::Committed { tag: (*tag).into(), cursor: (*cursor).into() }
            }
            Effect::Skipped { tag, cursor, reason } => Self::skipped(*tag, *cursor, reason),
            Effect::Aborted { tag, reason, divergent } => Self::aborted(*tag, reason, divergent),
            Effect::Rewound { worker, held_step, committed_step, reason } => {
                Self::rewound(worker, *held_step, *committed_step, reason)
            }
            Effect::RolledBack { from_step, to_step, cursor, reason } => {
                Self::rolled_back(*from_step, *to_step, *cursor, reason)
            }
            Effect::Recovered { step, cause, after } => {
                Self::Recovered { step: *step, cause: cause.clone(), recovery_ms: millis(*after) }
            }
            // Checkpoints.
            Effect::CheckpointRequested { worker, directive } => {
                Self::checkpoint_requested(worker, directive)
            }
            Effect::CheckpointRecorded { checkpoint } => Self::checkpoint_recorded(checkpoint),
            Effect::CheckpointFailed { worker, step, error } => {
                Self::checkpoint_failed(worker, *step, error)
            }
        }
    }
}

/// Membership lines: who joined, left or was evicted, and suspicions that were not confirmed.
impl EventFields {
    fn joined(worker: &WorkerRef, replaced: Option<&WorkerRef>) -> Self {
        Self::Joined { worker: worker.to_string(), replaced: replaced.map(ToString::to_string) }
    }

    fn left(worker: &WorkerRef, reason: &str) -> Self {
        Self::Left { worker: worker.to_string(), reason: reason.to_owned() }
    }

    fn evicted(worker: &WorkerRef, reason: &str, detected_after: Duration) -> Self {
        let detected_after_ms = millis(detected_after);
        Self::Evicted { worker: worker.to_string(), reason: reason.to_owned(), detected_after_ms }
    }

    fn suspicion_not_confirmed(reporter: &WorkerRef, suspect: &WorkerRef, reason: &str) -> Self {
        Self::SuspicionNotConfirmed {
            reporter: reporter.to_string(),
            suspect: suspect.to_string(),
            reason: reason.to_owned(),
        }
    }
}

/// Step lines: a step skipped or aborted, a worker told to drop undone steps, a rollback.
impl EventFields {
    fn skipped(tag: StepTag, cursor: DataCursor, reason: &str) -> Self {
        Self::Skipped { tag: tag.into(), cursor: cursor.into(), reason: reason.to_owned() }
    }

    fn aborted(tag: StepTag, reason: &str, divergent: &[WorkerRef]) -> Self {
        Self::Aborted { tag: tag.into(), reason: reason.to_owned(), divergent: names(divergent) }
    }

    fn rewound(worker: &WorkerRef, held_step: u64, committed_step: u64, reason: &str) -> Self {
        let worker = worker.to_string();
        Self::Rewound { worker, held_step, committed_step, reason: reason.to_owned() }
    }

    fn rolled_back(from_step: u64, to_step: u64, cursor: DataCursor, reason: &str) -> Self {
        let (cursor, reason) = (cursor.into(), reason.to_owned());
        Self::RolledBack { from_step, to_step, cursor, reason }
    }
}

/// Checkpoint lines: asked for, recorded, failed.
impl EventFields {
    fn checkpoint_requested(worker: &WorkerRef, directive: &CheckpointDirective) -> Self {
        Self::CheckpointRequested {
            worker: worker.to_string(),
            step: directive.step,
            path: directive.path.clone(),
        }
    }

    fn checkpoint_recorded(checkpoint: &CheckpointRef) -> Self {
        Self::CheckpointRecorded {
            step: checkpoint.step,
            path: checkpoint.path.clone(),
            manifest_sha256: checkpoint.manifest_sha256.to_hex(),
            cursor: checkpoint.cursor.into(),
        }
    }

    fn checkpoint_failed(worker: &WorkerRef, step: u64, error: &str) -> Self {
        Self::CheckpointFailed { worker: worker.to_string(), step, error: error.to_owned() }
    }
}

impl EventsLog {
    /// Open `path` for appending, creating it if missing. Done once at start-up, so a wrong
    /// path stops the coordinator before it serves.
    ///
    /// # Errors
    /// [`CoordinatorError::Io`] when the file cannot be opened for appending.
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        JsonLines::open(path).map(|out| Self { out })
    }

    /// Append `line` and flush. A failure is logged as a warning, never returned: the log is
    /// not worth stopping training for.
    pub fn append(&mut self, line: &EventLine) {
        if let Err(error) = self.out.append(line) {
            let path = self.out.path().display();
            warn!(path = %path, event = line.event, %error, "cannot write the events log");
        }
    }

    /// Append one line per effect, in order.
    pub fn record(&mut self, effects: &[Effect], generation: Generation, unix_ms: u64) {
        for effect in effects {
            self.append(&EventLine::new(effect, generation, unix_ms));
        }
    }
}

#[cfg(test)]
#[path = "events_log_test.rs"]
mod tests;
