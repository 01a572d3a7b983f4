use super::*;

const STATE: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const PARAMS: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Steps `1..=n` of a run: distinct hashes and results per step.
fn steps(n: u64) -> Vec<StepBits> {
    (1..=n)
        .map(|s| StepBits {
            step: s,
            state_before: Some(format!("{s:064x}")),
            loss: Some(10.0 / s as f64),
            mlm_loss: Some(9.0 / s as f64),
            sop_loss: Some(1.0 / s as f64),
            grad_norm: Some(0.1 * s as f64),
        })
        .collect()
}

fn hashes() -> FinalHashes {
    FinalHashes {
        final_state_hash: Some(STATE.to_owned()),
        final_param_hash: Some(PARAMS.to_owned()),
    }
}

fn against_reference(reference: Vec<StepBits>) -> Expect {
    Expect {
        from: ExpectedFrom::Reference,
        hash: STATE.to_owned(),
        reference: Some(Reference {
            dir: PathBuf::from("clean"),
            final_hash: STATE.to_owned(),
            steps: reference,
        }),
    }
}

#[test]
fn identical_runs_match_at_every_step() {
    let e = against_reference(steps(6)).check(&hashes(), &steps(6));
    assert_eq!(
        e,
        Expectation {
            expected_from: ExpectedFrom::Reference,
            expected_hash: STATE.to_owned(),
            matched: true,
            matched_hash: Some(HashKind::State),
            reference: Some(PathBuf::from("clean")),
            compared_steps: Some(6),
            first_divergent_step: None,
            divergent_field: None,
        }
    );
    assert_eq!(
        e.line(true),
        "final state hash matches the reference, 6 logged steps identical (exact mode)\n"
    );
    assert_eq!(e.failure(&hashes()), None);
    let json = serde_json::to_value(&e).expect("serialize");
    assert_eq!(json["matched_hash"], "state");
    assert_eq!(json["expected_from"], "reference");
    assert!(json["divergent_field"].is_null());
}

/// `state_before` at step k is the state after step k-1: that step diverged.
#[test]
fn a_state_before_difference_at_step_k_is_a_divergence_at_k_minus_1() {
    let mut ours = steps(8);
    for line in &mut ours[4..] {
        line.state_before = Some("ff".repeat(32));
    }
    let c = compare_steps(&ours, &steps(8));
    assert_eq!(
        c,
        StepComparison { compared_steps: 8, divergence: Some((4, StepField::StateBefore)) }
    );

    let mut changed = hashes();
    changed.final_state_hash = Some("ee".repeat(32));
    let e = against_reference(steps(8)).check(&changed, &ours);
    assert!(!e.matched);
    assert_eq!(
        (e.first_divergent_step, e.divergent_field),
        (Some(4), Some(StepField::StateBefore))
    );
    assert_eq!(
        e.line(true),
        "final hash differs from the reference: first divergent step 4 (state_before) \
         (exact mode)\n"
    );
    let failure = e.failure(&changed).expect("a mismatch fails");
    for part in [STATE, &"ee".repeat(32), PARAMS, "first divergent step 4 (state_before)"] {
        assert!(failure.contains(part), "{failure}");
    }

    // A different initial state shows at step 1: step 0.
    let mut ours = steps(3);
    ours[0].state_before = Some("00".repeat(32));
    let e = against_reference(steps(3)).check(&changed, &ours);
    assert_eq!(e.first_divergent_step, Some(0));
    assert!(e.line(true).contains("the initial state differs"), "{}", e.line(true));
}

/// Equal state before step k but different results: step k diverged, and the first field
/// that differs is named.
#[test]
fn a_loss_only_difference_at_step_k_is_a_divergence_at_k() {
    let mut ours = steps(8);
    ours[6].loss = Some(f64::from_bits(ours[6].loss.expect("loss").to_bits() + 1));
    let c = compare_steps(&ours, &steps(8));
    assert_eq!(c.divergence, Some((7, StepField::Loss)));

    let mut ours = steps(8);
    ours[2].grad_norm = None;
    ours[5].sop_loss = Some(0.0);
    assert_eq!(compare_steps(&ours, &steps(8)).divergence, Some((3, StepField::GradNorm)));
    // 0.0 and -0.0 are equal numbers but different bits.
    let mut ours = steps(2);
    let mut theirs = steps(2);
    (ours[1].mlm_loss, theirs[1].mlm_loss) = (Some(0.0), Some(-0.0));
    assert_eq!(compare_steps(&ours, &theirs).divergence, Some((2, StepField::MlmLoss)));
}

/// A step replayed after a rollback is logged twice; its last line is the one that counts.
#[test]
fn a_replayed_step_is_compared_by_its_last_line() {
    let mut ours = steps(5);
    let mut stale = ours[2].clone();
    stale.loss = Some(123.0);
    ours.insert(2, stale); // step 3 decided, rolled back, decided again
    let c = compare_steps(&ours, &steps(5));
    assert_eq!(c, StepComparison { compared_steps: 5, divergence: None });

    // The other way round: the replay is what differs.
    let mut ours = steps(5);
    let mut replay = ours[2].clone();
    replay.loss = Some(123.0);
    ours.push(replay);
    assert_eq!(compare_steps(&ours, &steps(5)).divergence, Some((3, StepField::Loss)));
}

/// Lines of an older log carry no `state_before`: the results are still compared, and only
/// steps both runs logged count.
#[test]
fn lines_without_state_before_are_compared_by_their_results() {
    let old: Vec<StepBits> =
        steps(6).into_iter().map(|l| StepBits { state_before: None, ..l }).collect();
    assert_eq!(
        compare_steps(&steps(4), &old),
        StepComparison { compared_steps: 4, divergence: None }
    );
    let mut ours = steps(4);
    ours[3].state_before = Some("ff".repeat(32));
    assert_eq!(compare_steps(&ours, &old).divergence, None);
    ours[3].grad_norm = Some(1.0);
    assert_eq!(compare_steps(&ours, &old).divergence, Some((4, StepField::GradNorm)));
}

#[test]
fn an_expected_hash_matches_the_state_or_the_parameter_hash() {
    let expect = |hash: &str| Expect {
        from: ExpectedFrom::ExpectHash,
        hash: hash.to_owned(),
        reference: None,
    };
    let e = expect(STATE).check(&hashes(), &steps(3));
    assert_eq!((e.matched, e.matched_hash, e.compared_steps), (true, Some(HashKind::State), None));
    assert_eq!(e.line(true), "final state hash matches the expected hash (exact mode)\n");
    let e = expect(PARAMS).check(&hashes(), &[]);
    assert_eq!(e.matched_hash, Some(HashKind::Parameters));
    let e = expect(&"ab".repeat(32)).check(&hashes(), &[]);
    assert_eq!((e.matched, e.matched_hash), (false, None));
    assert_eq!(
        e.line(false),
        "final hash differs from the expected hash (the job was not in exact mode)\n"
    );
    let failure = e.failure(&FinalHashes::default()).expect("fails");
    assert!(failure.contains(&"ab".repeat(32)) && failure.contains("state hash none"), "{failure}");

    assert_eq!(parse_hash(&STATE.to_uppercase()), Ok(STATE.to_owned()));
    for bad in ["abc", &format!("{STATE}0"), &STATE.replace('5', "g")] {
        let err = parse_hash(bad).expect_err(bad);
        assert!(err.contains("64 hex digits"), "{err}");
    }
}

/// `--reference DIR` reads an earlier run's summary.json and metrics.jsonl, and says which is
/// missing; `--expect-hash` given too takes the final hash.
#[test]
fn a_reference_directory_is_read_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Reference::load(dir.path()).expect_err("empty directory");
    assert!(format!("{err:#}").contains("no summary.json"), "{err:#}");

    let summary = dir.path().join("summary.json");
    std::fs::write(&summary, r#"{"final_step":2,"final_param_hash":null,"final_state_hash":null}"#)
        .expect("write");
    let err = Reference::load(dir.path()).expect_err("no metrics");
    assert!(format!("{err:#}").contains("no metrics.jsonl"), "{err:#}");
    let metrics = dir.path().join("metrics.jsonl");
    let old = r#"{"step":1,"decision":"commit","loss":2.5,"samples":8}"#;
    let new = format!(
        r#"{{"step":2,"decision":"commit","loss":2.25,"mlm_loss":2.0,"sop_loss":0.25,"grad_norm":1.5,"state_before":"{STATE}"}}"#
    );
    std::fs::write(&metrics, format!("{old}\n{new}\n")).expect("write");
    let err = Reference::load(dir.path()).expect_err("no final hash");
    assert!(format!("{err:#}").contains("no final hash"), "{err:#}");

    std::fs::write(&summary, format!(r#"{{"final_param_hash":"{PARAMS}"}}"#)).expect("write");
    let reference = Reference::load(dir.path()).expect("load");
    assert_eq!(
        reference.final_hash, PARAMS,
        "the parameter hash stands in for a missing state hash"
    );
    assert_eq!(reference.steps.len(), 2);
    assert_eq!(reference.steps[1].grad_norm, Some(1.5));

    let both = Expect::load(Some(STATE), Some(dir.path())).expect("load").expect("asked");
    assert_eq!((both.from, both.hash.as_str()), (ExpectedFrom::ExpectHash, STATE));
    let e = both.check(&hashes(), &reference.steps);
    assert_eq!((e.matched_hash, e.compared_steps), (Some(HashKind::State), Some(2)));
    let only = Expect::load(None, Some(dir.path())).expect("load").expect("asked");
    assert_eq!((only.from, only.hash.as_str()), (ExpectedFrom::Reference, PARAMS));
    assert_eq!(Expect::load(None, None).expect("nothing asked"), None);
}
