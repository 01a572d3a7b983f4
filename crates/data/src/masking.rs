//! Masked-language-model masking as ALBERT does it, applied when a sample is read so every
//! epoch sees new masks, deterministic in (seed, epoch, sample id): 15 % of tokens, n-gram
//! spans of up to 3 whole words with p(n) ∝ 1/n, 80 % `[MASK]` / 10 % random / 10 % unchanged,
//! at most `max_predictions_per_seq` predictions.

use crate::example::Example;
use crate::tokenizer::SpecialTokens;
use albatross_rng::SplitMix64;

/// Tag mixed into the masking seed so it never collides with other uses of the same seed.
const MASKING_STREAM: u64 = 0x6D61_736B;

/// How tokens are masked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskingConfig {
    /// Fraction of tokens to predict (0.15).
    pub masked_lm_prob: f64,
    /// Longest span, in words (3).
    pub max_ngram: usize,
    /// Cap on predictions per sequence.
    pub max_predictions_per_seq: usize,
    /// Of the chosen tokens, the fraction replaced by `[MASK]` (0.8); half the rest is kept
    /// and half replaced by a random token.
    pub mask_token_prob: f64,
    /// Seed of the run.
    pub seed: u64,
}

impl MaskingConfig {
    /// ALBERT's defaults for sequences of `max_seq_length`: 20 predictions at 512, scaled
    /// linearly for shorter sequences (at least 1).
    pub fn for_seq_len(max_seq_length: usize, seed: u64) -> Self {
        Self {
            masked_lm_prob: 0.15,
            max_ngram: 3,
            max_predictions_per_seq: (max_seq_length * 20).div_ceil(512).max(1),
            mask_token_prob: 0.8,
            seed,
        }
    }
}

/// What masking needs to know about the vocabulary.
#[derive(Debug, Clone, Copy)]
pub struct MaskingVocab<'a> {
    /// The special token ids (never masked, never drawn as random replacements).
    pub special: SpecialTokens,
    /// For each id, whether it starts a word; its length is the vocabulary size.
    pub word_starts: &'a [bool],
}

/// A sample ready for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedExample {
    /// Token ids after masking.
    pub input_ids: Vec<u32>,
    /// 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`.
    pub token_type_ids: Vec<u8>,
    /// Masked positions, ascending.
    pub masked_positions: Vec<u32>,
    /// The original ids at those positions.
    pub masked_labels: Vec<u32>,
    /// Sentence-order label: 0 in order, 1 swapped.
    pub sop_label: u8,
}

/// Masks `example`; the result depends only on (config, epoch, sample id, example, vocab).
pub fn mask_example(
    example: &Example,
    epoch: u64,
    sample_id: u64,
    config: &MaskingConfig,
    vocab: &MaskingVocab<'_>,
) -> MaskedExample {
    let mut rng = SplitMix64::from_parts(&[config.seed, epoch, sample_id, MASKING_STREAM]);
    let words = word_groups(&example.input_ids, vocab);
    let tokens = example.input_ids.len();
    let wanted = (tokens as f64 * config.masked_lm_prob).round() as usize;
    let to_predict = wanted.max(1).min(config.max_predictions_per_seq);

    // Every (start word, n) candidate, shuffled, as ALBERT's `ngram_indexes`.
    let max_ngram = config.max_ngram.max(1);
    let mut starts: Vec<usize> = (0..words.len()).collect();
    rng.shuffle(&mut starts);
    let weights: Vec<f64> = (1..=max_ngram).map(|n| 1.0 / n as f64).collect();
    let mut covered = vec![false; tokens];
    let mut chosen: Vec<usize> = Vec::with_capacity(to_predict);
    for start in starts {
        if chosen.len() >= to_predict {
            break;
        }
        let available = max_ngram.min(words.len() - start);
        let mut n = draw_ngram(&weights[..available], &mut rng);
        let span_len = |n: usize| words[start..start + n].iter().map(|w| w.len()).sum::<usize>();
        while n > 1 && chosen.len() + span_len(n) > to_predict {
            n -= 1;
        }
        if chosen.len() + span_len(n) > to_predict {
            continue;
        }
        let positions = words[start..start + n].iter().flat_map(|w| w.clone());
        if positions.clone().any(|p| covered[p]) {
            continue;
        }
        for p in positions {
            covered[p] = true;
            chosen.push(p);
        }
    }
    chosen.sort_unstable();

    let mut input_ids = example.input_ids.clone();
    let mut masked_labels = Vec::with_capacity(chosen.len());
    for &p in &chosen {
        masked_labels.push(input_ids[p]);
        input_ids[p] = if rng.next_f64() < config.mask_token_prob {
            vocab.special.mask
        } else if rng.next_f64() < 0.5 {
            input_ids[p]
        } else {
            random_token(vocab, &mut rng).unwrap_or(input_ids[p])
        };
    }
    MaskedExample {
        input_ids,
        token_type_ids: example.token_type_ids(),
        masked_positions: chosen.iter().map(|p| *p as u32).collect(),
        masked_labels,
        sop_label: example.sop_label,
    }
}

/// Token positions grouped into whole words; special tokens belong to no word.
fn word_groups(ids: &[u32], vocab: &MaskingVocab<'_>) -> Vec<std::ops::Range<usize>> {
    let mut words: Vec<std::ops::Range<usize>> = Vec::new();
    let mut open = false;
    for (p, &id) in ids.iter().enumerate() {
        if vocab.special.contains(id) {
            open = false;
            continue;
        }
        let starts = vocab.word_starts.get(id as usize).copied().unwrap_or(true);
        match words.last_mut() {
            Some(word) if open && !starts => word.end = p + 1,
            _ => words.push(p..p + 1),
        }
        open = true;
    }
    words
}

/// Draws n in `1..=weights.len()` with probability proportional to `weights[n - 1]`.
fn draw_ngram(weights: &[f64], rng: &mut SplitMix64) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.next_f64() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i + 1;
        }
        x -= w;
    }
    weights.len()
}

/// A uniformly drawn non-special id (None for a vocabulary of specials only).
fn random_token(vocab: &MaskingVocab<'_>, rng: &mut SplitMix64) -> Option<u32> {
    let size = vocab.word_starts.len() as u64;
    (0..64).map(|_| rng.below(size) as u32).find(|id| !vocab.special.contains(*id))
}

#[cfg(test)]
#[path = "masking_test.rs"]
mod tests;
