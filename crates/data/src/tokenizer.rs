//! The ALBERT tokenizer: a Hugging Face `tokenizer.json` (SentencePiece-Unigram conversion)
//! loaded with the `tokenizers` crate, checked for ALBERT's special tokens, with the per-id
//! "starts a word" table that whole-word masking needs, and a word cache that makes corpus
//! preparation several times faster.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// SentencePiece's word-boundary mark, which starts every word-initial piece.
const WORD_START: char = '\u{2581}';

/// ALBERT's special tokens, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<pad>`
    pub pad: u32,
    /// `<unk>`
    pub unk: u32,
    /// `[CLS]`
    pub cls: u32,
    /// `[SEP]`
    pub sep: u32,
    /// `[MASK]`
    pub mask: u32,
}

impl SpecialTokens {
    /// Whether `id` is one of them.
    pub fn contains(&self, id: u32) -> bool {
        [self.pad, self.unk, self.cls, self.sep, self.mask].contains(&id)
    }
}

/// A loaded, validated ALBERT tokenizer.
#[derive(Debug)]
pub struct AlbertTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    special: SpecialTokens,
    word_start: Vec<bool>,
    fingerprint: String,
    /// Present when encoding word by word gives the same ids as encoding whole texts.
    word_cache: Option<WordCache>,
}

impl AlbertTokenizer {
    /// Loads `path`. A SentencePiece `.model` file is refused with the command that converts
    /// it; a tokenizer lacking `<pad>`, `<unk>`, `[CLS]`, `[SEP]` or `[MASK]` is refused by name.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let is_model_ext = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("model"));
        if is_model_ext || first.is_some_and(|b| b != b'{') {
            return Err(DataError::SentencePieceModel {
                path: path.to_path_buf(),
                path_display: path.display().to_string(),
            });
        }
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| DataError::Tokenizer {
                path: path.to_path_buf(),
                reason: format!("not a valid tokenizer.json: {e}"),
            })?;
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| DataError::Tokenizer {
                path: path.to_path_buf(),
                reason: format!("special token {token} is missing from the vocabulary"),
            })
        };
        let special = SpecialTokens {
            pad: id("<pad>")?,
            unk: id("<unk>")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            mask: id("[MASK]")?,
        };
        let vocab_size = inner.get_vocab_size(true);
        let mut word_start = vec![false; vocab_size];
        for (token, id) in inner.get_vocab(true) {
            if let Some(slot) = word_start.get_mut(id as usize) {
                *slot = token.starts_with(WORD_START) || special.contains(id);
            }
        }
        let fingerprint = hex::encode(Sha256::digest(&bytes));
        let mut tokenizer = Self {
            inner,
            path: path.to_path_buf(),
            special,
            word_start,
            fingerprint,
            word_cache: None,
        };
        tokenizer.word_cache = tokenizer.word_cache_if_exact(&bytes);
        tracing::info!(
            path = %path.display(),
            vocab_size,
            fingerprint = %tokenizer.fingerprint,
            word_cache = tokenizer.word_cache.is_some(),
            "tokenizer loaded"
        );
        Ok(tokenizer)
    }

    /// A word cache, if this tokenizer splits its input at spaces before the model sees it
    /// (ALBERT's `WhitespaceSplit` + `Metaspace { prepend_scheme: always, split: true }`), so
    /// that the ids of a text are the ids of its space-separated words, concatenated. The
    /// Hugging Face pipeline (normaliser with alignment tracking, pre-tokeniser, Unigram,
    /// `Encoding` with token strings and offsets) costs far more than the model's choice per
    /// word, and a corpus repeats its words. The property is checked on a probe text too.
    fn word_cache_if_exact(&self, json: &[u8]) -> Option<WordCache> {
        let parsed: serde_json::Value = serde_json::from_slice(json).ok()?;
        if !splits_at_spaces(&parsed["pre_tokenizer"]) {
            tracing::debug!("tokenizer does not split at spaces: no word cache");
            return None;
        }
        let cache = WordCache::new();
        let by_word = self.encode_by_word(WORD_CACHE_PROBE, &cache).ok()?;
        let whole = self.encode_whole(WORD_CACHE_PROBE).ok()?;
        if by_word != whole {
            tracing::warn!("word-by-word encoding differs from whole-text encoding: no word cache");
            return None;
        }
        // The probe's words are correct entries: keep them.
        Some(cache)
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The special token ids.
    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.word_start.len()
    }

    /// SHA-256 of the `tokenizer.json` bytes, hex: recorded in manifests and checkpoints.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// For each id, whether its piece starts a word (whole-word masking groups on this).
    pub fn word_starts(&self) -> &[bool] {
        &self.word_start
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.word_cache {
            Some(cache) => self.encode_by_word(text, cache),
            None => self.encode_whole(text),
        }
    }

    /// Token ids of several texts (in parallel), without special tokens.
    pub fn encode_batch(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        texts.par_iter().map(|text| self.encode(text)).collect()
    }

    /// The whole Hugging Face pipeline on `text`.
    fn encode_whole(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| self.error(format!("cannot encode text: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `text` word by word (split at ASCII spaces, which every normaliser of this kind leaves
    /// alone), each word from the cache or through the whole pipeline.
    fn encode_by_word(&self, text: &str, cache: &WordCache) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        for word in text.split(' ').filter(|word| !word.is_empty()) {
            if !cache.extend_with(word, &mut ids) {
                let word_ids = self.encode_whole(word)?;
                ids.extend_from_slice(&word_ids);
                cache.insert(word, word_ids);
            }
        }
        Ok(ids)
    }

    /// Text of `ids`, special tokens kept (useful to inspect examples).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| self.error(format!("cannot decode ids: {e}")))
    }

    /// The piece of one id.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    fn error(&self, reason: String) -> DataError {
        DataError::Tokenizer { path: self.path.clone(), reason }
    }
}

/// Tricky text for the word-cache check: quotes the normaliser rewrites, accents, case,
/// compatibility spaces, runs of spaces, digits and punctuation.
const WORD_CACHE_PROBE: &str = "  Hello  ``World'' naïve CAFÉ İstanbul \u{3000}wide\u{a0}nbsp \
     tab\there x\u{2002}y 1,000.50 (e.g.) — «quoted» [MASK] Straße ﬁne ① ";

/// Words longer than this are not cached (rare, and they would bloat the cache).
const WORD_CACHE_MAX_WORD_BYTES: usize = 64;
/// Words cached per shard at most; then new words go through the pipeline uncached. 16
/// shards × 32 768 words ≈ 30 MB at worst, enough for a language's frequent words.
const WORD_CACHE_SHARD_WORDS: usize = 1 << 15;
const WORD_CACHE_SHARDS: usize = 16;

/// One shard of the word cache: word → its ids. foldhash rather than SipHash: hashing short
/// words is a large share of a cache hit.
type WordShard = Mutex<HashMap<Box<str>, Box<[u32]>, RandomState>>;

/// Ids per word, shared by the preparation threads (sharded so they rarely contend).
#[derive(Debug)]
struct WordCache {
    hasher: RandomState,
    shards: Vec<WordShard>,
}

impl WordCache {
    fn new() -> Self {
        Self {
            hasher: RandomState::default(),
            shards: (0..WORD_CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
        }
    }

    fn shard(&self, word: &str) -> &WordShard {
        let index = self.hasher.hash_one(word) as usize % self.shards.len();
        &self.shards[index]
    }

    /// Appends the cached ids of `word` to `ids`; false when it is not cached.
    fn extend_with(&self, word: &str, ids: &mut Vec<u32>) -> bool {
        let shard = self.shard(word).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match shard.get(word) {
            Some(cached) => {
                ids.extend_from_slice(cached);
                true
            }
            None => false,
        }
    }

    fn insert(&self, word: &str, ids: Vec<u32>) {
        if word.len() > WORD_CACHE_MAX_WORD_BYTES {
            return;
        }
        let mut shard = self.shard(word).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.len() < WORD_CACHE_SHARD_WORDS {
            shard.insert(word.into(), ids.into_boxed_slice());
        }
    }
}

/// Whether a `pre_tokenizer` (JSON) splits its input at spaces before the model sees it.
fn splits_at_spaces(pre_tokenizer: &serde_json::Value) -> bool {
    let is_splitting_metaspace = |value: &serde_json::Value| {
        value["type"] == "Metaspace"
            && value["split"] == true
            && value["prepend_scheme"] == "always"
    };
    match pre_tokenizer["type"].as_str() {
        Some("Metaspace") => is_splitting_metaspace(pre_tokenizer),
        Some("Sequence") => match pre_tokenizer["pretokenizers"].as_array().map(Vec::as_slice) {
            Some([single]) => is_splitting_metaspace(single),
            Some([first, second]) => {
                first["type"] == "WhitespaceSplit" && is_splitting_metaspace(second)
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn loads_albert_tokenizer_with_specials_and_word_starts() {
        let tok = AlbertTokenizer::from_file(&fixture("albert-8k-tokenizer.json")).expect("load");
        let s = tok.special();
        assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
        assert_eq!(tok.vocab_size(), 8000);
        assert_eq!(tok.fingerprint().len(), 64);
        let ids = tok.encode("Anarchism is a political philosophy.").expect("encode");
        assert!(ids.len() >= 5, "{ids:?}");
        assert!(tok.word_starts()[ids[0] as usize], "first piece starts a word");
        assert!(ids.iter().all(|id| !s.contains(*id)), "no specials without asking");
        // ALBERT lowercases: the round trip gives the normalised text.
        assert_eq!(tok.decode(&ids).expect("decode"), "anarchism is a political philosophy.");
        let batch = tok.encode_batch(&["one two".to_owned(), "three".to_owned()]).expect("batch");
        assert_eq!(batch[1], tok.encode("three").expect("encode"));
    }

    /// The word cache is only an optimisation: on every sentence of the real corpora (and on
    /// raw, unsegmented text with odd spacing) it gives the ids of the whole pipeline.
    #[test]
    fn word_cache_gives_the_whole_pipeline_ids_on_real_corpora() {
        use crate::reader::{Format, ReaderOptions, read_documents};
        let tok = AlbertTokenizer::from_file(&fixture("albert-8k-tokenizer.json")).expect("load");
        assert!(tok.word_cache.is_some(), "ALBERT's pre-tokeniser splits at spaces");
        let mut texts = Vec::new();
        for (file, format) in
            [("enwiki-sample.xml.bz2", Format::WikiXml), ("persuasion.txt", Format::Book)]
        {
            for doc in
                read_documents(&fixture(file), format, &ReaderOptions::default()).expect("open")
            {
                texts.extend(doc.expect("document").sentences);
            }
        }
        let raw =
            std::fs::read_to_string(fixture("enwiki-sample.wikiextractor.doc.txt")).expect("read");
        texts.extend(raw.lines().map(str::to_owned));
        texts.push(WORD_CACHE_PROBE.to_owned());
        assert!(texts.len() > 20_000, "{} texts", texts.len());
        for text in &texts {
            let cached = tok.encode(text).expect("encode");
            assert_eq!(cached, tok.encode_whole(text).expect("encode"), "{text:?}");
        }
        // Encoding again is served from the cache and still equal.
        assert_eq!(tok.encode(&texts[7]).expect("again"), tok.encode_whole(&texts[7]).expect("w"));
    }

    #[test]
    fn word_cache_needs_a_pre_tokenizer_that_splits_at_spaces() {
        let metaspace = serde_json::json!({
            "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true
        });
        assert!(splits_at_spaces(&metaspace));
        let sequence = serde_json::json!({
            "type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]
        });
        assert!(splits_at_spaces(&sequence));
        let first_only = serde_json::json!({
            "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": true
        });
        assert!(!splits_at_spaces(&first_only));
        assert!(!splits_at_spaces(&serde_json::json!({"type": "ByteLevel"})));
        assert!(!splits_at_spaces(&serde_json::Value::Null));
    }

    #[test]
    fn sentencepiece_model_and_missing_specials_are_explained() {
        let err = AlbertTokenizer::from_file(&fixture("botchan_en_unigram_1000.model"))
            .expect_err("model file");
        let text = err.to_string();
        assert!(text.contains("SentencePiece") && text.contains("save_pretrained"), "{text}");

        let json = std::fs::read_to_string(fixture("albert-8k-tokenizer.json")).expect("read");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-mask.json");
        std::fs::write(&path, json.replace("[MASK]", "[MASQUE]")).expect("write");
        let err = AlbertTokenizer::from_file(&path).expect_err("no [MASK]");
        assert!(err.to_string().contains("[MASK] is missing"), "{err}");
    }
}
