//! Collation: masked samples into padded, row-major arrays ready to become tensors (the worker
//! wraps them in burn tensors; this crate stays free of burn).

use crate::error::{DataError, Result};
use crate::masking::MaskedExample;

/// A padded batch of `batch_size` rows; arrays are row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Rows.
    pub batch_size: usize,
    /// Columns of the token arrays.
    pub seq_len: usize,
    /// Columns of the prediction arrays.
    pub max_predictions: usize,
    /// `[batch_size, seq_len]` token ids, padded with the pad id.
    pub input_ids: Vec<i64>,
    /// `[batch_size, seq_len]` token types (0/1, 0 on padding).
    pub token_type_ids: Vec<i64>,
    /// `[batch_size, seq_len]` 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// `[batch_size, max_predictions]` masked positions (0 on padding).
    pub masked_positions: Vec<i64>,
    /// `[batch_size, max_predictions]` original ids at those positions (0 on padding).
    pub masked_labels: Vec<i64>,
    /// `[batch_size, max_predictions]` 1.0 for real predictions, 0.0 for padding.
    pub masked_weights: Vec<f32>,
    /// `[batch_size]` SOP labels.
    pub sop_labels: Vec<i64>,
}

/// Pads `samples` to `seq_len` tokens and `max_predictions` predictions.
pub fn collate(
    samples: &[MaskedExample],
    seq_len: usize,
    max_predictions: usize,
    pad_id: u32,
) -> Result<Batch> {
    let rows = samples.len();
    let mut batch = Batch {
        batch_size: rows,
        seq_len,
        max_predictions,
        input_ids: vec![i64::from(pad_id); rows * seq_len],
        token_type_ids: vec![0; rows * seq_len],
        attention_mask: vec![0; rows * seq_len],
        masked_positions: vec![0; rows * max_predictions],
        masked_labels: vec![0; rows * max_predictions],
        masked_weights: vec![0.0; rows * max_predictions],
        sop_labels: Vec::with_capacity(rows),
    };
    for (row, sample) in samples.iter().enumerate() {
        if sample.input_ids.len() > seq_len || sample.masked_positions.len() > max_predictions {
            return Err(DataError::InvalidArgument(format!(
                "sample of {} tokens and {} predictions does not fit a batch of {seq_len} tokens \
                 and {max_predictions} predictions",
                sample.input_ids.len(),
                sample.masked_positions.len()
            )));
        }
        let t = row * seq_len;
        for (i, (&id, &ty)) in sample.input_ids.iter().zip(&sample.token_type_ids).enumerate() {
            batch.input_ids[t + i] = i64::from(id);
            batch.token_type_ids[t + i] = i64::from(ty);
            batch.attention_mask[t + i] = 1;
        }
        let p = row * max_predictions;
        for (i, (&pos, &label)) in
            sample.masked_positions.iter().zip(&sample.masked_labels).enumerate()
        {
            batch.masked_positions[p + i] = i64::from(pos);
            batch.masked_labels[p + i] = i64::from(label);
            batch.masked_weights[p + i] = 1.0;
        }
        batch.sop_labels.push(i64::from(sample.sop_label));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_tokens_and_predictions() {
        let sample = MaskedExample {
            input_ids: vec![2, 4, 3, 9, 3],
            token_type_ids: vec![0, 0, 0, 1, 1],
            masked_positions: vec![1],
            masked_labels: vec![17],
            sop_label: 1,
        };
        let batch = collate(&[sample.clone(), sample.clone()], 8, 3, 0).expect("fits");
        assert_eq!(&batch.input_ids[8..], &[2, 4, 3, 9, 3, 0, 0, 0]);
        assert_eq!(&batch.token_type_ids[..8], &[0, 0, 0, 1, 1, 0, 0, 0]);
        assert_eq!(&batch.attention_mask[..8], &[1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(&batch.masked_positions[..3], &[1, 0, 0]);
        assert_eq!(&batch.masked_labels[3..], &[17, 0, 0]);
        assert_eq!(&batch.masked_weights[..3], &[1.0, 0.0, 0.0]);
        assert_eq!(batch.sop_labels, vec![1, 1]);
        assert!(collate(&[sample], 4, 3, 0).is_err());
    }
}
