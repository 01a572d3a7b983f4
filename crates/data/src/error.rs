//! The crate's error type: every variant names what is wrong and where.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, tokenising or sampling a corpus.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read (including a truncated compressed stream).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in the expected format; `location` says where (line, byte offset, record).
    #[error("malformed {format} input in {path} at {location}: {reason}")]
    Malformed {
        /// The file being read.
        path: PathBuf,
        /// The format the reader expected.
        format: &'static str,
        /// Line, byte offset or record number.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The text is not UTF-8 (or declares an encoding this crate does not read).
    #[error(
        "{path} is not UTF-8 text (found {encoding}) at {location}; \
         convert it with `iconv -t UTF-8`"
    )]
    Encoding {
        /// The file being read.
        path: PathBuf,
        /// The encoding found (declared, from a byte-order mark, or "invalid UTF-8").
        encoding: String,
        /// Line or byte offset of the problem.
        location: String,
    },
    /// The input format could not be recognised or was not a known name.
    #[error("unknown input format for {path}: {reason}")]
    UnknownFormat {
        /// The file (or the format name given).
        path: PathBuf,
        /// Why sniffing or parsing the name failed.
        reason: String,
    },
    /// A JSON Lines record lacks the configured text field, or it is not a string.
    #[error("{path} line {line}: missing or non-string field {field:?}")]
    MissingField {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The field that was expected.
        field: String,
    },
    /// A parquet file lacks the configured text column.
    #[error(
        "{path} has no column {column:?}; columns present: {available:?} \
         (choose one with the text field option)"
    )]
    MissingColumn {
        /// The file being read.
        path: PathBuf,
        /// The column that was expected.
        column: String,
        /// The top-level columns the file has.
        available: Vec<String>,
    },
    /// The inputs contained no usable document.
    #[error("empty corpus: no document with text in {inputs}")]
    EmptyCorpus {
        /// The inputs that were read, joined for display.
        inputs: String,
    },
    /// A SentencePiece `.model` file was given where a `tokenizer.json` is needed.
    #[error(
        "{path} is a SentencePiece model, not a Hugging Face tokenizer.json; convert it with: \
         python -c \"from transformers import AlbertTokenizerFast as T; \
         T(vocab_file='{path_display}').save_pretrained('out')\" and pass out/tokenizer.json"
    )]
    SentencePieceModel {
        /// The `.model` file.
        path: PathBuf,
        /// The same path for display inside the hint.
        path_display: String,
    },
    /// The tokenizer file could not be loaded or lacks what ALBERT needs.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A parameter is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
