//! Pretraining examples as ALBERT's `create_pretraining_data.py` builds them: consecutive
//! sentences of one document are packed up to a target length, cut into segments A and B, and
//! for sentence-order prediction B follows A (label 0) or the two are swapped (label 1).
//! Masking is not done here; it happens when a sample is read ([`crate::masking`]).

use crate::error::{DataError, Result};
use crate::tokenizer::SpecialTokens;
use albatross_rng::SplitMix64;

/// How examples are built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExampleConfig {
    /// Length of `[CLS] A [SEP] B [SEP]` at most.
    pub max_seq_length: usize,
    /// Probability that a document's target length is drawn uniformly in `[2, max]` (0.1).
    pub short_seq_prob: f64,
    /// Probability that A and B are swapped (SOP label 1); 0.5.
    pub swap_prob: f64,
    /// Seed; together with the document index it fixes the examples of a document.
    pub seed: u64,
}

impl Default for ExampleConfig {
    fn default() -> Self {
        Self { max_seq_length: 512, short_seq_prob: 0.1, swap_prob: 0.5, seed: 12345 }
    }
}

/// One unmasked example: `[CLS] A [SEP] B [SEP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids including `[CLS]` and both `[SEP]`s.
    pub input_ids: Vec<u32>,
    /// Length of `[CLS] A [SEP]`: positions from here on have token type 1.
    pub segment_a_len: usize,
    /// 0 when B follows A in the document, 1 when they were swapped.
    pub sop_label: u8,
}

impl Example {
    /// Token types: 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`.
    pub fn token_type_ids(&self) -> Vec<u8> {
        (0..self.input_ids.len()).map(|i| u8::from(i >= self.segment_a_len)).collect()
    }
}

/// Builds the examples of one tokenised document (a list of tokenised sentences).
/// `doc_index` seeds the document's random choices, so documents can be processed in parallel
/// and in any order with the same result.
pub fn create_examples(
    document: &[Vec<u32>],
    doc_index: u64,
    config: &ExampleConfig,
    special: SpecialTokens,
) -> Result<Vec<Example>> {
    if config.max_seq_length < 5 {
        return Err(DataError::InvalidArgument(format!(
            "max_seq_length {} is too short for [CLS] A [SEP] B [SEP]",
            config.max_seq_length
        )));
    }
    let mut rng = SplitMix64::from_parts(&[config.seed, doc_index]);
    let max_tokens = config.max_seq_length - 3;
    let target = if rng.next_f64() < config.short_seq_prob {
        rng.range_inclusive(2, max_tokens)
    } else {
        max_tokens
    };
    let mut examples = Vec::new();
    let mut chunk: Vec<&[u32]> = Vec::new();
    let mut chunk_len = 0;
    let sentences: Vec<&[u32]> =
        document.iter().map(Vec::as_slice).filter(|s| !s.is_empty()).collect();
    for (i, sentence) in sentences.iter().enumerate() {
        chunk.push(sentence);
        chunk_len += sentence.len();
        if i + 1 == sentences.len() || chunk_len >= target {
            if let Some(example) = pair_from_chunk(&chunk, max_tokens, config, special, &mut rng) {
                examples.push(example);
            }
            chunk.clear();
            chunk_len = 0;
        }
    }
    Ok(examples)
}

fn pair_from_chunk(
    chunk: &[&[u32]],
    max_tokens: usize,
    config: &ExampleConfig,
    special: SpecialTokens,
    rng: &mut SplitMix64,
) -> Option<Example> {
    let (mut a, mut b): (Vec<u32>, Vec<u32>) = if chunk.len() >= 2 {
        let a_end = rng.range_inclusive(1, chunk.len() - 1);
        (chunk[..a_end].concat(), chunk[a_end..].concat())
    } else {
        // One long sentence: ALBERT would borrow B from another document; SOP needs both
        // segments from this one, so the sentence is cut at a random token instead.
        let only = chunk.first()?;
        if only.len() < 2 {
            return None;
        }
        let cut = rng.range_inclusive(1, only.len() - 1);
        (only[..cut].to_vec(), only[cut..].to_vec())
    };
    let swapped = rng.next_f64() < config.swap_prob;
    if swapped {
        std::mem::swap(&mut a, &mut b);
    }
    truncate_pair(&mut a, &mut b, max_tokens, rng);
    let mut input_ids = Vec::with_capacity(a.len() + b.len() + 3);
    input_ids.push(special.cls);
    input_ids.extend_from_slice(&a);
    input_ids.push(special.sep);
    let segment_a_len = input_ids.len();
    input_ids.extend_from_slice(&b);
    input_ids.push(special.sep);
    Some(Example { input_ids, segment_a_len, sop_label: u8::from(swapped) })
}

/// Trims the longer segment, from the front or the back at random, until both fit.
fn truncate_pair(a: &mut Vec<u32>, b: &mut Vec<u32>, max_tokens: usize, rng: &mut SplitMix64) {
    let (mut a_range, mut b_range) = (0..a.len(), 0..b.len());
    while a_range.len() + b_range.len() > max_tokens {
        let longer = if a_range.len() > b_range.len() { &mut a_range } else { &mut b_range };
        if rng.next_f64() < 0.5 {
            longer.start += 1;
        } else {
            longer.end -= 1;
        }
    }
    a.truncate(a_range.end);
    a.drain(..a_range.start);
    b.truncate(b_range.end);
    b.drain(..b_range.start);
}

#[cfg(test)]
#[path = "example_test.rs"]
mod tests;
