//! `train-tokenizer`: a SentencePiece-style Unigram tokenizer trained on the corpus with
//! ALBERT's pipeline as Hugging Face's `AlbertConverter` writes it (quote replacement, NFKD,
//! accent stripping, lowercasing; whitespace split + Metaspace; `[CLS] A [SEP] B [SEP]`
//! template) and its special tokens `<pad>`=0, `<unk>`=1, `[CLS]`=2, `[SEP]`=3, `[MASK]`=4.
//! ALBERT's precompiled SentencePiece character map is not reproduced (it cannot be derived
//! from the corpus); NFKD covers the same compatibility folding.

use std::path::{Path, PathBuf};

use serde_json::json;
use tokenizers::models::ModelWrapper;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper};
use tokenizers::{PreTokenizerWrapper, Tokenizer};

use crate::error::{DataError, Result};
use crate::reader::{Format, ReaderOptions, read_documents};
use crate::tokenizer::AlbertTokenizer;

/// ALBERT's special tokens in id order.
pub const SPECIAL_TOKENS: [&str; 5] = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"];

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainTokenizerConfig {
    /// Vocabulary size, special tokens included.
    pub vocab_size: u32,
    /// Input format (`Auto` sniffs each input).
    pub format: Format,
    /// Reader settings.
    pub reader: ReaderOptions,
    /// Train on at most this many sentences, the first ones read (they are held in memory).
    pub max_sentences: usize,
    /// Where to write `tokenizer.json`.
    pub out: PathBuf,
}

impl TrainTokenizerConfig {
    /// Defaults for `vocab_size` and `out`.
    pub fn new(vocab_size: u32, out: impl Into<PathBuf>) -> Self {
        Self {
            vocab_size,
            format: Format::Auto,
            reader: ReaderOptions::default(),
            max_sentences: 1_000_000,
            out: out.into(),
        }
    }
}

fn config_error(what: &str, e: impl std::fmt::Display) -> DataError {
    DataError::InvalidArgument(format!("cannot build the ALBERT {what}: {e}"))
}

/// Builds an untrained tokenizer with ALBERT's normaliser, pre-tokeniser and decoder.
fn albert_pipeline() -> Result<Tokenizer> {
    let normalizer: NormalizerWrapper = serde_json::from_value(json!({
        "type": "Sequence",
        "normalizers": [
            {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
            {"type": "Replace", "pattern": {"String": "''"}, "content": "\""},
            {"type": "NFKD"},
            {"type": "StripAccents"},
            {"type": "Lowercase"}
        ]
    }))
    .map_err(|e| config_error("normaliser", e))?;
    let metaspace = json!({"type": "Metaspace", "replacement": "\u{2581}",
                           "prepend_scheme": "always", "split": true});
    let pre_tokenizer: PreTokenizerWrapper = serde_json::from_value(json!({
        "type": "Sequence",
        "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace.clone()]
    }))
    .map_err(|e| config_error("pre-tokeniser", e))?;
    let decoder: DecoderWrapper =
        serde_json::from_value(metaspace).map_err(|e| config_error("decoder", e))?;
    let mut tokenizer = Tokenizer::new(ModelWrapper::Unigram(Unigram::default()));
    tokenizer.with_normalizer(Some(normalizer)).map_err(|e| config_error("normaliser", e))?;
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(decoder));
    Ok(tokenizer)
}

fn post_processor(cls: u32, sep: u32) -> Result<PostProcessorWrapper> {
    serde_json::from_value(json!({
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 0}}
        ],
        "pair": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 1}}
        ],
        "special_tokens": {
            "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
            "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}
        }
    }))
    .map_err(|e| config_error("post-processor", e))
}

/// Trains a tokenizer on the sentences of `inputs`, writes it to `config.out` and returns it
/// loaded and validated.
pub fn train_tokenizer(
    inputs: &[PathBuf],
    config: &TrainTokenizerConfig,
) -> Result<AlbertTokenizer> {
    if config.vocab_size <= SPECIAL_TOKENS.len() as u32 {
        return Err(DataError::InvalidArgument(format!(
            "vocab size {} leaves no room beside the {} special tokens",
            config.vocab_size,
            SPECIAL_TOKENS.len()
        )));
    }
    // Read first (up to `max_sentences`), so a bad input fails before any training and an
    // empty corpus is reported as such.
    let mut sentences: Vec<String> = Vec::new();
    'inputs: for input in inputs {
        for doc in read_documents(input, config.format, &config.reader)? {
            for sentence in doc?.sentences {
                if sentences.len() >= config.max_sentences {
                    break 'inputs;
                }
                sentences.push(sentence);
            }
        }
    }
    if sentences.is_empty() {
        return Err(DataError::EmptyCorpus {
            inputs: inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        });
    }
    tracing::info!(
        sentences = sentences.len(),
        vocab_size = config.vocab_size,
        "training tokenizer"
    );
    let specials: Vec<AddedToken> =
        SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
    let trainer = UnigramTrainer::builder()
        .vocab_size(config.vocab_size)
        .special_tokens(specials)
        .unk_token(Some("<unk>".to_owned()))
        .show_progress(false)
        .build()
        .map_err(|e| config_error("trainer", e))?;
    let mut trainer = TrainerWrapper::UnigramTrainer(trainer);
    let mut tokenizer = albert_pipeline()?;
    tokenizer
        .train(&mut trainer, sentences.iter())
        .map_err(|e| DataError::InvalidArgument(format!("tokenizer training failed: {e}")))?;
    for (expected, token) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(expected as u32) {
            return Err(DataError::InvalidArgument(format!(
                "invariant: trained vocabulary puts {token} at {:?}, not {expected}",
                tokenizer.token_to_id(token)
            )));
        }
    }
    tokenizer.with_post_processor(Some(post_processor(2, 3)?));
    write_tokenizer(&tokenizer, &config.out)?;
    AlbertTokenizer::from_file(&config.out)
}

fn write_tokenizer(tokenizer: &Tokenizer, out: &Path) -> Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    tokenizer.save(out, true).map_err(|e| DataError::Tokenizer {
        path: out.to_path_buf(),
        reason: format!("cannot write: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn trains_an_albert_tokenizer_on_a_book() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("tok").join("tokenizer.json");
        let config =
            TrainTokenizerConfig { max_sentences: 2000, ..TrainTokenizerConfig::new(600, &out) };
        let tok = train_tokenizer(&[fixture("persuasion.txt")], &config).expect("trained");
        let s = tok.special();
        assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
        assert!(tok.vocab_size() <= 600 && tok.vocab_size() > 300, "{}", tok.vocab_size());
        let ids = tok.encode("Sir Walter Elliot was vain.").expect("encode");
        assert_eq!(tok.decode(&ids).expect("decode"), "sir walter elliot was vain.");
        assert!(tok.word_starts()[ids[0] as usize]);
    }

    #[test]
    fn bad_input_and_tiny_vocab_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = TrainTokenizerConfig::new(5, dir.path().join("t.json"));
        assert!(train_tokenizer(&[fixture("persuasion.txt")], &config).is_err());
        let tiny = dir.path().join("tiny.txt");
        std::fs::write(&tiny, "Fine line.\n").expect("write");
        let config = TrainTokenizerConfig {
            format: Format::Text,
            ..TrainTokenizerConfig::new(50, dir.path().join("tiny.json"))
        };
        let result = train_tokenizer(&[tiny], &config);
        assert!(result.is_ok(), "{result:?}");
        let blank = dir.path().join("blank.txt");
        std::fs::write(&blank, "\n").expect("write");
        let err = train_tokenizer(&[blank], &config).expect_err("empty");
        assert!(matches!(err, DataError::EmptyCorpus { .. }), "{err}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, b"Fine line.\n\xFF\xFE broken\n").expect("write");
        let config = TrainTokenizerConfig {
            format: Format::Text,
            ..TrainTokenizerConfig::new(100, dir.path().join("t.json"))
        };
        let err = train_tokenizer(&[bad], &config).expect_err("not utf-8");
        assert!(matches!(err, DataError::Encoding { .. }), "{err}");
    }
}
