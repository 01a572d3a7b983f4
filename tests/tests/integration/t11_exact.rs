//! Exact mode (issue 20): the same bits after every step whatever the number of workers and
//! whatever fails. Each test compares a run against a reference run of one worker: the final
//! state hash (parameters and LAMB moments) and, step by step, the losses, the gradient norm and
//! the state hash the replicas held before the step, all compared exactly.

use std::path::Path;
use std::time::Duration;

use albatross_tests::{Cluster, Proc};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::albatross;
use super::t05_cluster::{
    LONG, assert_exact_ledger, assert_replicas_agree, cluster, finish, job, serial,
};

/// `t05`'s tiny job (global batch 12 in micro-batches of 4: three micro-batches per step, not
/// a multiple of two workers) in exact mode.
fn exact_job(steps: u64, min_workers: u32) -> String {
    format!("{}\n[determinism]\nexact = true\n", job(steps, min_workers, 100, ""))
}

/// What must be equal between runs at every step: `(step, loss, mlm, sop, grad norm, state
/// hash before)`, the last line of each step (a replayed step appears twice).
type StepBits = Vec<(u64, Value, Value, Value, Value, Value)>;

fn step_bits(c: &Cluster) -> StepBits {
    let mut by_step = std::collections::BTreeMap::new();
    for l in c.metrics() {
        let step = l["step"].as_u64().expect("step");
        let bits = (
            step,
            l["loss"].clone(),
            l["mlm_loss"].clone(),
            l["sop_loss"].clone(),
            l["grad_norm"].clone(),
            l["state_before"].clone(),
        );
        by_step.insert(step, bits);
    }
    by_step.into_values().collect()
}

/// Runs `workers` workers to the end of `job_text`, returning the per-step bits and the final
/// state hash (after checking the ledger and that the replicas agree).
fn clean_run(dir: &Path, job_text: &str, steps: u64, workers: usize) -> (StepBits, String) {
    let c = cluster(dir, job_text);
    let (mut coordinator, url) = c.coordinator("127.0.0.1:0").expect("coordinator");
    let mut procs: Vec<Proc> = (0..workers)
        .map(|i| c.worker(&format!("worker-{i}"), &url, None).expect("worker"))
        .collect();
    finish(&mut procs);
    coordinator.signal(Signal::SIGTERM).expect("stop");
    coordinator.wait(LONG).expect("coordinator exits");
    assert_exact_ledger(&c, steps);
    let names: Vec<String> = (0..workers).map(|i| format!("worker-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let hash = assert_replicas_agree(&c, &names, steps);
    (step_bits(&c), hash)
}

fn assert_same_bits(what: &str, (bits, hash): &(StepBits, String), reference: &(StepBits, String)) {
    assert_eq!(bits.len(), reference.0.len(), "{what}: steps");
    for (ours, theirs) in bits.iter().zip(&reference.0) {
        assert_eq!(ours, theirs, "{what}: step {} differs from the reference", ours.0);
    }
    assert_eq!(hash, &reference.1, "{what}: final state hash");
}

#[test]
fn one_two_and_three_workers_end_with_the_same_bits_after_every_step() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = 40;
    let one = clean_run(&dir.path().join("w1"), &exact_job(steps, 1), steps, 1);
    // Every step has a loss and a norm, and the states before steps 2.. are all different.
    assert!(one.0.iter().all(|b| b.1.is_f64() && b.4.is_f64() && b.5.is_string()), "{:?}", one.0);
    for workers in [2u32, 3] {
        let run = clean_run(
            &dir.path().join(format!("w{workers}")),
            &exact_job(steps, workers),
            steps,
            workers as usize,
        );
        assert_same_bits(&format!("{workers} workers"), &run, &one);
    }
}

/// At real step lengths (every worker adds 2.5 s of compute per step, longer than the join
/// grace): a worker killed mid-compute and restarted heals from its peer, a third worker joins
/// mid-run, and the coordinator is killed and restarted. The run ends with the bits of one
/// worker training alone.
#[test]
fn kills_heals_a_join_and_a_coordinator_restart_change_no_bit() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = 8;
    let text = exact_job(steps, 1);
    let reference = clean_run(&dir.path().join("reference"), &text, steps, 1);

    let c = cluster(&dir.path().join("faults"), &text);
    let (coordinator, url) = c.coordinator("127.0.0.1:0").expect("coordinator");
    let slow = "slow_compute_ms=2500";
    let survivor = c.worker("worker-0", &url, Some(slow)).expect("worker-0");
    let victim = c
        .worker("worker-1", &url, Some(&format!("{slow},pause_at=mid-compute@2,pause_ms=60000")))
        .expect("worker-1");
    Cluster::wait_for_log(&victim, "test hook: pausing", LONG).expect("hook fires");
    victim.signal(Signal::SIGKILL).expect("kill");
    drop(victim);
    let restarted = c.worker("worker-1", &url, Some(slow)).expect("restart");
    c.wait_for_step(3, LONG).expect("training goes on");
    let joiner = c.worker("worker-2", &url, Some(slow)).expect("worker-2");
    c.wait_for_step(5, LONG).expect("training goes on");
    coordinator.signal(Signal::SIGKILL).expect("kill the coordinator");
    drop(coordinator);
    let listen = url.trim_start_matches("http://").to_owned();
    let (_restarted_coordinator, _) = c.coordinator(&listen).expect("restart");
    let mut procs = vec![survivor, restarted, joiner];
    finish(&mut procs);
    assert!(
        procs[1].log_text().contains("healed from a live peer"),
        "the restarted worker heals:\n{}",
        procs[1].log_text()
    );
    assert!(procs[2].log_text().contains("healed from a live peer"), "the newcomer heals");
    assert_exact_ledger(&c, steps);
    let hash = assert_replicas_agree(&c, &["worker-0", "worker-1", "worker-2"], steps);
    assert_same_bits("faults", &(step_bits(&c), hash), &reference);
}

#[test]
fn a_worker_running_another_kernel_set_is_refused_naming_both() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pinned = "cpu/flex/elsewhere/gemm-none/pulp-none";
    let text = format!("{}kernel_set = {pinned:?}\n", exact_job(4, 1));
    let c = cluster(dir.path(), &text);
    let (_coordinator, url) = c.coordinator("127.0.0.1:0").expect("coordinator");
    let mut worker = c.worker("worker-0", &url, None).expect("worker");
    let status = worker.wait(Duration::from_secs(60)).expect("the worker exits");
    assert!(!status.success(), "refused: {status}");
    let log = worker.log_text();
    assert!(log.contains(&format!("this exact-mode job runs {pinned}")), "{log}");
    assert!(log.contains("runs kernel set cpu/flex/"), "names its own too:\n{log}");
}

/// The user's recipe: a clean run, then a run with faults checked against it in one command.
#[test]
fn launch_with_chaos_matches_a_clean_reference_run() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let launch = |out: &str, extra: &[&str]| {
        let mut command =
            albatross().command(["launch", "--deterministic", "--fresh"].iter().chain(extra));
        command.arg("--out").arg(dir.path().join(out)).env("ALBATROSS_CACHE_DIR", &cache);
        let result = command.output().expect("launch runs");
        let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(result.status.success(), "{out}: {stdout}\n{stderr}");
        stdout
    };
    launch("clean", &["--workers", "1", "--steps", "60"]);
    let reference = dir.path().join("clean");
    let reference = reference.to_str().expect("utf-8 path");
    // A kill (the launcher restarts the worker, which heals from a peer), a pause, a partition
    // longer than the heartbeat timeout (evicted, the others go on, it rejoins), a coordinator
    // restart, a graceful leave and slow links.
    let schedule = "kill:worker-1@step=8,pause:worker-0@step=16+3s,partition:worker-2@step=22+7s,\
                    kill:coordinator@step=34,term:worker-1@step=44,\
                    delay:worker-0@step=50+50ms~10ms/2s";
    let stdout = launch(
        "chaos",
        &["--workers", "3", "--steps", "60", "--chaos", schedule, "--reference", reference],
    );
    let read = |path: &str| -> Value {
        let text = std::fs::read_to_string(dir.path().join(path)).expect(path);
        serde_json::from_str(&text).expect("json")
    };
    let summary = read("chaos/summary.json");
    assert_eq!(summary["deterministic"], true, "{summary}");
    assert_eq!(summary["expected"]["matched"], true, "{summary}\n{stdout}");
    assert_eq!(summary["expected"]["first_divergent_step"], Value::Null, "{summary}");
    assert_eq!(summary["expected"]["compared_steps"], 60, "{summary}");
    let report = read("chaos/chaos-report.json");
    assert_eq!(report["expected"]["matched"], true, "{report}");
    assert_eq!(report["total_faults"], 6, "{report}");
    assert_eq!(
        (report["samples_lost"].as_u64(), report["samples_duplicated"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
}
