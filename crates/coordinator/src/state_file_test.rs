use super::*;
use crate::core_test::job;

fn durable(step: u64) -> Durable {
    Durable {
        generation: Generation(3 + step),
        committed_step: step,
        cursor: DataCursor { epoch: 1, next_sample: step },
        latest_checkpoint: Some(CheckpointRef {
            step,
            path: format!("/ckpt/step-{step}"),
            manifest_sha256: Sha256Digest([9; 32]),
            cursor: DataCursor { epoch: 1, next_sample: step },
        }),
        aborted_steps: 2,
        skipped_steps: step / 2,
        committed_generation: Generation(2 + step),
        recoveries: step / 3,
        last_quorum_size: 4,
        kernel_set: Some("cpu/flex/x86_64/gemm-avx512f/pulp-v4".into()),
    }
}

fn store(dir: &Path) -> StateStore {
    StateStore::open(dir, &job(), 20).expect("open")
}

#[test]
fn an_empty_directory_has_no_state_and_saves_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = store(&tmp.path().join("state"));
    assert_eq!(s.load().expect("load"), None);
    s.save(&durable(5)).expect("save");
    s.save(&durable(6)).expect("save");
    assert_eq!(s.load().expect("load"), Some(Restored { durable: durable(6), fell_back: None }));
    assert!(!s.dir().join(TEMP).exists());
    assert!(s.dir().join(PREVIOUS).exists());
}

#[test]
fn a_corrupt_file_falls_back_to_the_previous_good_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = store(tmp.path());
    s.save(&durable(5)).expect("save");
    s.save(&durable(6)).expect("save");
    let current = tmp.path().join(CURRENT);
    let text = fs::read_to_string(&current).expect("read");
    fs::write(&current, text.replace("committed_step = 6", "committed_step = 9")).expect("write");
    let restored = s.load().expect("load").expect("state");
    assert_eq!(restored.durable, durable(5));
    let why = restored.fell_back.expect("fell back");
    assert!(why.contains("is corrupt: checksum mismatch"), "{why}");
}

#[test]
fn corrupt_without_an_intact_copy_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = store(tmp.path());
    s.save(&durable(5)).expect("save");
    fs::write(tmp.path().join(CURRENT), "garbage").expect("write");
    let err = s.load().expect_err("corrupt");
    assert!(matches!(err, CoordinatorError::Corrupt { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "state file {} is corrupt: {} is corrupt: no header line, and there is no previous copy",
            tmp.path().join(CURRENT).display(),
            tmp.path().join(CURRENT).display()
        )
    );
    s.save(&durable(6)).expect("save over garbage");
    fs::write(tmp.path().join(CURRENT), "x\ny").expect("write");
    let err = s.load().expect_err("both corrupt");
    assert!(err.to_string().contains("the previous copy is corrupt too: no header line"), "{err}");
}

#[test]
fn a_missing_current_file_uses_the_previous_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = store(tmp.path());
    s.save(&durable(1)).expect("save");
    s.save(&durable(2)).expect("save");
    fs::remove_file(tmp.path().join(CURRENT)).expect("remove");
    let restored = s.load().expect("load").expect("state");
    assert_eq!(restored.durable, durable(1));
    assert!(restored.fell_back.is_some_and(|why| why.ends_with("is missing")));
}

#[test]
fn state_of_another_job_or_data_set_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    store(tmp.path()).save(&durable(1)).expect("save");
    let mut other = job();
    other.seed = 7;
    let err = StateStore::open(tmp.path(), &other, 20).expect("open").load().expect_err("foreign");
    assert!(matches!(err, CoordinatorError::ForeignState { .. }));
    let err = StateStore::open(tmp.path(), &job(), 21).expect("open").load().expect_err("foreign");
    assert!(err.to_string().contains("its data set has 20 samples per epoch, not 21"), "{err}");
}

#[test]
fn a_restarted_core_resumes_under_a_higher_generation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = store(tmp.path());
    s.save(&durable(4)).expect("save");
    let restored = s.load().expect("load").expect("state");
    let cfg = crate::config::CoreConfig::from_job(&job(), 20).expect("config");
    let mut core = crate::core::Core::new(cfg, &job(), Some(restored.durable), "i2");
    assert_eq!(core.generation(), Generation(8));
    assert_eq!(core.durable().committed_step, 4);
    assert_eq!(
        core.drain_effects(),
        [crate::effect::Effect::GenerationChanged {
            from: Generation(7),
            to: Generation(8),
            reason: "coordinator restarted".into()
        }]
    );
}

#[test]
fn a_state_file_written_before_skips_and_committed_generations_still_loads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = store(tmp.path());
    let old = durable(6);
    s.save(&old).expect("save");
    // Rewrite the file as an older coordinator wrote it: without the added keys, with a
    // valid checksum, so only the missing keys are under test.
    let current = tmp.path().join(CURRENT);
    let text = fs::read_to_string(&current).expect("read");
    let (_, body) = text.split_once('\n').expect("header");
    let body: String = body
        .lines()
        .filter(|l| {
            !["skipped_steps", "committed_generation", "last_quorum_size", "kernel_set"]
                .iter()
                .any(|key| l.starts_with(key))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&current, format!("{HEADER}{}\n{body}", Sha256Digest::of(&body).to_hex()))
        .expect("write");
    let restored = s.load().expect("load").expect("state");
    assert_eq!(restored.fell_back, None);
    assert_eq!(
        restored.durable,
        Durable {
            skipped_steps: 0,
            committed_generation: Generation(0),
            last_quorum_size: 0,
            kernel_set: None,
            ..old
        }
    );
}
