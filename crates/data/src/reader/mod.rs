//! Corpus readers: each turns one input file into a stream of [`Document`]s with bounded memory.

mod entities;
pub mod format;
pub mod jsonl;
pub mod parquet;
pub mod plain;
pub mod source;
pub mod wikiextractor;
pub mod wikitext;
pub mod wikixml;

use std::path::Path;

pub use format::{Format, sniff_format};
pub use jsonl::JsonFields;
pub use source::{DocumentIter, DocumentSource};

use crate::error::{DataError, Result};
use crate::input;
use crate::segment::Document;

/// A stream of documents from one input.
pub type Documents = Box<dyn Iterator<Item = Result<Document>> + Send>;

/// How to read inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Field (JSON Lines) or column (parquet) names: `--text-field`.
    pub json: JsonFields,
    /// Longest document, in sentences, before a book or text document is cut (bounds memory).
    pub max_document_sentences: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self { json: JsonFields::default(), max_document_sentences: 10_000 }
    }
}

/// Opens `path` as `format` (`Format::Auto` sniffs it first) and returns its documents.
pub fn read_documents(path: &Path, format: Format, options: &ReaderOptions) -> Result<Documents> {
    let format = match format {
        Format::Auto => sniff_format(path)?,
        other => other,
    };
    tracing::debug!(path = %path.display(), format = format.name(), "opening input");
    let max = options.max_document_sentences;
    if format == Format::Parquet {
        return Ok(Box::new(parquet::ParquetReader::open(path, &options.json, max)?.documents()));
    }
    let reader = input::open(path)?;
    Ok(match format {
        Format::Text => Box::new(plain::BertTextReader::new(reader, path, max).documents()),
        Format::Book => Box::new(plain::BookReader::new(reader, path, max).documents()),
        Format::Jsonl => {
            Box::new(jsonl::JsonlReader::new(reader, path, options.json.clone()).documents())
        }
        Format::WikiExtractorJson => {
            let fields = JsonFields { decode_entities: true, ..JsonFields::default() };
            Box::new(jsonl::JsonlReader::new(reader, path, fields).documents())
        }
        Format::WikiExtractor => {
            Box::new(wikiextractor::WikiExtractorReader::new(reader, path).documents())
        }
        Format::WikiXml => Box::new(wikixml::WikiXmlReader::new(reader, path)?.documents()),
        Format::Parquet => {
            return Err(DataError::InvalidArgument(
                "invariant: parquet is opened above".to_owned(),
            ));
        }
        Format::Auto => {
            return Err(DataError::InvalidArgument(
                "invariant: sniffing never answers auto".to_owned(),
            ));
        }
    })
}

/// Reads every document of every input in order; an input without any document is fine, but
/// no document at all is [`DataError::EmptyCorpus`].
pub fn read_all(paths: &[&Path], format: Format, options: &ReaderOptions) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for path in paths {
        for doc in read_documents(path, format, options)? {
            docs.push(doc?);
        }
    }
    if docs.is_empty() {
        return Err(DataError::EmptyCorpus {
            inputs: paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(docs)
}

#[cfg(test)]
#[path = "samples_test.rs"]
mod tests;
