use super::*;
use crate::dataset::Dataset;
use crate::masking::{MaskingConfig, MaskingVocab};
use crate::sampler::EpochSampler;
use crate::test_support::fixture;

fn tokenizer() -> AlbertTokenizer {
    AlbertTokenizer::from_file(&fixture("albert-8k-tokenizer.json")).expect("tokenizer")
}

fn config(out: &Path) -> PrepareConfig {
    PrepareConfig { examples_per_shard: 400, ..PrepareConfig::new(out, 128) }
}

#[test]
fn prepares_verifies_and_is_byte_identical_on_rerun() {
    let tok = tokenizer();
    let inputs = vec![fixture("enwiki-sample.wikiextractor.jsonl")];
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut calls = 0u64;
    let summary = prepare(&inputs, &tok, &config(&a), &mut |_| calls += 1).expect("prepare");
    // Another thread count and batch size must not change a byte.
    let other = PrepareConfig { threads: 1, batch_documents: 5, ..config(&b) };
    prepare(&inputs, &tok, &other, &mut |_| {}).expect("prepare again");

    let m = &summary.manifest;
    assert_eq!(calls, 12, "one progress call per document");
    assert_eq!(m.stats.documents, 12);
    assert_eq!(m.sources[0].format, "wikiextractor-json");
    assert!(m.shards.len() >= 2, "{} shards", m.shards.len());
    assert_eq!(m.shards.iter().map(|s| s.examples).sum::<u64>(), m.stats.examples);
    let swapped = m.stats.swapped as f64 / m.stats.examples as f64;
    assert!((swapped - 0.5).abs() < 0.06, "swapped {swapped}");
    assert!(summary.tokens_per_s() > 0.0 && summary.input_mb_per_s() > 0.0);

    let mut files: Vec<String> = m.shards.iter().map(|s| s.file.clone()).collect();
    files.extend(["manifest.json".to_owned(), "tokenizer.json".to_owned()]);
    for file in &files {
        let x = std::fs::read(a.join(file)).expect("a");
        let y = std::fs::read(b.join(file)).expect("b");
        assert!(x == y, "{file} differs between runs");
    }

    let data = Dataset::open(&a).expect("verified dataset");
    assert_eq!(data.len(), m.stats.examples);
    data.check_tokenizer(&tok).expect("same tokenizer");
    let stored = data.load_tokenizer().expect("tokenizer stored with the dataset");
    assert_eq!(stored.fingerprint(), tok.fingerprint());
    let last = data.example(data.len() - 1).expect("last sample");
    assert_eq!(last.input_ids.first(), Some(&tok.special().cls));
    assert!(data.example(data.len()).is_err());

    // A training step's samples: the first 16 positions of epoch 0, masked on read.
    let masking = MaskingConfig::for_seq_len(128, 7);
    let vocab = MaskingVocab { special: tok.special(), word_starts: tok.word_starts() };
    let sampler = EpochSampler::new(data.len(), 7).expect("sampler");
    let mut rows = Vec::new();
    for id in sampler.ids(0, 0..16).expect("ids") {
        rows.push(data.sample(id, 0, &masking, &vocab).expect("sample"));
    }
    assert_eq!(rows.len(), 16);
    let again = data.sample(sampler.sample_at(0, 0).expect("id"), 0, &masking, &vocab);
    assert_eq!(rows[0], again.expect("sample"));
    let text = tok.decode(&rows[0].input_ids).expect("decode");
    assert!(text.contains("[MASK]") || rows[0].masked_positions.len() <= 5, "{text}");
}

#[test]
fn altered_shard_or_empty_input_is_an_error() {
    let tok = tokenizer();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = vec![fixture("enwiki-sample.wikiextractor.jsonl")];
    let out = dir.path().join("ds");
    let summary = prepare(&inputs, &tok, &config(&out), &mut |_| {}).expect("prepare");
    let victim = out.join(&summary.manifest.shards[1].file);
    let mut bytes = std::fs::read(&victim).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&victim, &bytes).expect("write");
    let err = Dataset::open(&out).expect_err("altered shard");
    assert!(err.to_string().contains("shard-00001.bin"), "{err}");

    // A tokenizer already in the output directory (train-tokenizer wrote it there) is kept.
    let own = dir.path().join("own");
    std::fs::create_dir_all(&own).expect("mkdir");
    std::fs::copy(fixture("albert-8k-tokenizer.json"), own.join("tokenizer.json")).expect("copy");
    let in_place = AlbertTokenizer::from_file(&own.join("tokenizer.json")).expect("load");
    prepare(&inputs, &in_place, &config(&own), &mut |_| {}).expect("prepare in place");
    let data = Dataset::open(&own).expect("open");
    data.load_tokenizer().expect("tokenizer intact");

    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "\n\n").expect("write");
    let cfg = PrepareConfig { format: Format::Text, ..config(&dir.path().join("empty")) };
    let err = prepare(&[blank], &tok, &cfg, &mut |_| {}).expect_err("empty corpus");
    assert!(matches!(err, DataError::EmptyCorpus { .. }), "{err}");
}
