//! WikiExtractor's default output: `<doc id=".." url=".." title="..">`, the title repeated as
//! the first body line, one paragraph per line, `</doc>`. Text is HTML-escaped.

use std::io::BufRead;
use std::path::Path;

use crate::error::{DataError, Result};
use crate::input::Lines;
use crate::reader::entities::decode_entities;
use crate::reader::source::DocumentSource;
use crate::segment::{Document, push_sentences};

/// Reads WikiExtractor `<doc>` files into documents.
#[derive(Debug)]
pub struct WikiExtractorReader<R> {
    lines: Lines<R>,
}

impl<R: BufRead> WikiExtractorReader<R> {
    /// Reads `reader`, which reads `path`.
    pub fn new(reader: R, path: &Path) -> Self {
        Self { lines: Lines::new(reader, path) }
    }

    fn malformed(&self, reason: String) -> DataError {
        DataError::Malformed {
            path: self.lines.path().to_path_buf(),
            format: "WikiExtractor",
            location: format!("line {}", self.lines.line_number()),
            reason,
        }
    }
}

impl<R: BufRead> DocumentSource for WikiExtractorReader<R> {
    fn next_document(&mut self) -> Result<Option<Document>> {
        loop {
            let (id, title) = loop {
                let Some(line) = self.lines.next_line()? else {
                    return Ok(None);
                };
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if !line.starts_with("<doc ") || !line.ends_with('>') {
                    let shown: String = line.chars().take(40).collect();
                    return Err(self.malformed(format!("expected `<doc ...>`, found {shown:?}")));
                }
                let id = attribute(line, "id").unwrap_or_default();
                let title = attribute(line, "title");
                break (id, title);
            };
            let start = self.lines.line_number();
            let mut sentences = Vec::new();
            let mut first = true;
            loop {
                let Some(line) = self.lines.next_line()? else {
                    return Err(
                        self.malformed(format!("`<doc>` opened at line {start} never closed"))
                    );
                };
                if line.trim() == "</doc>" {
                    break;
                }
                let text = decode_entities(line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                if std::mem::take(&mut first) && Some(text) == title.as_deref() {
                    continue;
                }
                push_sentences(text, &mut sentences);
            }
            if !sentences.is_empty() {
                return Ok(Some(Document { id, title, sentences }));
            }
        }
    }
}

/// The unescaped value of `name="value"` in a `<doc ...>` line.
fn attribute(line: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    let end = line[start..].find('"')? + start;
    Some(decode_entities(&line[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(text: &str) -> Result<Vec<Document>> {
        WikiExtractorReader::new(Cursor::new(text), Path::new("wiki_00")).documents().collect()
    }

    #[test]
    fn reads_docs_and_drops_repeated_title() {
        let docs = read(
            "<doc id=\"12\" url=\"u\" title=\"A &amp; B\">\nA & B\n\nA &amp; B sell. Well.\n</doc>\n\
             <doc id=\"13\" url=\"u\" title=\"Empty\">\nEmpty\n</doc>\n",
        )
        .expect("valid");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].id, "12");
        assert_eq!(docs[0].title.as_deref(), Some("A & B"));
        assert_eq!(docs[0].sentences, vec!["A & B sell.", "Well."]);
    }

    #[test]
    fn unclosed_doc_and_stray_text_are_errors() {
        let err = read("<doc id=\"1\" title=\"T\">\nT\ntext\n").expect_err("unclosed");
        assert!(err.to_string().contains("line 1 never closed"), "{err}");
        let err = read("hello\n").expect_err("no doc tag");
        assert!(err.to_string().contains("expected `<doc"), "{err}");
    }
}
