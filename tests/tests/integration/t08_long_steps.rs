//! Faults at real step lengths (issue 25). Every worker computes ~2.5 s per step (a test hook
//! adds cancellable compute time to the tiny model), longer than the 2 s join grace: the
//! timings of albert-base, where a worker kill used to make the coordinator throw committed
//! steps away while the surviving worker, which held them, was still computing.
//!
//! A worker is killed in every phase of a step (just after the quorum, mid-compute, waiting in
//! the all-reduce, before its vote, before applying a committed step) and restarted at once, as
//! the launcher and Kubernetes do. Each run must end with every step decided exactly once, no
//! rollback, agreeing replicas, and the survivor's aborted computation stopped early. A worker
//! whose state a legitimate rollback undid (every holder gone) must drop it and rejoin, not exit.

use std::time::Duration;

use albatross_tests::{Cluster, Proc, unix_ms};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::albatross;
use super::t05_cluster::{
    LONG, assert_exact_ledger, assert_replicas_agree, cluster, finish, job, serial,
};

/// Compute time every worker adds per step.
const STEP_MS: u64 = 2500;

fn slow(extra: &str) -> String {
    format!("slow_compute_ms={STEP_MS}{extra}")
}

fn events_of_kind(c: &Cluster, kind: &str) -> Vec<Value> {
    c.events().into_iter().filter(|e| e["event"] == kind).collect()
}

/// Two workers at real step lengths; worker-1 is held at `point` of step 3 and killed there,
/// then restarted under the same name. Returns how long after the kill the next step
/// committed.
fn kill_at(point: &str) -> u64 {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = 5;
    let c = cluster(dir.path(), &job(steps, 1, 100, ""));
    let (_coordinator, url) = c.coordinator("127.0.0.1:0").expect("coordinator");
    let mut survivor = c.worker("worker-0", &url, Some(&slow(""))).expect("worker-0");
    let hooks = slow(&format!(",pause_at={point}@3,pause_ms=60000"));
    let victim = c.worker("worker-1", &url, Some(&hooks)).expect("worker-1");
    Cluster::wait_for_log(&victim, "test hook: pausing", LONG).expect("hook fires");
    let killed_at = unix_ms();
    victim.signal(Signal::SIGKILL).expect("kill");
    drop(victim);
    let restarted = c.worker("worker-1", &url, Some(&slow(""))).expect("restart");
    let next = first_commit_after(&c, killed_at);
    let mut procs = vec![survivor, restarted];
    finish(&mut procs);
    survivor = procs.remove(0);
    assert!(events_of_kind(&c, "rolled_back").is_empty(), "{:#?}", c.events());
    assert_exact_ledger(&c, steps);
    assert_replicas_agree(&c, &["worker-0", "worker-1"], steps);
    let log = procs[0].log_text();
    assert!(log.contains("healed from a live peer"), "the restarted worker heals:\n{log}");
    eprintln!("kill {point}: next step committed {} ms after the kill", next - killed_at);
    // The survivor was inside step 3 when its peer's restart aborted it: it stopped computing
    // rather than finishing a step nobody would apply (not after the quorum, where its
    // computation had not started; nor before the vote or the apply, where it had finished).
    if point == "mid-compute" || point == "after-quorum" {
        let text = survivor.log_text();
        assert!(text.contains("computation of an aborted step stopped"), "{text}");
    }
    next - killed_at
}

/// The first step decided after `since` (Unix ms), and when.
fn first_commit_after(c: &Cluster, since: u64) -> u64 {
    let until = std::time::Instant::now() + LONG;
    loop {
        if let Some(l) = c.metrics().iter().find(|l| l["unix_ms"].as_u64() > Some(since)) {
            return l["unix_ms"].as_u64().expect("time");
        }
        assert!(std::time::Instant::now() < until, "no step committed after the kill");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_worker_killed_just_after_the_quorum_costs_no_committed_step() {
    kill_at("after-quorum");
}

#[test]
fn a_worker_killed_mid_compute_costs_no_committed_step() {
    kill_at("mid-compute");
}

#[test]
fn a_worker_killed_in_the_all_reduce_costs_no_committed_step() {
    kill_at("before-reduce");
}

#[test]
fn a_worker_killed_before_its_vote_costs_no_committed_step() {
    kill_at("before-vote");
}

#[test]
fn a_worker_killed_before_applying_a_commit_costs_no_committed_step() {
    kill_at("before-apply");
}

/// Trains worker-0 and worker-1 with `hooks` until step `step`, then stops worker-0 (SIGSTOP)
/// and kills worker-1, which is restarted at once holding nothing: returns both.
fn stall_one_and_restart_the_other(c: &Cluster, url: &str, hooks: &str, step: u64) -> (Proc, Proc) {
    let w0 = c.worker("worker-0", url, Some(hooks)).expect("worker-0");
    let w1 = c.worker("worker-1", url, Some(hooks)).expect("worker-1");
    c.wait_for_step(step, LONG).expect("training runs");
    w0.signal(Signal::SIGSTOP).expect("stop worker-0");
    w1.signal(Signal::SIGKILL).expect("kill worker-1");
    drop(w1);
    (w0, c.worker("worker-1", url, Some(hooks)).expect("restart worker-1"))
}

/// The only holder of the committed step stalls (SIGSTOP for 3 s, less than the heartbeat
/// timeout) while the other worker is killed and restarted empty: the restarted worker is the
/// only ready one, but the stalled holder is still live, so the job waits for it instead of
/// resuming from the initial parameters.
#[test]
fn a_stalled_holder_is_waited_for_rather_than_rolled_past() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = 10;
    let c = cluster(dir.path(), &job(steps, 1, 100, ""));
    let (_coordinator, url) = c.coordinator("127.0.0.1:0").expect("coordinator");
    let (w0, w1) = stall_one_and_restart_the_other(&c, &url, "slow_compute_ms=300", 3);
    std::thread::sleep(Duration::from_secs(3));
    w0.signal(Signal::SIGCONT).expect("continue worker-0");
    let mut procs = vec![w0, w1];
    finish(&mut procs);
    assert!(events_of_kind(&c, "rolled_back").is_empty(), "{:#?}", c.events());
    assert_exact_ledger(&c, steps);
    assert_replicas_agree(&c, &["worker-0", "worker-1"], steps);
}

/// The command at the tiny preset with base-length steps: `launch` kills worker-1
/// after step 3 and restarts it. No rollback, no sample twice, one recovery counted
/// everywhere, and the chaos rows sum to the totals.
#[test]
fn launch_with_long_steps_and_a_kill_repeats_no_sample() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let mut command = albatross().command([
        "launch",
        "--workers",
        "2",
        "--steps",
        "7",
        "--global-batch",
        "8",
        "--chaos",
        "kill:worker-1@step=3",
    ]);
    command
        .arg("--out")
        .arg(&out)
        .env("ALBATROSS_CACHE_DIR", dir.path().join("cache"))
        .env("ALBATROSS_TEST_HOOKS", slow(""));
    let result = command.output().expect("launch runs");
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    eprintln!("{stdout}");
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(out.join(name)).expect(name);
        serde_json::from_str(&text).expect("json")
    };
    let (report, summary) = (read("chaos-report.json"), read("summary.json"));
    assert_eq!(
        (report["samples_duplicated"].as_u64(), report["samples_lost"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    let rows = report["faults"].as_array().expect("faults");
    let summed: u64 = rows.iter().filter_map(|f| f["samples_duplicated"].as_u64()).sum();
    assert_eq!(Some(summed), report["samples_duplicated"].as_u64());
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("events");
    assert!(!events.contains("\"rolled_back\""), "{events}");
    // One fault, one recovery, counted the same way in summary.json and the metrics log.
    assert_eq!(summary["recoveries"], 1, "{summary}");
    assert_eq!(events.matches("\"recovered\"").count(), 1, "{events}");
    let survivor = std::fs::read_to_string(out.join("logs/worker-0.log")).expect("log");
    assert!(!survivor.contains("ahead of the job"), "{survivor}");
}

/// Every holder of the committed step goes away (worker-0 stopped past its heartbeat timeout,
/// worker-1 killed and restarted empty): the job legitimately resumes from the initial
/// parameters. When worker-0 resumes, holding steps the job undid, it is told to drop them,
/// heals from worker-1 and trains on to the end instead of exiting.
#[test]
fn a_worker_whose_steps_were_undone_drops_them_and_rejoins() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = 12;
    let c = cluster(
        dir.path(),
        &job(steps, 1, 100, "heartbeat_interval = \"500ms\"\nheartbeat_timeout = \"2s\"\n"),
    );
    let (_coordinator, url) = c.coordinator("127.0.0.1:0").expect("coordinator");
    let (w0, w1) = stall_one_and_restart_the_other(&c, &url, "slow_compute_ms=800", 4);
    // worker-0 is evicted after its heartbeat timeout; the restarted worker-1 holds only the
    // initial parameters, so the job resumes from them.
    let until = std::time::Instant::now() + LONG;
    while events_of_kind(&c, "rolled_back").is_empty() {
        assert!(std::time::Instant::now() < until, "no rollback: {:#?}", c.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    let rollback = &events_of_kind(&c, "rolled_back")[0];
    assert_eq!(rollback["to_step"], 0, "{rollback}");
    let reason = rollback["reason"].as_str().expect("reason");
    assert!(reason.starts_with("no live worker holds step"), "{reason}");
    w0.signal(Signal::SIGCONT).expect("continue worker-0");
    let mut procs = vec![w0, w1];
    finish(&mut procs);
    let log = procs[0].log_text();
    assert!(log.contains("dropping a state the job rolled back past"), "{log}");
    assert!(log.contains("healed from a live peer"), "{log}");
    assert_eq!(events_of_kind(&c, "rewound").len(), 1, "{:#?}", c.events());
    assert_replicas_agree(&c, &["worker-0", "worker-1"], steps);
}
