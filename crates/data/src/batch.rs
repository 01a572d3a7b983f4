//! Collation: masked samples into the padded, row-major arrays the model consumes, with the
//! masked tokens listed once in the order the model gathers them (the worker hands the arrays to
//! the model crate's `MaskedBatch`; this crate stays free of burn).

use crate::error::{DataError, Result};
use crate::masking::MaskedExample;

/// A padded batch of `batch_size` rows of `seq_len` tokens; arrays are row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Rows.
    pub batch_size: usize,
    /// Columns of the token arrays.
    pub seq_len: usize,
    /// `[batch_size, seq_len]` token ids, padded with the pad id.
    pub input_ids: Vec<i64>,
    /// `[batch_size, seq_len]` token types (0/1, 0 on padding).
    pub token_type_ids: Vec<i64>,
    /// `[batch_size, seq_len]` 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// `[M]` flat positions `row * seq_len + s` of the masked tokens, ascending.
    pub mlm_positions: Vec<i64>,
    /// `[M]` the original ids at those positions.
    pub mlm_labels: Vec<i64>,
    /// `[M]` each masked token's weight `1 / m_b`, `m_b` being its own sample's masked tokens,
    /// so that a sample's MLM term is the mean over its own tokens.
    pub mlm_weights: Vec<f32>,
    /// `[batch_size]` SOP labels.
    pub sop_labels: Vec<i64>,
    /// Real (non-padding) tokens.
    pub tokens: u64,
}

/// Pads `samples` to `seq_len` tokens and lists their masked tokens.
///
/// # Errors
/// A sample longer than `seq_len`, or a masked position outside its sample.
pub fn collate(samples: &[MaskedExample], seq_len: usize, pad_id: u32) -> Result<Batch> {
    let rows = samples.len();
    let mut batch = Batch {
        batch_size: rows,
        seq_len,
        input_ids: vec![i64::from(pad_id); rows * seq_len],
        token_type_ids: vec![0; rows * seq_len],
        attention_mask: vec![0; rows * seq_len],
        mlm_positions: Vec::new(),
        mlm_labels: Vec::new(),
        mlm_weights: Vec::new(),
        sop_labels: Vec::with_capacity(rows),
        tokens: 0,
    };
    for (row, sample) in samples.iter().enumerate() {
        if sample.input_ids.len() > seq_len {
            return Err(DataError::InvalidArgument(format!(
                "sample of {} tokens does not fit a batch of {seq_len} tokens",
                sample.input_ids.len()
            )));
        }
        let t = row * seq_len;
        for (i, (&id, &ty)) in sample.input_ids.iter().zip(&sample.token_type_ids).enumerate() {
            batch.input_ids[t + i] = i64::from(id);
            batch.token_type_ids[t + i] = i64::from(ty);
            batch.attention_mask[t + i] = 1;
        }
        batch.tokens += sample.input_ids.len() as u64;
        let masked = masked_tokens(sample, row)?;
        let weight = 1.0 / masked.len().max(1) as f32;
        for (position, label) in masked {
            batch.mlm_positions.push((t + position) as i64);
            batch.mlm_labels.push(i64::from(label));
            batch.mlm_weights.push(weight);
        }
        batch.sop_labels.push(i64::from(sample.sop_label));
    }
    Ok(batch)
}

/// A sample's masked tokens as `(position, label)`, ascending, each position once (the last
/// label given for a position wins, as writing them into a dense label row would).
fn masked_tokens(sample: &MaskedExample, row: usize) -> Result<Vec<(usize, u32)>> {
    let mut masked: Vec<(usize, u32)> = Vec::with_capacity(sample.masked_positions.len());
    for (&position, &label) in sample.masked_positions.iter().zip(&sample.masked_labels) {
        let position = position as usize;
        if position >= sample.input_ids.len() {
            return Err(DataError::InvalidArgument(format!(
                "masked position {position} of row {row} is outside its {} tokens",
                sample.input_ids.len()
            )));
        }
        masked.push((position, label));
    }
    masked.sort_by_key(|&(position, _)| position);
    let mut unique: Vec<(usize, u32)> = Vec::with_capacity(masked.len());
    for (position, label) in masked {
        match unique.last_mut() {
            Some(last) if last.0 == position => last.1 = label,
            _ => unique.push((position, label)),
        }
    }
    Ok(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, masked: &[(u32, u32)], sop: u8) -> MaskedExample {
        MaskedExample {
            input_ids: (0..len as u32).map(|i| 10 + i).collect(),
            token_type_ids: vec![0; len],
            masked_positions: masked.iter().map(|m| m.0).collect(),
            masked_labels: masked.iter().map(|m| m.1).collect(),
            sop_label: sop,
        }
    }

    #[test]
    fn pads_tokens_and_lists_masked_tokens_in_row_major_order() {
        let a = sample(3, &[(1, 77)], 0);
        let b = sample(5, &[(4, 72), (1, 70), (2, 71)], 1);
        let batch = collate(&[a, b], 5, 0).expect("fits");
        assert_eq!(&batch.input_ids[..5], &[10, 11, 12, 0, 0]);
        assert_eq!(&batch.token_type_ids[..5], &[0, 0, 0, 0, 0]);
        assert_eq!(&batch.attention_mask[..5], &[1, 1, 1, 0, 0]);
        assert_eq!(batch.mlm_positions, vec![1, 6, 7, 9]);
        assert_eq!(batch.mlm_labels, vec![77, 70, 71, 72]);
        assert_eq!(batch.mlm_weights, vec![1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(batch.sop_labels, vec![0, 1]);
        assert_eq!(batch.tokens, 8);
        // Each sample's weights sum to one: its MLM term is the mean over its own tokens.
        assert!((batch.mlm_weights[1..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_repeated_position_counts_once_and_bad_samples_are_named() {
        let batch = collate(&[sample(4, &[(2, 9), (2, 8)], 0)], 4, 0).expect("fits");
        assert_eq!((batch.mlm_positions, batch.mlm_labels), (vec![2], vec![8]));
        assert_eq!(batch.mlm_weights, vec![1.0]);
        let none = collate(&[sample(4, &[], 1)], 4, 0).expect("fits");
        assert!(none.mlm_positions.is_empty() && none.mlm_weights.is_empty());
        let long = collate(&[sample(5, &[], 0)], 4, 0).expect_err("too long");
        assert!(long.to_string().contains("5 tokens"), "{long}");
        let outside = collate(&[sample(3, &[(3, 1)], 0)], 4, 0).expect_err("outside");
        assert!(outside.to_string().contains("masked position 3 of row 0"), "{outside}");
    }
}
