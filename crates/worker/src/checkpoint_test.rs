use albatross_model::{AlbertConfig, GradLayout};
use albatross_proto::domain::{DataCursor, Sha256Digest};

use super::*;

fn config() -> AlbertConfig {
    AlbertConfig { vocab_size: 64, ..AlbertConfig::preset("tiny").expect("tiny preset") }
}

/// A state with distinct, non-trivial values everywhere (transposition mistakes show).
fn state(layout: &GradLayout, with_moments: bool, salt: f32) -> TrainerState {
    let n = layout.len();
    TrainerState {
        parameters: (0..n).map(|i| (i as f32 * 0.001 + salt).sin()).collect(),
        optimizer: if with_moments {
            (0..2 * n).map(|i| (i as f32 * 0.0007 - salt).cos().abs()).collect()
        } else {
            Vec::new()
        },
    }
}

fn job() -> Sha256Digest {
    Sha256Digest::of("job")
}

fn write_step(root: &Path, step: u64, st: &TrainerState, keep: usize) -> PathBuf {
    let config = config();
    let layout = GradLayout::from_config(&config);
    let contents = CheckpointContents {
        job_name: "test-job",
        job_fingerprint: job(),
        step,
        cursor: DataCursor { epoch: 1, next_sample: step * 8 },
        config: &config,
        layout: &layout,
        state: st,
    };
    let (dir, manifest) = write(root, &contents, keep).expect("write checkpoint");
    let (_, actual) = digest_file(&dir.join(MANIFEST_FILE)).expect("digest");
    assert_eq!(manifest, actual);
    dir
}

#[test]
fn a_written_checkpoint_reads_back_bit_exactly_and_is_a_hugging_face_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let layout = GradLayout::from_config(&config());
    for with_moments in [false, true] {
        let st = state(&layout, with_moments, 0.5);
        let dir = write_step(root.path(), 10, &st, 3);
        assert_eq!(dir, root.path().join("step-00000010"));
        let loaded = read(&dir, &layout, job()).expect("read");
        assert_eq!(loaded.state, st);
        assert_eq!(loaded.meta.step, 10);
        assert_eq!(DataCursor::from(loaded.meta.cursor), DataCursor { epoch: 1, next_sample: 80 });
        assert_eq!(loaded.meta.has_optimizer_state, with_moments);
        // The model part is what `model export-hf` writes: the model crate imports it.
        let (cfg, _model) = albatross_model::import_hf::<albatross_model::DefaultBackend>(
            &dir,
            &Default::default(),
        )
        .expect("hugging face import");
        assert_eq!(cfg.vocab_size, 64);
    }
    let names: Vec<String> = std::fs::read_dir(root.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["step-00000010"], "no temporary directory is left behind");
}

#[test]
fn only_the_newest_k_are_kept() {
    let root = tempfile::tempdir().expect("tempdir");
    let layout = GradLayout::from_config(&config());
    for step in [2, 4, 6, 8] {
        write_step(root.path(), step, &state(&layout, true, step as f32), 2);
    }
    let steps: Vec<u64> = list(root.path()).expect("list").into_iter().map(|c| c.0).collect();
    assert_eq!(steps, [6, 8]);
}

#[test]
fn corruption_is_named_and_the_previous_checkpoint_is_used() {
    let root = tempfile::tempdir().expect("tempdir");
    let layout = GradLayout::from_config(&config());
    let older = state(&layout, true, 1.0);
    write_step(root.path(), 5, &older, 3);
    let newest = write_step(root.path(), 10, &state(&layout, true, 2.0), 3);

    // Flip one byte in the middle of the weights.
    let weights = newest.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).expect("read weights");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&weights, &bytes).expect("corrupt");
    let err = read(&newest, &layout, job()).expect_err("corrupt weights");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert!(err.to_string().contains("SHA-256"), "{err}");

    let (found, rejected) = newest_valid(root.path(), None, &layout, job()).expect("scan");
    let found = found.expect("the older checkpoint");
    assert_eq!(found.meta.step, 5);
    assert_eq!(found.state, older);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, newest);

    // A truncated manifest (a crash mid-write of a non-atomic tool) is refused too.
    let manifest = newest.join(MANIFEST_FILE);
    std::fs::write(&manifest, b"{\"format\":").expect("truncate");
    let err = verify(&newest).expect_err("truncated manifest");
    assert!(err.to_string().contains("manifest.json"), "{err}");
    // A limit below every checkpoint finds none.
    let (none, _) = newest_valid(root.path(), Some(4), &layout, job()).expect("scan");
    assert!(none.is_none());
}

#[test]
fn another_job_or_layout_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let layout = GradLayout::from_config(&config());
    let dir = write_step(root.path(), 3, &state(&layout, false, 0.0), 3);
    let err = read(&dir, &layout, Sha256Digest::of("other job")).expect_err("other job");
    assert!(err.to_string().contains("written by job"), "{err}");
    let bigger = GradLayout::from_config(&AlbertConfig { vocab_size: 65, ..config() });
    let err = read(&dir, &bigger, job()).expect_err("other layout");
    assert!(err.to_string().contains("parameter layout"), "{err}");
}

#[test]
fn directory_names_parse_strictly() {
    assert_eq!(step_of("step-00001000"), Some(1000));
    assert_eq!(dir_name(1000), "step-00001000");
    for bad in ["step-", "step-12a", "steps-1", ".tmp-step-00000001-7", "step-+1"] {
        assert_eq!(step_of(bad), None, "{bad}");
    }
}

/// Rewrites `state.json` of `dir` through `edit` and re-seals the manifest, as a checkpoint
/// written by another version would look.
fn rewrite_state(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let state_path = dir.join(STATE_FILE);
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("read")).expect("json");
    edit(&mut meta);
    write_json(&state_path, &meta).expect("write state");
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("read"))
            .expect("manifest");
    manifest.format = meta["format"].as_str().expect("format").to_owned();
    let (bytes, sha256) = digest_file(&state_path).expect("digest");
    manifest.files.insert(STATE_FILE.to_owned(), FileEntry { bytes, sha256: sha256.to_hex() });
    write_json(&manifest_path, &manifest).expect("write manifest");
}

#[test]
fn checkpoints_from_before_blake3_verify_with_their_sha256_state_hash() {
    let root = tempfile::tempdir().expect("tempdir");
    let layout = GradLayout::from_config(&config());
    let st = state(&layout, true, 0.25);
    let dir = write_step(root.path(), 4, &st, 3);
    let written = read(&dir, &layout, job()).expect("read");
    assert_eq!(written.meta.state_hash_algorithm, "blake3");

    let legacy = st.hash_with(HashAlgorithm::Sha256, &layout.fingerprint()).to_hex();
    rewrite_state(&dir, |meta| {
        let fields = meta.as_object_mut().expect("object");
        fields.remove("state_hash_algorithm");
        fields.insert("state_hash".to_owned(), legacy.clone().into());
        fields.insert("format".to_owned(), "albatross-checkpoint/v1".into());
    });
    let loaded = read(&dir, &layout, job()).expect("a legacy checkpoint still loads");
    assert_eq!(loaded.meta.state_hash_algorithm, "sha256");
    assert_eq!(loaded.state, st);

    rewrite_state(&dir, |meta| meta["state_hash_algorithm"] = "md5".into());
    let err = read(&dir, &layout, job()).expect_err("unknown algorithm");
    assert!(err.to_string().contains("unknown state_hash_algorithm \"md5\""), "{err}");

    rewrite_state(&dir, |meta| meta["format"] = "albatross-checkpoint/v9".into());
    let err = read(&dir, &layout, job()).expect_err("unknown format");
    assert!(err.to_string().contains("albatross-checkpoint/v9"), "{err}");
}
