//! The training cluster as real processes: equivalence of 1, 2 and 3 workers, and the faults
//! it must survive (SIGKILL during compute and during the all-reduce, restart and heal from a
//! peer, SIGSTOP/SIGCONT, coordinator crash and restart, a corrupt newest checkpoint, a NaN
//! gradient). Cluster tests run one at a time: they measure recovery times on 2 cores.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use albatross_tests::{Cluster, Proc, find_pid, unix_ms};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::albatross;

const GLOBAL_BATCH: u64 = 12;
pub(super) const LONG: Duration = Duration::from_secs(120);

/// One cluster at a time (shared with `t07_netns`).
pub(super) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/data/tests/fixtures").join(name)
}

/// Prepared data shared by every cluster test: the first 1000 lines of Persuasion as 64-token
/// samples (about 220 samples: an epoch is about 18 steps of 12).
fn data() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let text = std::fs::read_to_string(fixture("persuasion.txt")).expect("fixture");
        let book = dir.join("book.txt");
        std::fs::write(&book, text.lines().take(1000).collect::<Vec<_>>().join("\n"))
            .expect("write");
        let out = dir.join("data");
        let tokenizer = fixture("albert-8k-tokenizer.json");
        let args = [
            "prepare-data".as_ref(),
            "--input".as_ref(),
            book.as_os_str(),
            "--format".as_ref(),
            "book".as_ref(),
            "--tokenizer".as_ref(),
            tokenizer.as_os_str(),
            "--max-seq-len".as_ref(),
            "64".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ];
        let result = albatross().run(args, "").expect("prepare-data runs");
        assert!(result.success, "{result:?}");
        out
    })
}

fn epoch_size() -> u64 {
    let text = std::fs::read_to_string(data().join("manifest.json")).expect("manifest");
    let manifest: Value = serde_json::from_str(&text).expect("json");
    manifest["stats"]["examples"].as_u64().expect("examples")
}

/// The tiny model on the shared data; `extra` is appended to `[fault_tolerance]`.
pub(super) fn job(steps: u64, min_workers: u32, checkpoint_every: u64, extra: &str) -> String {
    format!(
        "name = \"t05\"\nseed = 7\n\
         [model]\npreset = \"tiny\"\nvocab_size = 8000\nmax_position_embeddings = 64\n\
         [data]\ndir = {:?}\nmax_seq_length = 64\n\
         [optimizer]\nlearning_rate = 0.01\nwarmup_steps = 2\ntotal_steps = {steps}\n\
         [batch]\nglobal_batch_size = {GLOBAL_BATCH}\nmicro_batch_size = 4\n\
         [checkpoint]\ndir = \"unused\"\nevery_steps = {checkpoint_every}\nkeep = 3\n\
         [fault_tolerance]\nmin_workers = {min_workers}\nmax_workers = 4\n{extra}",
        data().display().to_string()
    )
}

pub(super) fn cluster(dir: &Path, job: &str) -> Cluster {
    Cluster::new(albatross(), dir, job).expect("cluster files")
}

fn start(c: &Cluster, workers: usize) -> (Proc, String, Vec<Proc>) {
    let (coordinator, url) = c.coordinator("127.0.0.1:0").expect("coordinator");
    let procs = (0..workers)
        .map(|i| c.worker(&format!("worker-{i}"), &url, None).expect("worker"))
        .collect();
    (coordinator, url, procs)
}

pub(super) fn finish(procs: &mut [Proc]) {
    for p in procs.iter_mut() {
        let status = p.wait(LONG).expect("worker exits");
        assert!(status.success(), "{} exited with {status}:\n{}", p.name, p.log_text());
    }
}

/// Every step 1..=last decided exactly once with a full global batch and the cursor the step
/// number implies: every sample of the stream used once, none lost.
pub(super) fn assert_exact_ledger(c: &Cluster, last: u64) {
    let lines = c.metrics();
    let steps: Vec<u64> = lines.iter().filter_map(|l| l["step"].as_u64()).collect();
    assert_eq!(steps, (1..=last).collect::<Vec<_>>(), "each step decided once, in order");
    let epoch = epoch_size();
    for l in &lines {
        let step = l["step"].as_u64().expect("step");
        assert_eq!(l["samples"].as_u64(), Some(GLOBAL_BATCH), "step {step}: {l}");
        let consumed = step * GLOBAL_BATCH;
        assert_eq!(l["cursor"]["epoch"].as_u64(), Some(consumed / epoch), "step {step}");
        assert_eq!(l["cursor"]["next_sample"].as_u64(), Some(consumed % epoch), "step {step}");
    }
}

/// Exit reports of `names` all at `step` with one state hash.
pub(super) fn assert_replicas_agree(c: &Cluster, names: &[&str], step: u64) -> String {
    let reports: Vec<Value> = names.iter().map(|n| c.report(n).expect("report")).collect();
    for r in &reports {
        assert_eq!(r["applied_step"].as_u64(), Some(step), "{r}");
    }
    let hash = reports[0]["state_hash"].as_str().expect("hash").to_owned();
    for r in &reports {
        assert_eq!(r["state_hash"].as_str(), Some(hash.as_str()), "replicas differ: {reports:?}");
    }
    hash
}

fn losses(c: &Cluster) -> Vec<f64> {
    c.metrics().iter().map(|l| l["loss"].as_f64().expect("loss")).collect()
}

/// The first step committed after `since` (Unix ms), and when.
fn first_commit_after(c: &Cluster, since: u64, limit: Duration) -> (u64, u64) {
    let until = Instant::now() + limit;
    loop {
        if let Some(l) = c.metrics().iter().find(|l| l["unix_ms"].as_u64() > Some(since)) {
            return (l["step"].as_u64().expect("step"), l["unix_ms"].as_u64().expect("time"));
        }
        assert!(Instant::now() < until, "no step committed within {limit:?} of the fault");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_members(c: &Cluster, members: u64) {
    let until = Instant::now() + LONG;
    while c.metrics().last().and_then(|l| l["members"].as_u64()) != Some(members) {
        assert!(Instant::now() < until, "the quorum never reached {members} members");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn launch_trains_the_demo_and_writes_summary_metrics_plot_and_checkpoints() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let mut command = albatross().command(["launch", "--steps", "40", "--out"]);
    command.arg(&out).env("ALBATROSS_CACHE_DIR", dir.path().join("cache"));
    let result = command.output().expect("launch runs");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("finished at step 40"), "{stdout}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["steps_committed"], 40);
    assert_eq!(summary["workers"], 2);
    assert_eq!(summary["samples_committed"], 40 * 32);
    assert_eq!(
        (summary["samples_lost"].as_u64(), summary["samples_duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(summary["replica_hashes_agree"], true);
    assert!(summary["final_param_hash"].as_str().is_some_and(|h| h.len() == 64));
    let (first, last) = (summary["initial_loss"].as_f64(), summary["final_loss"].as_f64());
    assert!(last < first, "loss falls: {first:?} -> {last:?}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 40);
    let png = std::fs::read(out.join("loss.png")).expect("plot");
    assert!(png.starts_with(b"\x89PNG"), "loss.png is a PNG");
    // The last step is checkpointed, as a Hugging Face directory export-hf also writes.
    let checkpoint = out.join("checkpoints").join("step-00000040");
    let hf = dir.path().join("hf");
    let export = [
        "model".as_ref(),
        "export-hf".as_ref(),
        "--checkpoint".as_ref(),
        checkpoint.as_os_str(),
        "--out".as_ref(),
        hf.as_os_str(),
    ];
    let exported = albatross().run(export, "").expect("export runs");
    assert!(exported.success, "{exported:?}");
    assert!(exported.stdout.contains("step 40"), "{}", exported.stdout);
    assert!(hf.join("config.json").is_file() && hf.join("model.safetensors").is_file());
    // A damaged checkpoint is refused by name.
    std::fs::write(checkpoint.join("config.json"), b"{}").expect("damage");
    let refused = albatross().run(export, "").expect("export runs");
    assert!(!refused.success && refused.stderr.contains("config.json"), "{refused:?}");
}

#[test]
fn launch_restarts_a_killed_worker_which_heals_from_its_peer() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let mut command = albatross().command(["launch", "--steps", "100", "--global-batch", "16"]);
    command
        .arg("--out")
        .arg(&out)
        .env("ALBATROSS_CACHE_DIR", dir.path().join("cache"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let launcher = command.spawn().expect("launch starts");
    let mut launcher =
        Proc { name: "launch".into(), child: launcher, log: out.join("logs/launch") };
    let metrics = Cluster {
        program: albatross(),
        root: out.clone(),
        job: out.join("job.toml"),
        extra_args: Vec::new(),
    };
    metrics.wait_for_step(15, LONG).expect("training runs");
    let out_text = out.display().to_string();
    let pid = find_pid(&["worker", "worker-1", &out_text]).expect("worker-1 is running");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
    let status = launcher.wait(LONG).expect("launch finishes");
    let mut stdout = String::new();
    if let Some(mut pipe) = launcher.child.stdout.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stdout).expect("stdout");
    }
    assert!(status.success(), "{stdout}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["final_step"], 100, "{summary}");
    assert_eq!(summary["replica_hashes_agree"], true, "{summary}");
    assert_eq!(
        (summary["samples_lost"].as_u64(), summary["samples_duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    let log = std::fs::read_to_string(out.join("logs/worker-1.log")).expect("worker log");
    assert!(log.contains("healed from a live peer"), "{log}");
}

/// `albatross launch ARGS` in a fresh directory; its stdout and `chaos-report.json`.
fn launch_with_chaos(dir: &Path, args: &[&str]) -> (String, Value) {
    let out = dir.join("run");
    let mut command = albatross().command(["launch"].iter().chain(args));
    command.arg("--out").arg(&out).env("ALBATROSS_CACHE_DIR", dir.join("cache"));
    let result = command.output().expect("launch runs");
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    eprintln!("{stdout}");
    let report = std::fs::read_to_string(out.join("chaos-report.json")).expect("chaos report");
    (stdout, serde_json::from_str(&report).expect("json"))
}

/// The run reached `final_step` with no sample lost or used twice and agreeing replicas.
pub(super) fn assert_chaos_ledger(report: &Value, final_step: u64) {
    assert_eq!(report["final_step"], final_step, "{report}");
    assert_eq!(
        (report["samples_lost"].as_u64(), report["samples_duplicated"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    assert_eq!(report["replica_hashes_agree"], true, "{report}");
}

#[test]
fn launch_survives_a_chaos_schedule_and_reports_each_recovery() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let schedule = "kill:worker-1@step=8,pause:worker-0@step=20+2s,\
                    term:worker-1@step=32,kill:coordinator@step=44";
    let (stdout, report) = launch_with_chaos(
        dir.path(),
        &["--steps", "60", "--global-batch", "16", "--chaos", schedule],
    );
    assert!(stdout.contains("recovery (fault -> next commit)"), "{stdout}");
    assert_eq!(report["total_faults"], 4, "{report}");
    let kinds: Vec<&str> = report["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["kill", "pause", "term", "kill-coordinator"]);
    for fault in report["faults"].as_array().expect("faults") {
        assert!(fault["next_commit_step"].as_u64().is_some(), "training went on after {fault}");
        assert_eq!(fault["replica_hashes_agree"], true, "{fault}");
        assert_eq!((&fault["samples_lost"], &fault["samples_duplicated"]), (&0.into(), &0.into()));
    }
    assert_chaos_ledger(&report, 60);
}

/// Network faults through the launcher's fault proxies: a worker partitioned for longer than
/// the heartbeat timeout is evicted and the others go on without it, then it rejoins; latency,
/// loss and a short coordinator partition only slow steps down; the newest checkpoint damaged
/// after the run is named and the previous one is what a restart would load.
#[test]
fn launch_survives_network_faults_and_a_corrupt_checkpoint() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let schedule = "partition:worker-1@step=10+7s,delay:worker-0@step=40+100ms~20ms/3s,\
                    loss:worker-2@step=55+20%/3s,partition:coordinator@step=70+2s,\
                    corrupt-checkpoint:latest@end";
    let args = ["--workers", "3", "--steps", "110", "--global-batch", "12", "--chaos", schedule];
    let (_, report) = launch_with_chaos(dir.path(), &args);
    let faults = report["faults"].as_array().expect("faults");
    let kinds: Vec<&str> = faults.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds, ["partition", "delay", "loss", "partition"]);
    assert_eq!(report["total_faults"], 5, "{report}");
    for fault in faults {
        assert!(fault["next_commit_step"].as_u64().is_some(), "training went on after {fault}");
        assert_eq!(fault["replica_hashes_agree"], true, "{fault}");
        assert_eq!((&fault["samples_lost"], &fault["samples_duplicated"]), (&0.into(), &0.into()));
    }
    // The long partition outlasts the heartbeat timeout: the coordinator reacted to it, and
    // steps committed with the two others while it lasted.
    assert!(faults[0]["detected_by"].is_string(), "{}", faults[0]);
    let start = faults[0]["unix_ms"].as_u64().expect("unix_ms");
    let metrics: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("metrics line"))
        .collect();
    let during = metrics.iter().filter(|m| {
        m["unix_ms"].as_u64().is_some_and(|t| t > start && t < start + 7000) && m["members"] == 2
    });
    assert!(during.count() > 0, "the majority committed while worker-1 was cut off");
    assert_eq!(metrics.last().expect("a step")["members"], 3, "worker-1 rejoined");
    let damaged = &report["checkpoints"][0];
    assert!(
        damaged["corrupted"].as_str().is_some_and(|c| c.ends_with("step-00000110")),
        "{damaged}"
    );
    assert!(
        damaged["detected"].as_str().is_some_and(|d| d.contains("model.safetensors")),
        "{damaged}"
    );
    assert!(
        damaged["resumes_from"].as_str().is_some_and(|c| c.ends_with("step-00000100")),
        "{damaged}"
    );
    assert_chaos_ledger(&report, 110);
}

/// The CI-sized soak: a random schedule of every fault kind (replayable from its seed), bounded
/// in time; no sample lost or used twice, replicas agree. The long soak is in the README.
#[test]
fn launch_soak_with_random_faults_loses_and_repeats_no_sample() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let kinds = "random:rate=20,seed=11,kinds=kill+pause+term+coordinator+partition+delay";
    let args = ["--workers", "3", "--steps", "100", "--global-batch", "12", "--chaos", kinds];
    let (_, report) = launch_with_chaos(dir.path(), &[&args[..], &["--time-limit", "5m"]].concat());
    assert!(report["total_faults"].as_u64().is_some_and(|n| n >= 5), "{report}");
    assert_chaos_ledger(&report, 100);
}

#[test]
fn two_and_three_workers_match_one_worker_on_the_same_global_batch() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runs = Vec::new();
    for workers in [1usize, 2, 3] {
        let c = cluster(&dir.path().join(format!("w{workers}")), &job(20, workers as u32, 20, ""));
        let (mut coordinator, _url, mut procs) = start(&c, workers);
        finish(&mut procs);
        coordinator.signal(Signal::SIGTERM).expect("stop");
        coordinator.wait(LONG).expect("coordinator exits");
        assert!(c.metrics().iter().all(|l| l["members"].as_u64() == Some(workers as u64)));
        let names: Vec<String> = (0..workers).map(|i| format!("worker-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_replicas_agree(&c, &names, 20);
        let weights = c.checkpoints().join("step-00000020").join("model.safetensors");
        let tensors = albatross_model::read_safetensors(&weights).expect("checkpoint weights");
        runs.push((losses(&c), tensors));
    }
    let (one_loss, one_params) = &runs[0];
    for (workers, (loss, params)) in [2, 3].iter().zip(&runs[1..]) {
        for (step, (a, b)) in one_loss.iter().zip(loss).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs(),
                "{workers} workers, step {}: {a} vs {b}",
                step + 1
            );
        }
        let mut worst = 0f32;
        for (name, (_, values)) in one_params {
            let (_, other) = &params[name];
            for (x, y) in values.iter().zip(other) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(worst <= 1e-5, "{workers} workers: parameters differ by {worst}");
        eprintln!("{workers} workers vs 1: max parameter difference {worst:e}");
    }
}

#[test]
fn sigkill_during_compute_recovers_fast_and_the_restarted_worker_heals_from_a_peer() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(30, 2, 100, ""));
    let (_coordinator, url, mut procs) = start(&c, 3);
    wait_members(&c, 3);
    c.wait_for_step(4, LONG).expect("training runs");
    let killed_at = unix_ms();
    procs[2].signal(Signal::SIGKILL).expect("kill");
    let (step, at) = first_commit_after(&c, killed_at, Duration::from_secs(30));
    eprintln!("SIGKILL during compute: step {step} committed {} ms after the kill", at - killed_at);
    assert!(at - killed_at < 3000, "recovery took {} ms", at - killed_at);
    // The restarted worker (same name) heals from a live peer, not from disk.
    let _ = procs[2].wait(Duration::from_secs(5));
    procs[2] = c.worker("worker-2", &url, None).expect("restart");
    Cluster::wait_for_log(&procs[2], "healed from a live peer", LONG).expect("heals");
    finish(&mut procs);
    assert!(!procs[2].log_text().contains("resumed from checkpoint"));
    assert_replicas_agree(&c, &["worker-0", "worker-1", "worker-2"], 30);
    assert_exact_ledger(&c, 30);
    // The survivors trained on alone until the restarted worker healed and joined again.
    assert!(c.metrics().iter().any(|l| l["members"].as_u64() == Some(2)));
}

#[test]
fn sigkill_during_the_all_reduce_aborts_the_step_cleanly() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(12, 2, 100, ""));
    let (_coordinator, url, mut procs) = start(&c, 2);
    let victim = c
        .worker("worker-2", &url, Some("pause_before_reduce_at_step=6,pause_ms=20000"))
        .expect("victim");
    Cluster::wait_for_log(&victim, "pausing before the all-reduce", LONG).expect("hook fires");
    // The others are inside step 6's all-reduce, waiting for the victim's pieces.
    let killed_at = unix_ms();
    victim.signal(Signal::SIGKILL).expect("kill");
    let (step, at) = first_commit_after(&c, killed_at, Duration::from_secs(30));
    eprintln!(
        "SIGKILL during the all-reduce: step {step} committed {} ms after the kill",
        at - killed_at
    );
    assert!(at - killed_at < 3000, "recovery took {} ms", at - killed_at);
    assert_eq!(step, 6, "the interrupted step is retried, not skipped");
    drop(victim);
    finish(&mut procs);
    assert_replicas_agree(&c, &["worker-0", "worker-1"], 12);
    assert_exact_ledger(&c, 12);
}

#[test]
fn a_stopped_worker_is_evicted_and_rejoins_by_healing_after_sigcont() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(
        dir.path(),
        &job(40, 1, 100, "heartbeat_interval = \"500ms\"\nheartbeat_timeout = \"2s\"\n"),
    );
    let (_coordinator, _url, mut procs) = start(&c, 2);
    wait_members(&c, 2);
    procs[1].signal(Signal::SIGSTOP).expect("stop");
    let stopped_at = c.last_step();
    // The survivor trains on alone once the stopped worker is evicted.
    c.wait_for_step(stopped_at + 3, LONG).expect("training goes on without it");
    assert_eq!(c.metrics().last().and_then(|l| l["members"].as_u64()), Some(1));
    procs[1].signal(Signal::SIGCONT).expect("continue");
    Cluster::wait_for_log(&procs[1], "healed from a live peer", LONG).expect("rejoins by healing");
    finish(&mut procs);
    assert_replicas_agree(&c, &["worker-0", "worker-1"], 40);
    assert_exact_ledger(&c, 40);
}

#[test]
fn a_coordinator_crash_loses_no_committed_step() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(24, 2, 100, ""));
    let (mut coordinator, url, mut procs) = start(&c, 2);
    c.wait_for_step(6, LONG).expect("training runs");
    coordinator.signal(Signal::SIGKILL).expect("kill");
    let _ = coordinator.wait(Duration::from_secs(5));
    let crashed_at = c.last_step();
    // Same address, same state directory: the workers find it again.
    let listen = url.trim_start_matches("http://").to_owned();
    let (_restarted, _) = c.coordinator(&listen).expect("restart");
    finish(&mut procs);
    assert!(c.last_step() == 24 && crashed_at >= 6);
    assert_exact_ledger(&c, 24);
    assert_replicas_agree(&c, &["worker-0", "worker-1"], 24);
}

#[test]
fn a_corrupt_newest_checkpoint_is_named_and_the_previous_one_resumes() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(16, 2, 4, ""));
    let (mut coordinator, _url, mut procs) = start(&c, 2);
    let newest = c.checkpoints().join("step-00000008");
    c.wait_for_step(10, LONG).expect("training runs");
    let until = Instant::now() + LONG;
    while !newest.join("manifest.json").is_file() {
        assert!(Instant::now() < until, "checkpoint 8 never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in procs.iter_mut() {
        p.signal(Signal::SIGTERM).expect("stop");
        p.wait(LONG).expect("exits");
    }
    coordinator.signal(Signal::SIGTERM).expect("stop");
    coordinator.wait(LONG).expect("exits");
    // Flip a byte in the middle of the newest checkpoint's weights.
    let weights = newest.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).expect("weights");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&weights, bytes).expect("corrupt");

    let (_coordinator, _url, mut procs) = start(&c, 2);
    finish(&mut procs);
    let log = procs[0].log_text() + &procs[1].log_text();
    assert!(log.contains("step-00000008") && log.contains("corrupt"), "{log}");
    assert!(log.contains("resumed from checkpoint"), "{log}");
    let resumed: Vec<&str> =
        log.lines().filter(|l| l.contains("resumed from checkpoint")).collect();
    assert!(resumed.iter().all(|l| l.contains("step=4")), "{resumed:?}");
    assert_replicas_agree(&c, &["worker-0", "worker-1"], 16);
    // Steps 5..=10 ran twice: once before the stop, once after resuming from step 4.
    let steps: Vec<u64> = c.metrics().iter().filter_map(|l| l["step"].as_u64()).collect();
    assert_eq!(steps.last(), Some(&16));
    assert!(steps.iter().filter(|&&s| s == 5).count() == 2, "{steps:?}");
}

#[test]
fn a_nan_gradient_skips_the_step_on_every_worker() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(8, 2, 100, ""));
    let (_coordinator, url, _) = start(&c, 0);
    let mut procs = vec![
        c.worker("worker-0", &url, None).expect("worker"),
        c.worker("worker-1", &url, Some("nan_at_step=3")).expect("worker"),
    ];
    finish(&mut procs);
    let lines = c.metrics();
    let decisions: Vec<&str> = lines.iter().filter_map(|l| l["decision"].as_str()).collect();
    assert_eq!(decisions[2], "skip", "{decisions:?}");
    assert_eq!(decisions.iter().filter(|d| **d == "skip").count(), 1, "{decisions:?}");
    assert_eq!(lines.last().and_then(|l| l["skipped_steps"].as_u64()), Some(1));
    assert_replicas_agree(&c, &["worker-0", "worker-1"], 8);
    assert_exact_ledger(&c, 8);
}

#[test]
fn sigterm_leaves_gracefully_and_the_next_step_commits_without_a_timeout() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(30, 1, 100, ""));
    let (_coordinator, _url, mut procs) = start(&c, 3);
    wait_members(&c, 3);
    c.wait_for_step(4, LONG).expect("training runs");
    let stopped_at = unix_ms();
    procs[2].signal(Signal::SIGTERM).expect("terminate");
    let (step, at) = first_commit_after(&c, stopped_at, Duration::from_secs(30));
    eprintln!("SIGTERM: step {step} committed {} ms after the signal", at - stopped_at);
    assert!(at - stopped_at < 1500, "the next commit took {} ms", at - stopped_at);
    let status = procs[2].wait(Duration::from_secs(10)).expect("the leaver exits");
    assert!(status.success(), "a graceful leave exits 0: {status}");
    assert!(procs[2].log_text().contains("left the job"), "{}", procs[2].log_text());
    procs.truncate(2);
    finish(&mut procs);
    assert_replicas_agree(&c, &["worker-0", "worker-1"], 30);
    assert_exact_ledger(&c, 30);
}

#[test]
fn workers_scale_up_and_down_mid_run_without_losing_a_step() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(36, 1, 100, ""));
    let (_coordinator, url, mut procs) = start(&c, 2);
    wait_members(&c, 2);
    c.wait_for_step(5, LONG).expect("training runs");
    // Scale up: two new workers heal from live peers and join.
    procs.push(c.worker("worker-2", &url, None).expect("worker"));
    procs.push(c.worker("worker-3", &url, None).expect("worker"));
    wait_members(&c, 4);
    for p in &procs[2..] {
        assert!(p.log_text().contains("healed from a live peer"), "{}", p.log_text());
    }
    // Scale down: two leave gracefully, one of the originals and one newcomer.
    let at = c.last_step();
    for i in [0, 3] {
        procs[i].signal(Signal::SIGTERM).expect("terminate");
    }
    for i in [0, 3] {
        let status = procs[i].wait(Duration::from_secs(10)).expect("exits");
        assert!(status.success(), "{} exits 0: {status}", procs[i].name);
    }
    c.wait_for_step(at + 3, LONG).expect("training goes on");
    assert_eq!(c.metrics().last().and_then(|l| l["members"].as_u64()), Some(2));
    let mut remaining: Vec<Proc> =
        procs.drain(..).enumerate().filter(|(i, _)| [1, 2].contains(i)).map(|(_, p)| p).collect();
    finish(&mut remaining);
    assert_replicas_agree(&c, &["worker-1", "worker-2"], 36);
    assert_exact_ledger(&c, 36);
}

/// A private CA and one certificate for `localhost` and 127.0.0.1 (every process of the test
/// presents it): `(ca, cert, key)` paths.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

/// A cleartext `grpc.health.v1` check, as a Kubernetes gRPC probe makes it.
fn plain_health_check(
    addr: &str,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect in cleartext");
        let request = HealthCheckRequest { service: service.to_owned() };
        let response = HealthClient::new(channel).check(request).await.expect("check");
        response.into_inner().status()
    })
}

/// `--tls-ca`, `--tls-cert` and `--tls-key` with their files.
fn tls_flags(ca: &Path, cert: &Path, key: &Path) -> Vec<std::ffi::OsString> {
    [("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)]
        .into_iter()
        .flat_map(|(flag, path)| [flag.into(), path.into()])
        .collect()
}

/// `status` without TLS against a coordinator that serves TLS gets no answer.
fn assert_plain_text_refused(url: &str) {
    let plain =
        albatross().run(["status", "--coordinator", url, "--timeout-secs", "3"], "").expect("runs");
    assert!(!plain.success, "a plain-text client must be refused: {plain:?}");
}

#[test]
fn mutual_tls_protects_the_coordinator_and_the_peers() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(dir.path());
    let mut c = cluster(&dir.path().join("run"), &job(12, 1, 100, ""));
    let tls_args = tls_flags(&ca, &cert, &key);
    c.extra_args.clone_from(&tls_args);
    // Probes cannot present a certificate: health alone is served in cleartext on its own port.
    c.extra_args.extend(["--health-listen".into(), "127.0.0.1:0".into()]);
    let (_coordinator, url, mut procs) = start(&c, 1);
    let ready: Value = serde_json::from_str(
        &std::fs::read_to_string(c.root.join("coordinator.ready.json")).expect("ready file"),
    )
    .expect("json");
    let health_addr = ready["health"].as_str().expect("the ready file names the health port");
    assert_eq!(
        plain_health_check(health_addr, "albatross.v1.CoordinatorService"),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    c.wait_for_step(3, LONG).expect("training runs");
    // The second worker heals from the first and all-reduces with it, all over mutual TLS.
    procs.push(c.worker("worker-1", &url, None).expect("worker"));
    Cluster::wait_for_log(&procs[1], "healed from a live peer", LONG).expect("heals over TLS");
    finish(&mut procs);
    assert_replicas_agree(&c, &["worker-0", "worker-1"], 12);
    assert_exact_ledger(&c, 12);
    // Without a certificate the coordinator does not answer.
    let https = url.replace("http://", "https://");
    assert_plain_text_refused(&url);
    let mut args: Vec<std::ffi::OsString> =
        vec!["status".into(), "--coordinator".into(), https.into(), "--json".into()];
    args.extend(tls_args);
    let with_cert = albatross().run(args, "").expect("runs");
    assert!(with_cert.success, "{with_cert:?}");
    assert!(with_cert.stdout.contains("\"committed_step\":12"), "{}", with_cert.stdout);
}

#[test]
fn server_only_tls_encrypts_without_client_certificates() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(dir.path());
    let mut c = cluster(&dir.path().join("run"), &job(6, 1, 100, ""));
    let mut args = tls_flags(&ca, &cert, &key);
    args.extend(["--tls-client-auth".into(), "none".into()]);
    c.extra_args = args;
    let (_coordinator, url, mut procs) = start(&c, 1);
    c.wait_for_step(6, LONG).expect("training runs over server-only TLS");
    finish(&mut procs);
    assert_exact_ledger(&c, 6);
    let https = url.replace("http://", "https://");
    let status = |extra: &[&std::ffi::OsStr]| {
        let mut a: Vec<std::ffi::OsString> = vec!["status".into(), "--coordinator".into()];
        a.push(https.clone().into());
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        albatross().run(a, "").expect("runs")
    };
    // The CA alone is enough for a client now...
    let with_ca = status(&["--json".as_ref(), "--tls-ca".as_ref(), ca.as_os_str()]);
    assert!(with_ca.success, "{with_ca:?}");
    assert!(with_ca.stdout.contains("\"committed_step\":6"), "{}", with_ca.stdout);
    // ...and without TLS it is refused.
    assert_plain_text_refused(&url);
    // A server always needs its own certificate; the flags say so before anything starts.
    let worker = albatross()
        .run(
            [
                "worker".as_ref(),
                "--id".as_ref(),
                "worker-9".as_ref(),
                "--coordinator".as_ref(),
                std::ffi::OsStr::new(&https),
                "--tls-ca".as_ref(),
                ca.as_os_str(),
                "--tls-client-auth".as_ref(),
                "none".as_ref(),
            ],
            "",
        )
        .expect("runs");
    assert!(
        !worker.success && worker.stderr.contains("needs --tls-cert and --tls-key"),
        "{worker:?}"
    );
}
