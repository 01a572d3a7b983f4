//! The user's path through the binary as real processes: prepare data from a book, inspect the
//! model, run a coordinator on the prepared data (epoch size from the manifest), ask it for its
//! status, and stop it with SIGTERM (it must exit 0).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::albatross;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/data/tests/fixtures").join(name)
}

/// The first `lines` lines of Persuasion: enough for a few hundred samples, quick to prepare.
fn small_book(dir: &Path, lines: usize) -> PathBuf {
    let text = std::fs::read_to_string(fixture("persuasion.txt")).expect("fixture");
    let head: Vec<&str> = text.lines().take(lines).collect();
    let path = dir.join("book.txt");
    std::fs::write(&path, head.join("\n")).expect("write");
    path
}

#[test]
fn model_info_json_reports_exact_parameter_counts() {
    let out = albatross().run(["model", "info", "--preset", "base", "--json"], "").expect("runs");
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("\"parameters\": 11813810"), "{}", out.stdout);
    assert!(out.stdout.contains("\"gradient_bytes\": 47255240"), "{}", out.stdout);
}

/// `bench data` prepares the given corpus, reads batches as a worker does and prints figures
/// that agree with what it prepared (the reference step is skipped: it is the slow part).
#[test]
fn bench_data_reports_throughput_and_batch_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let book = small_book(dir.path(), 400);
    let args = [
        "bench".as_ref(),
        "data".as_ref(),
        "--input".as_ref(),
        book.as_os_str(),
        "--max-seq-len".as_ref(),
        "64".as_ref(),
        "--seq".as_ref(),
        "64".as_ref(),
        "--no-step".as_ref(),
        "--json".as_ref(),
    ];
    let out = albatross().run(args, "").expect("runs");
    assert!(out.success, "{out:?}");
    let report: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("one JSON object");
    let book_bytes = std::fs::metadata(&book).expect("book").len();
    assert_eq!(report["input_bytes"], book_bytes, "{report}");
    assert!(report["examples"].as_u64().is_some_and(|n| n > 50), "{report}");
    for field in ["mb_per_s", "tokens_per_s", "batch_read_s"] {
        assert!(report[field].as_f64().is_some_and(|v| v > 0.0), "{field}: {report}");
    }
    assert!(report["peak_rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{report}");
    assert!(report["base_step_s"].is_null() && report["batch_read_share"].is_null(), "{report}");

    let bad = albatross().run(["bench", "data", "--threads", "0"], "").expect("runs");
    assert!(!bad.success && bad.stderr.contains("--threads"), "{bad:?}");
}

#[test]
fn exported_model_evaluates_from_json_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hf = dir.path().join("hf");
    let export = [
        "model".as_ref(),
        "export-hf".as_ref(),
        "--preset".as_ref(),
        "tiny".as_ref(),
        "--out".as_ref(),
        hf.as_os_str(),
    ];
    let out = albatross().run(export, "").expect("runs");
    assert!(out.success, "{out:?}");
    assert!(hf.join("config.json").is_file() && hf.join("model.safetensors").is_file());

    let inputs = dir.path().join("inputs.json");
    std::fs::write(
        &inputs,
        r#"{"input_ids": [[2, 10, 11, 4, 3], [2, 12, 13, 3, 0]],
            "token_type_ids": [[0, 0, 0, 0, 0], [0, 0, 1, 1, 0]],
            "attention_mask": [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]],
            "labels": [[-100, -100, -100, 12, -100], [-100, 20, -100, -100, -100]],
            "sentence_order_label": [0, 1]}"#,
    )
    .expect("write inputs");
    let result = dir.path().join("out.safetensors");
    let eval = [
        "model".as_ref(),
        "eval".as_ref(),
        "--hf-dir".as_ref(),
        hf.as_os_str(),
        "--inputs".as_ref(),
        inputs.as_os_str(),
        "--out".as_ref(),
        result.as_os_str(),
    ];
    let out = albatross().run(eval, "").expect("runs");
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("batch 2, seq 5, loss "), "{}", out.stdout);
    assert!(
        !out.stdout.contains("n/a"),
        "labels were given, so a loss is reported: {}",
        out.stdout
    );
    assert!(result.is_file());
}

#[test]
fn prepare_data_then_coordinator_serves_status_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let book = small_book(dir.path(), 1500);
    let shards = dir.path().join("shards");
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
        "128".as_ref(),
        "--out".as_ref(),
        shards.as_os_str(),
    ];
    let out = albatross().run(args, "").expect("runs");
    assert!(out.success, "{out:?}");
    assert!(out.stdout.starts_with("prepared "), "{}", out.stdout);
    assert!(shards.join("manifest.json").is_file());

    let inspect = [
        "data".as_ref(),
        "inspect".as_ref(),
        shards.as_os_str(),
        "--decode".as_ref(),
        "2".as_ref(),
    ];
    let out = albatross().run(inspect, "").expect("runs");
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("all checksums verified"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("[CLS]").count(), 2, "two decoded samples: {}", out.stdout);

    let job = dir.path().join("job.toml");
    let spec = format!(
        "name = \"t04\"\n[model]\npreset = \"tiny\"\nvocab_size = 8000\n\
         [data]\ndir = {:?}\nmax_seq_length = 128\n\
         [batch]\nglobal_batch_size = 64\nmicro_batch_size = 8\n\
         [fault_tolerance]\nmax_workers = 4\n",
        shards.display().to_string()
    );
    std::fs::write(&job, spec).expect("write job");

    let state = dir.path().join("state");
    let mut coordinator = albatross()
        .command([
            "--log-format".as_ref(),
            "json".as_ref(),
            "coordinator".as_ref(),
            "--job".as_ref(),
            job.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--state-dir".as_ref(),
            state.as_os_str(),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coordinator");
    let addr = serving_address(&mut coordinator);

    let url = format!("http://{addr}");
    let out = albatross().run(["status", "--coordinator", &url, "--json"], "").expect("runs");
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("\"t04\""), "status names the job: {}", out.stdout);

    let pid = coordinator.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let status = wait_with_deadline(&mut coordinator, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "the coordinator exits 0 on SIGTERM");
}

/// Read the coordinator's JSON log lines until it says where it serves.
fn serving_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("coordinator serving") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the coordinator did not report its address within 20 s")
    });
    let start = line.find("\"addr\":\"").expect("addr field") + "\"addr\":\"".len();
    line[start..].split('"').next().expect("address").to_owned()
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
