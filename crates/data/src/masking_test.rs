use super::*;
use crate::tokenizer::SpecialTokens;

const SPECIAL: SpecialTokens = SpecialTokens { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };

/// A 1000-token vocabulary where even ids start a word (so words are 1 or more pieces).
fn word_starts() -> Vec<bool> {
    (0..1000u32).map(|id| id % 2 == 0 || id < 5).collect()
}

fn example(len: usize, seed: u64) -> Example {
    let mut rng = SplitMix64::from_parts(&[seed]);
    let mut ids = vec![SPECIAL.cls];
    ids.extend((0..len - 3).map(|_| 5 + rng.below(995) as u32));
    let a_len = len / 2;
    ids.insert(a_len - 1, SPECIAL.sep);
    ids.push(SPECIAL.sep);
    Example { input_ids: ids, segment_a_len: a_len, sop_label: 1 }
}

#[test]
fn rates_match_albert_targets() {
    let starts = word_starts();
    let vocab = MaskingVocab { special: SPECIAL, word_starts: &starts };
    let config =
        MaskingConfig { max_predictions_per_seq: 1000, ..MaskingConfig::for_seq_len(512, 3) };
    let (mut masked, mut total, mut as_mask, mut kept) = (0usize, 0usize, 0usize, 0usize);
    for id in 0..200 {
        let ex = example(512, id);
        let out = mask_example(&ex, 0, id, &config, &vocab);
        assert_eq!(out.input_ids.len(), ex.input_ids.len());
        assert_eq!(out.sop_label, 1);
        assert_eq!(out.token_type_ids, ex.token_type_ids());
        total += ex.input_ids.len();
        masked += out.masked_positions.len();
        for (p, label) in out.masked_positions.iter().zip(&out.masked_labels) {
            let p = *p as usize;
            assert_eq!(ex.input_ids[p], *label);
            assert!(!SPECIAL.contains(*label), "special token masked");
            if out.input_ids[p] == SPECIAL.mask {
                as_mask += 1;
            } else if out.input_ids[p] == *label {
                kept += 1;
            }
        }
        // Whole words: a word is either entirely masked or not at all.
        let groups = word_groups(&ex.input_ids, &vocab);
        for word in groups {
            let hits = word.clone().filter(|p| out.masked_positions.contains(&(*p as u32))).count();
            assert!(hits == 0 || hits == word.len(), "word {word:?} split");
        }
    }
    let rate = masked as f64 / total as f64;
    assert!((0.14..=0.151).contains(&rate), "masked rate {rate}");
    let mask_rate = as_mask as f64 / masked as f64;
    let kept_rate = kept as f64 / masked as f64;
    // About 15 000 masked tokens: standard deviations are about 0.003.
    assert!((mask_rate - 0.8).abs() < 0.015, "[MASK] rate {mask_rate}");
    assert!((kept_rate - 0.1).abs() < 0.015, "unchanged rate {kept_rate}");
}

#[test]
fn ngram_lengths_follow_one_over_n() {
    let mut rng = SplitMix64::from_parts(&[5]);
    let weights = [1.0, 0.5, 1.0 / 3.0];
    let mut counts = [0usize; 3];
    let draws = 110_000;
    for _ in 0..draws {
        counts[draw_ngram(&weights, &mut rng) - 1] += 1;
    }
    for (n, expected) in [6.0 / 11.0, 3.0 / 11.0, 2.0 / 11.0].iter().enumerate() {
        let got = counts[n] as f64 / draws as f64;
        assert!((got - expected).abs() < 0.006, "n = {}: {got} vs {expected}", n + 1);
    }
}

#[test]
fn capped_deterministic_and_fresh_each_epoch() {
    let starts = word_starts();
    let vocab = MaskingVocab { special: SPECIAL, word_starts: &starts };
    let config = MaskingConfig::for_seq_len(512, 9);
    assert_eq!(config.max_predictions_per_seq, 20);
    assert_eq!(MaskingConfig::for_seq_len(128, 9).max_predictions_per_seq, 5);
    let ex = example(512, 1);
    let a = mask_example(&ex, 2, 77, &config, &vocab);
    assert!((17..=20).contains(&a.masked_positions.len()), "{}", a.masked_positions.len());
    assert!(a.masked_positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(a, mask_example(&ex, 2, 77, &config, &vocab));
    assert_ne!(a, mask_example(&ex, 3, 77, &config, &vocab));
    assert_ne!(a, mask_example(&ex, 2, 78, &config, &vocab));
    let short = example(8, 2);
    let out = mask_example(&short, 0, 0, &config, &vocab);
    assert_eq!(out.masked_positions.len(), 1, "at least one prediction");
}
