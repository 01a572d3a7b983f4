//! The ALBERT tokenizer: a Hugging Face `tokenizer.json` (SentencePiece-Unigram conversion)
//! loaded with the `tokenizers` crate, checked for ALBERT's special tokens, with the per-id
//! "starts a word" table that whole-word masking needs.

use std::path::{Path, PathBuf};

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
        tracing::info!(path = %path.display(), vocab_size, %fingerprint, "tokenizer loaded");
        Ok(Self { inner, path: path.to_path_buf(), special, word_start, fingerprint })
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
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| self.error(format!("cannot encode text: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of several texts (in parallel), without special tokens.
    pub fn encode_batch(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .inner
            .encode_batch(inputs, false)
            .map_err(|e| self.error(format!("cannot encode text: {e}")))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
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
