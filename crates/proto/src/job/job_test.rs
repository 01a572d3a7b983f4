use super::{ComputeDevice, EXAMPLE_TOML, JobSpec, JobSpecError, ModelPreset};

const MINIMAL: &str = r#"
name = "albert-base-wikipedia"
[model]
preset = "base"
[data]
dir = "data/wikipedia-shards"
"#;

fn parse(text: &str) -> Result<JobSpec, JobSpecError> {
    JobSpec::from_toml_str(text, "test.toml")
}

fn invalid_fields(text: &str) -> Vec<String> {
    match parse(text) {
        Err(JobSpecError::Invalid { errors, .. }) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected field errors for\n{text}\ngot {other:?}"),
    }
}

#[test]
fn example_is_valid_and_spells_out_the_defaults() {
    let example = parse(EXAMPLE_TOML).expect("the shipped example must be valid");
    let minimal = parse(MINIMAL).expect("minimal spec");
    assert_eq!(example, minimal);
    assert_eq!(example.model.preset, ModelPreset::Base);
    assert_eq!(example.fingerprint(), minimal.fingerprint());
}

#[test]
fn canonical_form_round_trips() {
    let spec = parse(EXAMPLE_TOML).expect("example");
    let canonical = spec.to_canonical_toml();
    let again = parse(&canonical).expect("canonical form parses");
    assert_eq!(again, spec);
    assert_eq!(again.to_canonical_toml(), canonical);
}

#[test]
fn fingerprint_ignores_order_formatting_and_spelling_of_equal_values() {
    let reordered = r#"
        # comments do not matter
        [checkpoint]
        keep = 3
        dir   =   "checkpoints"
        [data]
        max_seq_length = 512
        dir = 'data/wikipedia-shards'
        [fault_tolerance]
        heartbeat_interval = "1000ms"
        step_deadline = "300s"
        [optimizer]
        clip_norm = 1e0
        total_steps = 125_000
        [model]
        preset = "base"
        [batch]
        micro_batch_size = 32
    "#;
    let reordered = format!("name = \"albert-base-wikipedia\"\nseed = 42\n{reordered}");
    let a = parse(MINIMAL).expect("minimal");
    let b = parse(&reordered).expect("reordered");
    assert_eq!(a.fingerprint(), b.fingerprint());
}

#[test]
fn fingerprint_changes_with_any_value() {
    let base = parse(MINIMAL).expect("minimal").fingerprint();
    let name_line = "name = \"albert-base-wikipedia\"";
    let variants = [
        MINIMAL.replace(name_line, &format!("{name_line}\nseed = 43")),
        MINIMAL.replace("preset = \"base\"", "preset = \"large\""),
        format!("{MINIMAL}[optimizer]\nlearning_rate = 0.001\n"),
        format!("{MINIMAL}[batch]\nmicro_batch_size = 16\n"),
        format!("{MINIMAL}[fault_tolerance]\njoin_grace = \"3s\"\n"),
    ];
    for text in variants {
        let spec = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_ne!(
            spec.fingerprint(),
            base,
            "a changed value must change the fingerprint:\n{text}"
        );
    }
}

#[test]
fn each_invalid_field_gets_its_own_error() {
    let cases: &[(&str, &str)] = &[
        ("name = \"Bad_Name\"\n", "name"),
        ("[model]\npreset = \"base\"\nvocab_size = 3\n", "model.vocab_size"),
        (
            "[model]\npreset = \"base\"\nhidden_size = 100\nnum_attention_heads = 12\n",
            "model.hidden_size",
        ),
        ("[model]\npreset = \"base\"\nnum_hidden_layers = 0\n", "model.num_hidden_layers"),
        ("[model]\npreset = \"base\"\nhidden_dropout_prob = 1.0\n", "model.hidden_dropout_prob"),
        (
            "[model]\npreset = \"base\"\nattention_probs_dropout_prob = -0.1\n",
            "model.attention_probs_dropout_prob",
        ),
        ("[data]\ndir = \"\"\n", "data.dir"),
        ("[data]\ndir = \"d\"\nmax_seq_length = 1024\n", "data.max_seq_length"),
        ("[optimizer]\nlearning_rate = 0.0\n", "optimizer.learning_rate"),
        ("[optimizer]\nlearning_rate = nan\n", "optimizer.learning_rate"),
        ("[optimizer]\ntotal_steps = 0\nwarmup_steps = 0\n", "optimizer.total_steps"),
        ("[optimizer]\ntotal_steps = 10\nwarmup_steps = 11\n", "optimizer.warmup_steps"),
        ("[optimizer]\nweight_decay = 1.5\n", "optimizer.weight_decay"),
        ("[optimizer]\nbeta1 = 1.0\n", "optimizer.beta1"),
        ("[optimizer]\nbeta2 = -0.5\n", "optimizer.beta2"),
        ("[optimizer]\nepsilon = 0.0\n", "optimizer.epsilon"),
        ("[optimizer]\nclip_norm = inf\n", "optimizer.clip_norm"),
        ("[batch]\nglobal_batch_size = 8\nmicro_batch_size = 8\n", "batch.global_batch_size"),
        ("[batch]\nglobal_batch_size = 64\nmicro_batch_size = 65\n", "batch.micro_batch_size"),
        ("[fault_tolerance]\nmax_workers = 0\n", "fault_tolerance.max_workers"),
        ("[fault_tolerance]\nmin_workers = 65\n", "fault_tolerance.min_workers"),
        ("[fault_tolerance]\nheartbeat_interval = \"1ms\"\n", "fault_tolerance.heartbeat_interval"),
        (
            "[fault_tolerance]\nheartbeat_timeout = \"1500ms\"\n",
            "fault_tolerance.heartbeat_timeout",
        ),
        (
            "[fault_tolerance]\nstep_deadline = \"10ms\"\njoin_grace = \"0s\"\n",
            "fault_tolerance.step_deadline",
        ),
        ("[fault_tolerance]\njoin_grace = \"10m\"\n", "fault_tolerance.join_grace"),
        ("[checkpoint]\ndir = \"\"\n", "checkpoint.dir"),
        ("[checkpoint]\nevery_steps = 0\n", "checkpoint.every_steps"),
        ("[checkpoint]\nkeep = 0\n", "checkpoint.keep"),
    ];
    for (snippet, field) in cases {
        let text = compose(snippet);
        assert_eq!(invalid_fields(&text), vec![field.to_string()], "snippet:\n{snippet}");
    }
}

/// Merge a snippet into the minimal spec; tables in the snippet replace the minimal one's.
fn compose(snippet: &str) -> String {
    let top_level = !snippet.starts_with('[');
    let mut text = String::new();
    if top_level {
        text.push_str(snippet);
    } else {
        text.push_str("name = \"albert-base-wikipedia\"\n");
    }
    if !snippet.contains("[model]") {
        text.push_str("[model]\npreset = \"base\"\n");
    }
    if !snippet.contains("[data]") {
        text.push_str("[data]\ndir = \"data/wikipedia-shards\"\n");
    }
    if !top_level {
        text.push_str(snippet);
    }
    text
}

#[test]
fn error_message_names_field_value_and_allowed_range() {
    let err = parse(&compose("[optimizer]\nlearning_rate = 2.5\n")).expect_err("invalid");
    let message = err.to_string();
    assert!(message.contains("test.toml"), "{message}");
    assert!(message.contains("optimizer.learning_rate = 2.5"), "{message}");
    assert!(message.contains("greater than 0 and at most 1"), "{message}");
}

#[test]
fn all_violations_are_reported_at_once() {
    let text = compose("[optimizer]\nlearning_rate = -1.0\nbeta1 = 2.0\nclip_norm = 0.0\n");
    assert_eq!(
        invalid_fields(&text),
        vec!["optimizer.learning_rate", "optimizer.beta1", "optimizer.clip_norm"]
    );
}

#[test]
fn unknown_missing_and_mistyped_keys_are_parse_errors_naming_the_key() {
    let cases = [
        (compose("[optimizer]\nlearning_rat = 0.1\n"), "learning_rat"),
        (compose("colour = \"blue\"\n"), "colour"),
        ("name = \"x\"\n[data]\ndir = \"d\"\n".to_owned(), "model"),
        (compose("[batch]\nglobal_batch_size = \"big\"\n"), "global_batch_size"),
        (compose("[model]\npreset = \"huge\"\n"), "huge"),
        (compose("[fault_tolerance]\nstep_deadline = \"soon\"\n"), "step_deadline"),
    ];
    for (text, key) in cases {
        match parse(&text) {
            Err(JobSpecError::Parse { message, .. }) => {
                assert!(message.contains(key), "message for {key:?} does not name it: {message}");
            }
            other => panic!("expected a parse error naming {key:?}, got {other:?}"),
        }
    }
}

#[test]
fn reading_a_missing_file_names_the_path() {
    let err =
        JobSpec::from_path(std::path::Path::new("/nonexistent/job.toml")).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/job.toml"), "{err}");
}

#[test]
fn compute_device_pins_a_kind_and_is_left_out_of_the_fingerprint_when_unset() {
    let base = parse(MINIMAL).expect("minimal");
    assert_eq!(base.compute.device, None);
    assert!(!base.to_canonical_toml().contains("[compute]"), "jobs without it keep their text");
    let pinned = parse(&format!("{MINIMAL}[compute]\ndevice = \"cuda\"\n")).expect("cuda");
    assert_eq!(pinned.compute.device, Some(ComputeDevice::Cuda));
    assert_ne!(pinned.fingerprint(), base.fingerprint());
    let reparsed = parse(&pinned.to_canonical_toml()).expect("canonical text parses");
    assert_eq!(reparsed.fingerprint(), pinned.fingerprint());
    let err = parse(&format!("{MINIMAL}[compute]\ndevice = \"tpu\"\n")).expect_err("tpu");
    assert!(err.to_string().contains("tpu"), "{err}");
}

#[test]
fn determinism_is_off_by_default_left_out_when_off_and_part_of_the_fingerprint_when_on() {
    let base = parse(MINIMAL).expect("minimal");
    assert!(!base.determinism.exact);
    assert!(!base.to_canonical_toml().contains("[determinism]"), "jobs without it keep their text");
    let exact = parse(&format!("{MINIMAL}[determinism]\nexact = true\n")).expect("exact");
    assert!(exact.determinism.exact);
    assert_ne!(exact.fingerprint(), base.fingerprint());
    let reparsed = parse(&exact.to_canonical_toml()).expect("canonical text parses");
    assert_eq!(reparsed, exact);
    // 4096 / 32 = 128 micro-batches need 7 bits of headroom: 62 - 7 - 20 fraction bits.
    assert_eq!(exact.micro_batches_per_step(), 128);
    assert_eq!(exact.fraction_bits(), 35);
}

#[test]
fn exact_mode_refuses_dropout_and_a_range_that_leaves_too_few_fraction_bits() {
    let dropout = MINIMAL
        .replace("preset = \"base\"", "preset = \"base\"\nhidden_dropout_prob = 0.1")
        + "[determinism]\nexact = true\n";
    assert_eq!(invalid_fields(&dropout), vec!["model.hidden_dropout_prob"]);
    let wide = format!("{MINIMAL}[determinism]\nexact = true\nrange_bits = 40\n");
    let err = parse(&wide).expect_err("no fraction bits left");
    assert!(err.to_string().contains("determinism.range_bits"), "{err}");
    assert!(err.to_string().contains("128 micro-batches"), "{err}");
    // The same range is fine when exact mode is off (nothing is converted).
    parse(&format!("{MINIMAL}[determinism]\nrange_bits = 40\n")).expect("off");
}
