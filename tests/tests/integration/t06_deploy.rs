//! The Kubernetes manifests under `deploy/`: `deploy/validate.sh` renders every overlay, validates
//! it against the Kubernetes schemas and checks it against this build's `albatross` (flags,
//! ports, probes, volumes, job specs). A missing kubectl fails these tests: a validation that did
//! not run must not look like one that passed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `validate.sh`'s exit status when kubectl is missing (the autotools "skipped" code).
const SKIPPED: i32 = 77;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `deploy/validate.sh` of the tree at `root` against the binary this package builds.
fn validate(root: &Path) -> Output {
    // Through bash, so the script's executable bit does not matter.
    Command::new("bash")
        .arg(root.join("deploy/validate.sh"))
        .env("ALBATROSS_BIN", env!("CARGO_BIN_EXE_albatross-it"))
        .output()
        .expect("bash runs deploy/validate.sh")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_ran(out: &Output) {
    assert_ne!(
        out.status.code(),
        Some(SKIPPED),
        "deploy/validate.sh was skipped because kubectl is missing; install kubectl, the \
         manifests must be validated:\n{}",
        describe(out)
    );
}

#[test]
fn every_overlay_renders_and_matches_the_binary() {
    let out = validate(&repo_root());
    assert_ran(&out);
    assert!(out.status.success(), "deploy/validate.sh failed:\n{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for overlay in ["local", "wikipedia-base"] {
        assert!(stdout.contains(&format!("== {overlay}: kubernetes-validate")), "{stdout}");
    }
    assert!(stdout.contains("all overlays valid"), "{stdout}");
}

/// The checks can fail: a copy of `deploy/` whose workers pass a flag the binary lacks is
/// rejected, and the message names the flag.
#[test]
fn a_flag_the_binary_lacks_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("deploy"), &dir.path().join("deploy"));
    let workers = dir.path().join("deploy/k8s/base/workers.yaml");
    let text = std::fs::read_to_string(&workers).expect("read workers.yaml");
    assert!(text.contains("- --advertise="), "the base workers advertise their address");
    std::fs::write(&workers, text.replace("- --advertise=", "- --advertize="))
        .expect("write workers.yaml");

    let out = validate(dir.path());
    assert_ran(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`albatross worker` has no flag --advertize"), "{}", describe(&out));
}

/// With mutual TLS on, a probe on the TLS port cannot pass (a kubelet has no client
/// certificate): a copy of the mtls component without the cleartext health port is rejected.
#[test]
fn tls_without_a_health_port_for_the_probes_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("deploy"), &dir.path().join("deploy"));
    let patch = dir.path().join("deploy/k8s/components/mtls/workers.yaml");
    let text = std::fs::read_to_string(&patch).expect("read the mtls workers patch");
    let without: String = text
        .split("- op: ")
        .filter(|op| !op.contains("--health-listen") && !op.contains("port\n  value: 7072"))
        .collect::<Vec<_>>()
        .join("- op: ");
    assert_ne!(without, text, "the mtls component gives the workers a health port");
    std::fs::write(&patch, without).expect("write the patch");

    let out = validate(dir.path());
    assert_ran(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`albatross worker` serves mutual TLS, which a kubelet's readinessProbe"),
        "{}",
        describe(&out)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// The container image, built and run for real (issue 22): `deploy/docker/build-image.sh` makes
/// it from the binary this package built (with podman, and a base made from Debian packages where
/// none can be pulled), then `deploy/docker/test-image.sh` checks its user, entrypoint and
/// contents and runs a job in containers: prepare-data, a coordinator and two workers, a graceful
/// leave (`podman stop`), a kill and a heal, and an exact ledger; then `deploy/docker/kube_play.py`
/// runs the rendered `local` overlay with `podman kube play` (coordinator pod replaced, worker pod
/// deleted and recreated, exact ledger). Both scripts install podman, runc, debootstrap and
/// PyYAML with apt when they are missing (as root); without them this fails.
#[test]
fn the_image_builds_from_this_binary_and_runs_a_job_in_containers() {
    let _serial = super::t05_cluster::serial();
    let root = repo_root();
    let tag = "localhost/albatross:it";
    let build = Command::new("bash")
        .arg(root.join("deploy/docker/build-image.sh"))
        .args(["--tag", tag, "--binary", env!("CARGO_BIN_EXE_albatross-it")])
        .output()
        .expect("bash runs build-image.sh");
    assert!(build.status.success(), "build-image.sh failed:\n{}", describe(&build));
    let built = String::from_utf8_lossy(&build.stdout);
    assert!(built.contains(" MB ("), "build-image.sh reports the size: {built}");
    eprintln!("{built}");
    let test = Command::new("bash")
        .arg(root.join("deploy/docker/test-image.sh"))
        .arg(tag)
        .output()
        .expect("bash runs test-image.sh");
    assert!(test.status.success(), "test-image.sh failed:\n{}", describe(&test));
    let report = String::from_utf8_lossy(&test.stderr);
    for step in [
        "image ok",
        "graceful leave",
        "healed from its peer",
        "kube-play: PASSED",
        "PASSED: localhost/albatross:it",
    ] {
        assert!(report.contains(step), "test-image.sh did not report {step:?}:\n{report}");
    }
}
