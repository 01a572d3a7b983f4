//! Devices: workers on burn-wgpu (Mesa's software Vulkan driver, lavapipe, installed when
//! missing, so no GPU is needed) alone and beside CPU workers, healing from each other; and the
//! errors for devices this binary cannot use.

use std::path::Path;

use albatross_tests::software_vulkan;
use serde_json::Value;

use super::albatross;
use super::t05_cluster::{assert_chaos_ledger, serial};

/// `launch ARGS` of the tiny demo in `dir` (logs at info level); its summary.json.
fn launch_summary(dir: &Path, args: &[&str]) -> Value {
    let out = dir.join("run");
    let mut command = albatross().command(["launch"].iter().chain(args));
    command.arg("--out").arg(&out).env("ALBATROSS_CACHE_DIR", dir.join("cache"));
    // Lavapipe is slow to time kernels: the autotuner's quickest level keeps start-up short.
    command.env("RUST_LOG", "info").env("CUBECL_AUTOTUNE_LEVEL", "minimal");
    let result = command.output().expect("launch runs");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    eprintln!("{stdout}");
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
        .expect("json")
}

/// The worker's log; it names the device the worker computes on.
fn worker_log(dir: &Path, worker: &str, device: &str) -> String {
    let log = std::fs::read_to_string(dir.join(format!("run/logs/{worker}.log"))).expect("log");
    assert!(log.contains(&format!("device={device}")), "{worker} runs on {device}: {log}");
    log
}

#[test]
fn two_wgpu_workers_train_tiny_and_their_replicas_agree() {
    let _serial = serial();
    software_vulkan::ensure();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--device", "wgpu:cpu", "--steps", "12", "--global-batch", "16"];
    let summary = launch_summary(dir.path(), &args);
    assert_eq!(summary["steps_committed"], 12, "{summary}");
    assert_eq!(summary["samples_committed"], 12 * 16, "{summary}");
    assert_eq!(
        (summary["samples_lost"].as_u64(), summary["samples_duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(summary["replica_hashes_agree"], true, "{summary}");
    let (first, last) = (summary["initial_loss"].as_f64(), summary["final_loss"].as_f64());
    assert!(last < first, "loss falls on wgpu: {first:?} -> {last:?}");
    worker_log(dir.path(), "worker-0", "wgpu:cpu");
}

/// A CPU worker and a wgpu worker: they apply the same reduced gradient with the same host
/// update, so their states are bit-identical; each is killed once and heals from the other.
#[test]
fn a_wgpu_worker_and_a_cpu_worker_heal_from_each_other_and_agree() {
    let _serial = serial();
    software_vulkan::ensure();
    let dir = tempfile::tempdir().expect("tempdir");
    let schedule = "kill:worker-1@step=5,kill:worker-0@step=12";
    let args =
        ["--devices", "cpu,wgpu:cpu", "--steps", "20", "--global-batch", "16", "--chaos", schedule];
    launch_summary(dir.path(), &args);
    let report = std::fs::read_to_string(dir.path().join("run/chaos-report.json")).expect("report");
    let report: Value = serde_json::from_str(&report).expect("json");
    assert_eq!(report["total_faults"], 2, "{report}");
    assert_chaos_ledger(&report, 20);
    for (worker, device, peer) in [("worker-1", "wgpu:cpu", "cpu"), ("worker-0", "cpu", "wgpu")] {
        let log = worker_log(dir.path(), worker, device);
        assert!(
            log.contains("healed from a live peer"),
            "{worker} heals from its {peer} peer: {log}"
        );
    }
}

#[test]
fn devices_this_binary_cannot_use_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bench = |device: &str| {
        albatross()
            .run(["bench", "step", "--preset", "tiny", "--steps", "1", "--device", device], "")
            .expect("runs")
    };
    // This test binary is built with wgpu but not cuda.
    let out = bench("cuda:0");
    assert!(!out.success, "{out:?}");
    assert!(out.stderr.contains("device cuda:0 is not available"), "{}", out.stderr);
    assert!(out.stderr.contains("--features cuda"), "{}", out.stderr);
    let out = bench("gpu");
    assert!(!out.success && out.stderr.contains("expected cpu, wgpu"), "{}", out.stderr);
    let out = bench("wgpu:7");
    assert!(!out.success, "{out:?}");
    assert!(out.stderr.contains("device wgpu:7 is not available"), "{}", out.stderr);
    // The runtime's own reason, not just a closed channel.
    assert!(out.stderr.contains("No Discrete GPU device found"), "{}", out.stderr);
    let run = dir.path().join("run");
    let launch = [
        "launch".as_ref(),
        "--devices".as_ref(),
        "cpu".as_ref(),
        "--out".as_ref(),
        run.as_os_str(),
    ];
    let out = albatross().run(launch, "").expect("runs");
    assert!(!out.success, "{out:?}");
    assert!(out.stderr.contains("--devices names 1 devices for 2 workers"), "{}", out.stderr);
}
