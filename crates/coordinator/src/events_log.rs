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

use albatross_proto::domain::{Generation, StepTag, WorkerRef};
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

fn millis(d: std::time::Duration) -> u64 {
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
        Self { unix_ms, event: "started", generation: generation.0, fields }
    }

    /// The line for `effect`; `generation` is the core's after the batch it came in.
    pub fn new(effect: &Effect, generation: Generation, unix_ms: u64) -> Self {
        use EventFields as F;
        let (event, fields) = match effect {
            Effect::Joined { worker, replaced } => (
                "joined",
                F::Joined {
                    worker: worker.to_string(),
                    replaced: replaced.as_ref().map(ToString::to_string),
                },
            ),
            Effect::Left { worker, reason } => {
                ("left", F::Left { worker: worker.to_string(), reason: reason.clone() })
            }
            Effect::Evicted { worker, reason, detected_after } => (
                "evicted",
                F::Evicted {
                    worker: worker.to_string(),
                    reason: reason.clone(),
                    detected_after_ms: millis(*detected_after),
                },
            ),
            Effect::GenerationChanged { from, to, reason } => (
                "generation_changed",
                F::GenerationChanged { from: from.0, to: to.0, reason: reason.clone() },
            ),
            Effect::QuorumFormed { tag, members, healing, fast, reason } => (
                "quorum_formed",
                F::QuorumFormed {
                    tag: (*tag).into(),
                    members: names(members),
                    healing: names(healing),
                    fast: *fast,
                    reason: reason.clone(),
                },
            ),
            Effect::Committed { tag, cursor } => {
                ("committed", F::Committed { tag: (*tag).into(), cursor: (*cursor).into() })
            }
            Effect::Skipped { tag, cursor, reason } => (
                "skipped",
                F::Skipped { tag: (*tag).into(), cursor: (*cursor).into(), reason: reason.clone() },
            ),
            Effect::Aborted { tag, reason, divergent } => (
                "aborted",
                F::Aborted {
                    tag: (*tag).into(),
                    reason: reason.clone(),
                    divergent: names(divergent),
                },
            ),
            Effect::SuspicionNotConfirmed { reporter, suspect, reason } => (
                "suspicion_not_confirmed",
                F::SuspicionNotConfirmed {
                    reporter: reporter.to_string(),
                    suspect: suspect.to_string(),
                    reason: reason.clone(),
                },
            ),
            Effect::CheckpointRequested { worker, directive } => (
                "checkpoint_requested",
                F::CheckpointRequested {
                    worker: worker.to_string(),
                    step: directive.step,
                    path: directive.path.clone(),
                },
            ),
            Effect::CheckpointRecorded { checkpoint } => (
                "checkpoint_recorded",
                F::CheckpointRecorded {
                    step: checkpoint.step,
                    path: checkpoint.path.clone(),
                    manifest_sha256: checkpoint.manifest_sha256.to_hex(),
                    cursor: checkpoint.cursor.into(),
                },
            ),
            Effect::CheckpointFailed { worker, step, error } => (
                "checkpoint_failed",
                F::CheckpointFailed {
                    worker: worker.to_string(),
                    step: *step,
                    error: error.clone(),
                },
            ),
            Effect::Rewound { worker, held_step, committed_step, reason } => (
                "rewound",
                F::Rewound {
                    worker: worker.to_string(),
                    held_step: *held_step,
                    committed_step: *committed_step,
                    reason: reason.clone(),
                },
            ),
            Effect::Recovered { step, cause, after } => (
                "recovered",
                F::Recovered { step: *step, cause: cause.clone(), recovery_ms: millis(*after) },
            ),
            Effect::RolledBack { from_step, to_step, cursor, reason } => (
                "rolled_back",
                F::RolledBack {
                    from_step: *from_step,
                    to_step: *to_step,
                    cursor: (*cursor).into(),
                    reason: reason.clone(),
                },
            ),
        };
        Self { unix_ms, event, generation: generation.0, fields }
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
