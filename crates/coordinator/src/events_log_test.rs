//! Every effect becomes one line with the agreed field names; lines survive a reopen; a bad path
//! is an error at open.

use std::time::Duration;

use albatross_proto::domain::{
    CheckpointDirective, CheckpointRef, DataCursor, Sha256Digest, StepTag,
};
use serde_json::{Value, json};

use super::*;
use crate::core_test::w;

fn tag(generation: u64, step: u64) -> StepTag {
    StepTag { generation: Generation(generation), step }
}

use crate::json_lines::read_lines;

/// One effect of every kind, each with the line it must become (at generation 7, time 1000).
fn every_effect() -> Vec<(Effect, Value)> {
    let cursor = DataCursor { epoch: 1, next_sample: 4 };
    let digest = Sha256Digest::of("manifest");
    vec![
        (
            Effect::Joined { worker: w("a", 2), replaced: Some(w("a", 1)) },
            json!({ "event": "joined", "worker": "a#2", "replaced": "a#1" }),
        ),
        (
            Effect::Left { worker: w("b", 1), reason: "shutting down".into() },
            json!({ "event": "left", "worker": "b#1", "reason": "shutting down" }),
        ),
        (
            Effect::Evicted {
                worker: w("c", 3),
                reason: "no heartbeat".into(),
                detected_after: Duration::from_millis(1500),
            },
            json!({
                "event": "evicted", "worker": "c#3", "reason": "no heartbeat",
                "detected_after_ms": 1500,
            }),
        ),
        (
            Effect::GenerationChanged {
                from: Generation(6),
                to: Generation(7),
                reason: "c#3 evicted".into(),
            },
            json!({ "event": "generation_changed", "from": 6, "to": 7, "reason": "c#3 evicted" }),
        ),
        (
            Effect::QuorumFormed {
                tag: tag(7, 5),
                members: vec![w("a", 2), w("b", 1)],
                healing: vec![w("b", 1)],
                fast: false,
                reason: "all live workers".into(),
            },
            json!({
                "event": "quorum_formed", "tag": { "generation": 7, "step": 5 },
                "members": ["a#2", "b#1"], "healing": ["b#1"], "fast": false,
                "reason": "all live workers",
            }),
        ),
        (
            Effect::Committed { tag: tag(7, 5), cursor },
            json!({
                "event": "committed", "tag": { "generation": 7, "step": 5 },
                "cursor": { "epoch": 1, "next_sample": 4 },
            }),
        ),
        (
            Effect::Skipped { tag: tag(7, 6), cursor, reason: "non-finite values".into() },
            json!({
                "event": "skipped", "tag": { "generation": 7, "step": 6 },
                "cursor": { "epoch": 1, "next_sample": 4 }, "reason": "non-finite values",
            }),
        ),
        (
            Effect::Aborted {
                tag: tag(7, 7),
                reason: "state hashes differ".into(),
                divergent: vec![w("b", 1)],
            },
            json!({
                "event": "aborted", "tag": { "generation": 7, "step": 7 },
                "reason": "state hashes differ", "divergent": ["b#1"],
            }),
        ),
        (
            Effect::SuspicionNotConfirmed {
                reporter: w("a", 2),
                suspect: w("b", 1),
                reason: "suspect heartbeats".into(),
            },
            json!({
                "event": "suspicion_not_confirmed", "reporter": "a#2", "suspect": "b#1",
                "reason": "suspect heartbeats",
            }),
        ),
        (
            Effect::CheckpointRequested {
                worker: w("a", 2),
                directive: CheckpointDirective { step: 8, path: "ckpt/step-8".into() },
            },
            json!({
                "event": "checkpoint_requested", "worker": "a#2", "step": 8,
                "path": "ckpt/step-8",
            }),
        ),
        (
            Effect::CheckpointRecorded {
                checkpoint: CheckpointRef {
                    step: 8,
                    path: "ckpt/step-8".into(),
                    manifest_sha256: digest,
                    cursor,
                },
            },
            json!({
                "event": "checkpoint_recorded", "step": 8, "path": "ckpt/step-8",
                "manifest_sha256": digest.to_hex(), "cursor": { "epoch": 1, "next_sample": 4 },
            }),
        ),
        (
            Effect::CheckpointFailed { worker: w("a", 2), step: 8, error: "disk full".into() },
            json!({ "event": "checkpoint_failed", "worker": "a#2", "step": 8, "error": "disk full" }),
        ),
        (
            Effect::RolledBack {
                from_step: 8,
                to_step: 4,
                cursor: DataCursor { epoch: 0, next_sample: 16 },
                reason: "no member holds step 8".into(),
            },
            json!({
                "event": "rolled_back", "from_step": 8, "to_step": 4,
                "cursor": { "epoch": 0, "next_sample": 16 }, "reason": "no member holds step 8",
            }),
        ),
    ]
}

#[test]
fn every_effect_serialises_to_its_line() {
    for (effect, mut expected) in every_effect() {
        let line = serde_json::to_value(EventLine::new(&effect, Generation(7), 1000))
            .expect("a line serialises");
        expected["unix_ms"] = json!(1000);
        expected["generation"] = json!(7);
        assert_eq!(line, expected, "{effect:?}");
    }
    // The common fields come first, so a line reads well without a JSON tool.
    let joined = Effect::Joined { worker: w("worker-1", 123), replaced: None };
    assert_eq!(
        serde_json::to_string(&EventLine::new(&joined, Generation(3), 17)).expect("serialises"),
        r#"{"unix_ms":17,"event":"joined","generation":3,"worker":"worker-1#123","replaced":null}"#
    );
    let started = EventLine::started("42-abc", Generation(3), 9, 5);
    assert_eq!(
        serde_json::to_string(&started).expect("serialises"),
        r#"{"unix_ms":5,"event":"started","generation":3,"instance":"42-abc","committed_step":9}"#
    );
}

#[test]
fn lines_are_appended_across_reopens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    let effects: Vec<Effect> = every_effect().into_iter().map(|(effect, _)| effect).collect();
    let mut log = EventsLog::open(&path).expect("open");
    log.append(&EventLine::started("1-a", Generation(1), 0, 10));
    log.record(&effects[..2], Generation(1), 11);
    drop(log);
    // A restarted coordinator opens the same file again and continues it.
    let mut log = EventsLog::open(&path).expect("reopen");
    log.append(&EventLine::started("2-b", Generation(2), 0, 20));
    log.record(&effects[2..], Generation(3), 21);
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2 + effects.len());
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        events,
        [
            "started",
            "joined",
            "left",
            "started",
            "evicted",
            "generation_changed",
            "quorum_formed",
            "committed",
            "skipped",
            "aborted",
            "suspicion_not_confirmed",
            "checkpoint_requested",
            "checkpoint_recorded",
            "checkpoint_failed",
            "rolled_back",
        ]
    );
    assert_eq!(
        lines[0],
        json!({
            "unix_ms": 10, "event": "started", "generation": 1, "instance": "1-a", "committed_step": 0,
        })
    );
    assert_eq!(
        (lines[3]["instance"].as_str(), lines[3]["generation"].as_u64()),
        (Some("2-b"), Some(2))
    );
    assert_eq!(
        (lines[4]["unix_ms"].as_u64(), lines[4]["generation"].as_u64()),
        (Some(21), Some(3))
    );
}

#[test]
fn a_reader_gets_every_line_back_and_skips_a_torn_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    assert_eq!(read_events(&path), vec![], "no log yet: no events");
    let effects: Vec<Effect> = every_effect().into_iter().map(|(effect, _)| effect).collect();
    let mut log = EventsLog::open(&path).expect("open");
    log.append(&EventLine::started("1-a", Generation(1), 0, 10));
    log.record(&effects[..2], Generation(1), 11);
    drop(log);
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("append");
    std::io::Write::write_all(&mut file, b"{\"unix_ms\": 12, \"ev").expect("torn line");
    let read = read_events(&path);
    let expected = [(10, "started"), (11, "joined"), (11, "left")];
    let expected: Vec<LoggedEvent> = expected
        .iter()
        .map(|&(unix_ms, event)| LoggedEvent { unix_ms, event: event.to_owned() })
        .collect();
    assert_eq!(read, expected);
}

#[test]
fn an_unopenable_path_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = EventsLog::open(&tmp.path().join("missing-dir").join("events.jsonl"))
        .expect_err("no such directory");
    assert!(matches!(err, CoordinatorError::Io { .. }), "{err}");
    // A directory cannot be appended to either.
    let err = EventsLog::open(tmp.path()).expect_err("a directory");
    assert!(matches!(err, CoordinatorError::Io { .. }), "{err}");
}
