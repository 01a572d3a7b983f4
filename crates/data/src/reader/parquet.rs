//! Apache Parquet as Hugging Face publishes text corpora, read row group by row group with
//! only the needed columns:
//! - `wikimedia/wikipedia` and legacy `wikipedia` (`id, url, title, text`) and `bookcorpusopen`
//!   (`title, text`): one row is one document; newlines in the text separate paragraphs;
//! - `bookcorpus` (`text` only, one sentence per row, no book boundaries): consecutive rows
//!   form documents of at most `max_document_sentences` sentences.
//!
//! The text column is configurable; a missing column is an error listing the columns present.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::Type;

use crate::error::{DataError, Result};
use crate::reader::jsonl::JsonFields;
use crate::reader::source::DocumentSource;
use crate::segment::{Document, normalize_whitespace, push_sentences};

/// One row's text, title and id; nulls are `None`.
#[derive(Debug, Default)]
struct RowText {
    text: Option<String>,
    title: Option<String>,
    id: Option<String>,
}

/// Reads documents from a parquet file.
pub struct ParquetReader {
    rows: RowIter<'static>,
    path: PathBuf,
    /// Whether a row is a whole document (has a title or id column) or one sentence.
    row_is_document: bool,
    has_title: bool,
    has_id: bool,
    max_sentences: usize,
    row: u64,
}

impl std::fmt::Debug for ParquetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetReader")
            .field("path", &self.path)
            .field("row_is_document", &self.row_is_document)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        format: "parquet",
        location: "file".to_owned(),
        reason: e.to_string(),
    }
}

impl ParquetReader {
    /// Opens `path`, choosing columns by `fields` (text required; title and id optional).
    pub fn open(path: &Path, fields: &JsonFields, max_sentences: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| parquet_error(path, e))?;
        let schema = reader.metadata().file_metadata().schema();
        let columns: Vec<Arc<Type>> = schema.get_fields().to_vec();
        let find = |name: &str| columns.iter().find(|c| c.name() == name).cloned();
        let Some(text) = find(&fields.text) else {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                column: fields.text.clone(),
                available: columns.iter().map(|c| c.name().to_owned()).collect(),
            });
        };
        let title = find(&fields.title);
        let id = find(&fields.id);
        let row_is_document = title.is_some() || id.is_some();
        let (has_title, has_id) = (title.is_some(), id.is_some());
        let projected: Vec<Arc<Type>> = [Some(text), title, id].into_iter().flatten().collect();
        let projection = Type::group_type_builder(schema.name())
            .with_fields(projected)
            .build()
            .map_err(|e| parquet_error(path, e))?;
        let rows = RowIter::from_file_into(Box::new(reader))
            .project(Some(projection))
            .map_err(|e| parquet_error(path, e))?;
        Ok(Self {
            rows,
            path: path.to_path_buf(),
            row_is_document,
            has_title,
            has_id,
            max_sentences: max_sentences.max(1),
            row: 0,
        })
    }

    /// The next row's fields.
    fn next_row(&mut self) -> Result<Option<RowText>> {
        let Some(row) = self.rows.next() else {
            return Ok(None);
        };
        let row: Row = row.map_err(|e| DataError::Malformed {
            path: self.path.clone(),
            format: "parquet",
            location: format!("row {}", self.row),
            reason: e.to_string(),
        })?;
        self.row += 1;
        let values: Vec<&Field> = row.get_column_iter().map(|(_, v)| v).collect();
        let text = self.string(values.first().copied(), "text")?;
        let mut next = 1;
        let mut optional = |present: bool| {
            if !present {
                return None;
            }
            let value = values.get(next).copied();
            next += 1;
            value
        };
        let (title, id) = (optional(self.has_title), optional(self.has_id));
        let title = self.string(title, "title")?;
        let id = self.string(id, "id")?;
        Ok(Some(RowText { text, title, id }))
    }

    fn string(&self, value: Option<&Field>, what: &str) -> Result<Option<String>> {
        match value {
            None | Some(Field::Null) => Ok(None),
            Some(Field::Str(s)) => Ok(Some(s.clone())),
            Some(Field::Long(n)) => Ok(Some(n.to_string())),
            Some(Field::Int(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(DataError::Malformed {
                path: self.path.clone(),
                format: "parquet",
                location: format!("row {}", self.row),
                reason: format!("the {what} column holds {other}, not a string"),
            }),
        }
    }
}

impl DocumentSource for ParquetReader {
    fn next_document(&mut self) -> Result<Option<Document>> {
        if self.row_is_document {
            while let Some(RowText { text, title, id }) = self.next_row()? {
                let mut sentences = Vec::new();
                for paragraph in text.unwrap_or_default().split('\n') {
                    push_sentences(paragraph, &mut sentences);
                }
                if !sentences.is_empty() {
                    let id = id.unwrap_or_else(|| format!("{}:{}", self.path.display(), self.row));
                    return Ok(Some(Document { id, title, sentences }));
                }
            }
            return Ok(None);
        }
        let mut doc = Document::default();
        while doc.sentences.len() < self.max_sentences {
            let Some(RowText { text, .. }) = self.next_row()? else {
                break;
            };
            let sentence = normalize_whitespace(&text.unwrap_or_default());
            if sentence.is_empty() {
                continue;
            }
            if doc.sentences.is_empty() {
                doc.id = format!("{}:{}", self.path.display(), self.row);
            }
            doc.sentences.push(sentence);
        }
        Ok((!doc.sentences.is_empty()).then_some(doc))
    }
}

#[cfg(test)]
#[path = "parquet_test.rs"]
mod tests;
