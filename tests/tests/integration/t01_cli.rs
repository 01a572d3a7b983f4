//! The `albatross` binary's own surface: version, help, `config example` and `config check`.

use super::albatross;

#[test]
fn version_and_help() {
    let out = albatross().run(["--version"], "").expect("runs");
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout.trim(), format!("albatross {}", env!("CARGO_PKG_VERSION")));

    let out = albatross().run(["--help"], "").expect("runs");
    assert!(out.success, "{out:?}");
    for text in ["config", "--log-format", "RUST_LOG"] {
        assert!(out.stdout.contains(text), "help lacks {text:?}:\n{}", out.stdout);
    }
}

#[test]
fn example_checks_clean_from_stdin_and_from_a_file() {
    let example = albatross().run(["config", "example"], "").expect("runs");
    assert!(example.success, "{example:?}");

    let from_stdin = albatross().run(["config", "check", "-"], &example.stdout).expect("runs");
    assert!(from_stdin.success, "{from_stdin:?}");
    let first_line = from_stdin.stdout.lines().next().unwrap_or_default();
    let fingerprint = first_line.strip_prefix("# fingerprint: ").expect("fingerprint line");
    assert_eq!(fingerprint.len(), 64, "{first_line}");

    // The effective spec printed by `check` is itself a job file with the same fingerprint.
    let dir = tempfile::tempdir().expect("tempdir");
    let effective = dir.path().join("effective.toml");
    std::fs::write(&effective, &from_stdin.stdout).expect("write");
    let from_file =
        albatross().run(["config".as_ref(), "check".as_ref(), effective.as_os_str()], "");
    let from_file = from_file.expect("runs");
    assert!(from_file.success, "{from_file:?}");
    assert_eq!(from_file.stdout, from_stdin.stdout);
}

#[test]
fn invalid_spec_fails_naming_every_bad_field() {
    let spec = "[model]\npreset = \"tiny\"\n[data]\ndir = \"shards\"\n\
                [optimizer]\nlearning_rate = 5.0\n[checkpoint]\nkeep = 0\n";
    let out = albatross().run(["config", "check", "-"], spec).expect("runs");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout for an invalid spec: {}", out.stdout);
    assert!(out.stderr.contains("optimizer.learning_rate = 5"), "{}", out.stderr);
    assert!(out.stderr.contains("checkpoint.keep = 0"), "{}", out.stderr);
}

#[test]
fn missing_file_is_named() {
    let out = albatross().run(["config", "check", "/nonexistent/job.toml"], "").expect("runs");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/job.toml"), "{}", out.stderr);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let example = albatross().run(["config", "example"], "").expect("runs");
    let mut cmd = albatross().command(["--log-format", "json", "config", "check", "-"]);
    cmd.env("RUST_LOG", "info");
    let out = run_with_stdin(cmd, &example.stdout);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("job spec is valid")).expect("log line");
    assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON object: {line}");
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
}

fn run_with_stdin(mut cmd: std::process::Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}
