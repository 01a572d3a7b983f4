//! JSON Lines: one JSON object per line with a configurable text field (WikiExtractor's
//! `--json` output is this format with `text`, `title` and `id`). Newlines in the text separate
//! paragraphs, which are split into sentences.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, Result};
use crate::input::Lines;
use crate::reader::entities::decode_entities;
use crate::reader::source::DocumentSource;
use crate::segment::{Document, push_sentences};

/// Field names of a JSON Lines record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFields {
    /// The text field (required in every record).
    pub text: String,
    /// The title field (optional).
    pub title: String,
    /// The id field (optional; the line number is used without it).
    pub id: String,
    /// Decode HTML character references in the text (WikiExtractor escapes `&`, `<`, `>`).
    pub decode_entities: bool,
}

impl Default for JsonFields {
    fn default() -> Self {
        Self {
            text: "text".to_owned(),
            title: "title".to_owned(),
            id: "id".to_owned(),
            decode_entities: false,
        }
    }
}

/// Reads JSON Lines into documents.
#[derive(Debug)]
pub struct JsonlReader<R> {
    lines: Lines<R>,
    fields: JsonFields,
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads `reader` (which reads `path`) with the given field names.
    pub fn new(reader: R, path: &Path, fields: JsonFields) -> Self {
        Self { lines: Lines::new(reader, path), fields }
    }
}

impl<R: BufRead> DocumentSource for JsonlReader<R> {
    fn next_document(&mut self) -> Result<Option<Document>> {
        loop {
            let Some(line) = self.lines.next_line()? else {
                return Ok(None);
            };
            if line.trim().is_empty() {
                continue;
            }
            let parsed: serde_json::Result<Value> = serde_json::from_str(line);
            let line_no = self.lines.line_number();
            let path = self.lines.path().to_path_buf();
            let record = parsed.map_err(|e| DataError::Malformed {
                path: path.clone(),
                format: "JSON Lines",
                location: format!("line {line_no} column {}", e.column()),
                reason: e.to_string(),
            })?;
            let Some(text) = record.get(&self.fields.text).and_then(Value::as_str) else {
                return Err(DataError::MissingField {
                    path,
                    line: line_no,
                    field: self.fields.text.clone(),
                });
            };
            let text =
                if self.fields.decode_entities { decode_entities(text) } else { text.to_owned() };
            let mut sentences = Vec::new();
            for paragraph in text.split('\n') {
                push_sentences(paragraph, &mut sentences);
            }
            if sentences.is_empty() {
                continue;
            }
            let id = match record.get(&self.fields.id) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => format!("{}:{line_no}", path.display()),
            };
            let title = record.get(&self.fields.title).and_then(Value::as_str).map(str::to_owned);
            return Ok(Some(Document { id, title, sentences }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(text: &str, fields: JsonFields) -> Result<Vec<Document>> {
        JsonlReader::new(Cursor::new(text), Path::new("x.jsonl"), fields).documents().collect()
    }

    #[test]
    fn reads_configured_field_and_splits_paragraphs() {
        let fields = JsonFields { text: "body".to_owned(), ..JsonFields::default() };
        let docs = read(
            "{\"id\": 7, \"title\": \"T\", \"body\": \"A b. C d.\\nE f\"}\n\n{\"body\": \"\"}\n",
            fields,
        )
        .expect("valid");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].id, "7");
        assert_eq!(docs[0].title.as_deref(), Some("T"));
        assert_eq!(docs[0].sentences, vec!["A b.", "C d.", "E f"]);
    }

    #[test]
    fn missing_field_and_bad_json_name_the_line() {
        let err = read("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", JsonFields::default())
            .expect_err("second record lacks text");
        assert!(matches!(err, DataError::MissingField { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("\"text\""), "{err}");
        let err = read("{\"text\": \"a\"\n", JsonFields::default()).expect_err("bad json");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
