use super::*;
use crate::reader::plain::BookReader;
use crate::reader::source::DocumentSource;
use crate::test_support::fixture;
use crate::tokenizer::AlbertTokenizer;

const SPECIAL: SpecialTokens = SpecialTokens { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };

/// A document whose token ids increase through the text: sentence `s` holds
/// `1000 + 100 * s + j`, so the order of two segments can be read off their ids.
fn ordered_document(sentences: usize, tokens_each: usize) -> Vec<Vec<u32>> {
    (0..sentences)
        .map(|s| (0..tokens_each).map(|j| (1000 + 100 * s + j) as u32).collect())
        .collect()
}

fn config(max_seq_length: usize) -> ExampleConfig {
    ExampleConfig { max_seq_length, ..ExampleConfig::default() }
}

#[test]
fn layout_token_types_and_sentence_order() {
    let doc = ordered_document(40, 9);
    let mut labels = [0usize; 2];
    for doc_index in 0..200 {
        for ex in create_examples(&doc, doc_index, &config(64), SPECIAL).expect("examples") {
            let ids = &ex.input_ids;
            assert!(ids.len() <= 64);
            assert_eq!(ids[0], SPECIAL.cls);
            assert_eq!(ids[ex.segment_a_len - 1], SPECIAL.sep);
            assert_eq!(ids[ids.len() - 1], SPECIAL.sep);
            let a = &ids[1..ex.segment_a_len - 1];
            let b = &ids[ex.segment_a_len..ids.len() - 1];
            assert!(!a.is_empty() && !b.is_empty());
            let types = ex.token_type_ids();
            assert!(types[..ex.segment_a_len].iter().all(|t| *t == 0));
            assert!(types[ex.segment_a_len..].iter().all(|t| *t == 1));
            let in_order = a.iter().max() < b.iter().min();
            assert_eq!(in_order, ex.sop_label == 0, "label {} for {ids:?}", ex.sop_label);
            labels[ex.sop_label as usize] += 1;
        }
    }
    let swapped = labels[1] as f64 / (labels[0] + labels[1]) as f64;
    // About 1 400 examples: the standard deviation of the fraction is about 0.013.
    assert!((swapped - 0.5).abs() < 0.05, "swapped fraction {swapped}");
}

#[test]
fn short_sequences_are_about_ten_percent_of_documents() {
    // 50 sentences of 10 tokens, max 128: a full-length first example has 128 ids; a short
    // target (uniform in 2..=125) at most 110 gives a shorter one: expect 0.1 * 109/124.
    let doc = ordered_document(50, 10);
    let docs = 3000;
    let short = (0..docs)
        .filter(|i| {
            let examples = create_examples(&doc, *i, &config(128), SPECIAL).expect("examples");
            examples[0].input_ids.len() < 125
        })
        .count();
    let fraction = short as f64 / docs as f64;
    assert!((fraction - 0.088).abs() < 0.025, "short fraction {fraction}");
}

#[test]
fn deterministic_per_document_and_long_sentences_are_split() {
    let doc = ordered_document(30, 7);
    let once = create_examples(&doc, 5, &config(48), SPECIAL).expect("examples");
    assert_eq!(once, create_examples(&doc, 5, &config(48), SPECIAL).expect("examples"));
    assert_ne!(once, create_examples(&doc, 6, &config(48), SPECIAL).expect("examples"));

    let one_long: Vec<Vec<u32>> = vec![(10..1010).collect()];
    let examples = create_examples(&one_long, 0, &config(32), SPECIAL).expect("examples");
    assert_eq!(examples.len(), 1);
    assert!(examples[0].input_ids.len() <= 32);
    assert!(create_examples(&[vec![7]], 0, &config(32), SPECIAL).expect("examples").is_empty());
    assert!(create_examples(&doc, 0, &config(4), SPECIAL).is_err());
}

#[test]
fn real_book_gives_well_formed_pairs() {
    let tok = AlbertTokenizer::from_file(&fixture("albert-8k-tokenizer.json")).expect("tokenizer");
    let path = fixture("persuasion.txt");
    let reader = crate::input::open(&path).expect("open");
    let docs: Vec<_> = BookReader::new(reader, &path, 2000)
        .documents()
        .collect::<crate::Result<_>>()
        .expect("book");
    let cfg = config(128);
    let mut examples = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let tokens = tok.encode_batch(&doc.sentences).expect("encode");
        examples.extend(create_examples(&tokens, i as u64, &cfg, tok.special()).expect("ex"));
    }
    assert!(examples.len() > 700, "{} examples", examples.len());
    let full = examples.iter().filter(|e| e.input_ids.len() >= 120).count();
    assert!(full * 10 > examples.len() * 7, "most examples are nearly full");
    let swapped = examples.iter().filter(|e| e.sop_label == 1).count() as f64;
    assert!((swapped / examples.len() as f64 - 0.5).abs() < 0.06);
    let text = tok.decode(&examples[0].input_ids).expect("decode");
    assert!(text.starts_with("[CLS]") && text.ends_with("[SEP]"), "{text}");
}
