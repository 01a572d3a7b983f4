use burn::module::Module;

use crate::DefaultBackend;
use crate::albert::AlbertForPreTraining;
use crate::albert::tests::{Perturb, tiny, tiny_batch};
use crate::batch::{HostBatch, IGNORE_INDEX};
use crate::error::ModelError;

type B = DefaultBackend;

/// Naive f64 cross-entropy of one row.
fn naive_ce(row: &[f32], label: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + row.iter().map(|&v| (f64::from(v) - max).exp()).sum::<f64>().ln();
    lse - f64::from(row[label])
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// The reference uses the full `[B, S, V]` logits and the host labels (-100 skipped), so it
/// also checks that masked positions and labels line up. Tolerance 1e-5 absolute on ~7.
#[test]
fn losses_and_accuracy_match_naive_reference_over_full_logits() {
    let config = tiny();
    let device = Default::default();
    let model = AlbertForPreTraining::<B>::init(&config, 11, &device)
        .expect("init")
        .map(&mut Perturb::default());
    let host = tiny_batch();
    let batch = host.to_device::<B>(&config, &device).expect("batch");
    let full = model.forward(&batch.input);
    let logits = full.prediction_logits.into_data().to_vec::<f32>().expect("f32");
    let sop = full.sop_logits.into_data().to_vec::<f32>().expect("f32");
    let v = config.vocab_size;
    let (mut mlm_sum, mut masked, mut correct) = (0.0, 0, 0);
    for (pos, &label) in host.labels.iter().enumerate() {
        if label == IGNORE_INDEX {
            continue;
        }
        let row = &logits[pos * v..(pos + 1) * v];
        mlm_sum += naive_ce(row, label as usize);
        masked += 1;
        correct += usize::from(argmax(row) == label as usize);
    }
    let mlm_ref = mlm_sum / masked as f64;
    let sop_ref = (0..2)
        .map(|b| naive_ce(&sop[b * 2..b * 2 + 2], host.sentence_order_label[b] as usize))
        .sum::<f64>()
        / 2.0;
    let sop_correct = (0..2)
        .filter(|&b| argmax(&sop[b * 2..b * 2 + 2]) == host.sentence_order_label[b] as usize)
        .count();

    let report = model.pretraining_loss(&batch).report();
    assert_eq!(report.masked_tokens, 4);
    assert!((f64::from(report.mlm_loss) - mlm_ref).abs() < 1e-5, "{report:?} vs {mlm_ref}");
    assert!((f64::from(report.sop_loss) - sop_ref).abs() < 1e-5, "{report:?} vs {sop_ref}");
    assert!((f64::from(report.loss) - (mlm_ref + sop_ref)).abs() < 1e-5);
    assert_eq!(report.mlm_accuracy, correct as f32 / 4.0);
    assert_eq!(report.sop_accuracy, sop_correct as f32 / 2.0);
    assert!(mlm_ref > 1.0, "perturbed model should not be confident: {mlm_ref}");
}

#[test]
fn batch_without_masked_tokens_has_zero_mlm_loss() {
    let config = tiny();
    let device = Default::default();
    let model = AlbertForPreTraining::<B>::init(&config, 2, &device).expect("init");
    let host = HostBatch { labels: vec![IGNORE_INDEX; 16], ..tiny_batch() };
    let report =
        model.pretraining_loss(&host.to_device::<B>(&config, &device).expect("batch")).report();
    assert_eq!(report.masked_tokens, 0);
    assert_eq!(report.mlm_loss, 0.0);
    assert_eq!(report.mlm_accuracy, 0.0);
    assert_eq!(report.loss, report.sop_loss);
    // An untrained SOP head is near chance: ln 2 ≈ 0.693.
    assert!((report.sop_loss - std::f32::consts::LN_2).abs() < 0.05, "{report:?}");
}

#[test]
fn bad_batches_are_rejected_naming_the_field() {
    let config = tiny();
    let cases: Vec<(HostBatch, &str)> = vec![
        (HostBatch { input_ids: vec![1; 15], ..tiny_batch() }, "input_ids"),
        (HostBatch { sentence_order_label: vec![0], ..tiny_batch() }, "sentence_order_label"),
        (
            HostBatch {
                input_ids: {
                    let mut ids = tiny_batch().input_ids;
                    ids[3] = 1000;
                    ids
                },
                ..tiny_batch()
            },
            "value 1000 at index 3",
        ),
        (HostBatch { sentence_order_label: vec![0, 2], ..tiny_batch() }, "sentence_order_label"),
        (HostBatch { token_type_ids: vec![2; 16], ..tiny_batch() }, "token_type_ids"),
    ];
    for (batch, needle) in cases {
        let err = batch.validate(&config).expect_err("rejected");
        assert!(
            matches!(err, ModelError::WrongSize { .. } | ModelError::InvalidInput { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(needle), "{err} should mention {needle}");
    }
}
