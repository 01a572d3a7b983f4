//! Human-readable views of samples for `albatross data inspect --decode N`.

use crate::masking::MaskedExample;
use crate::tokenizer::AlbertTokenizer;

/// Renders a masked sample as its pieces, with each prediction shown as `[MASK]{original}`
/// (or `piece{original}` for a kept or randomly replaced token) and a `|` between segments.
pub fn render_sample(tokenizer: &AlbertTokenizer, sample: &MaskedExample) -> String {
    let mut out = String::new();
    let mut predictions = sample.masked_positions.iter().zip(&sample.masked_labels).peekable();
    for (position, &id) in sample.input_ids.iter().enumerate() {
        if position > 0 {
            out.push(' ');
            if sample.token_type_ids.get(position) != sample.token_type_ids.get(position - 1) {
                out.push_str("| ");
            }
        }
        out.push_str(&piece(tokenizer, id));
        if let Some((_, &label)) = predictions.next_if(|(p, _)| **p as usize == position) {
            out.push('{');
            out.push_str(&piece(tokenizer, label));
            out.push('}');
        }
    }
    out.push_str("  (sop ");
    out.push_str(if sample.sop_label == 1 { "1)" } else { "0)" });
    out
}

fn piece(tokenizer: &AlbertTokenizer, id: u32) -> String {
    tokenizer.token(id).unwrap_or_else(|| format!("<id {id}>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn shows_masks_with_their_labels_and_the_segment_break() {
        let tok = AlbertTokenizer::from_file(&fixture("albert-8k-tokenizer.json")).expect("load");
        let s = tok.special();
        let a = tok.encode("the cat").expect("encode");
        let b = tok.encode("sat").expect("encode");
        let mut ids = vec![s.cls];
        ids.extend(&a);
        ids.push(s.sep);
        let a_len = ids.len();
        ids.extend(&b);
        ids.push(s.sep);
        let mut masked = ids.clone();
        masked[1] = s.mask;
        let sample = MaskedExample {
            token_type_ids: (0..ids.len()).map(|i| u8::from(i >= a_len)).collect(),
            input_ids: masked,
            masked_positions: vec![1],
            masked_labels: vec![ids[1]],
            sop_label: 1,
        };
        let text = render_sample(&tok, &sample);
        assert!(text.starts_with("[CLS] [MASK]{\u{2581}the}"), "{text}");
        assert!(text.contains("[SEP] | \u{2581}sat"), "{text}");
        assert!(text.ends_with("[SEP]  (sop 1)"), "{text}");
    }
}
