//! Plain text: BERT's format (one sentence per line, a blank line between documents) and raw
//! book text (hard-wrapped or one paragraph per line, blank lines between paragraphs; a whole
//! file is one book, cut into documents of at most `max_document_sentences`).

use std::io::BufRead;
use std::path::Path;

use crate::error::Result;
use crate::input::Lines;
use crate::reader::source::DocumentSource;
use crate::segment::{Document, ends_with_abbreviation, normalize_whitespace, push_sentences};

/// A paragraph longer than this is segmented at once (bounds memory on text without breaks).
const MAX_PARAGRAPH_BYTES: usize = 1 << 20;

/// Segments `paragraph` into `carry` and empties it.
fn flush(paragraph: &mut String, carry: &mut Vec<String>) {
    push_sentences(paragraph, carry);
    paragraph.clear();
}

/// Whether a line ends a sentence, so the paragraph can be segmented there without changing
/// the result: this keeps memory bounded on one-paragraph-per-line books with no blank lines.
fn ends_sentence(line: &str) -> bool {
    let line = line.trim_end();
    let bare = line.trim_end_matches(['"', '\'', '\u{201D}', '\u{2019}', ')']);
    bare.ends_with(['.', '!', '?']) && !ends_with_abbreviation(bare)
}

/// Reads BERT-format text: each non-blank line is a sentence; blank lines end a document.
#[derive(Debug)]
pub struct BertTextReader<R> {
    lines: Lines<R>,
    max_sentences: usize,
}

impl<R: BufRead> BertTextReader<R> {
    /// Reads `reader` (which reads `path`), cutting documents longer than `max_sentences`.
    pub fn new(reader: R, path: &Path, max_sentences: usize) -> Self {
        Self { lines: Lines::new(reader, path), max_sentences: max_sentences.max(1) }
    }
}

impl<R: BufRead> DocumentSource for BertTextReader<R> {
    fn next_document(&mut self) -> Result<Option<Document>> {
        let mut doc = Document::default();
        while let Some(line) = self.lines.next_line()? {
            let sentence = normalize_whitespace(line);
            if sentence.is_empty() {
                if doc.sentences.is_empty() {
                    continue;
                }
                return Ok(Some(doc));
            }
            if doc.sentences.is_empty() {
                doc.id = format!("{}:{}", self.lines.path().display(), self.lines.line_number());
            }
            doc.sentences.push(sentence);
            if doc.sentences.len() >= self.max_sentences {
                return Ok(Some(doc));
            }
        }
        Ok((!doc.sentences.is_empty()).then_some(doc))
    }
}

/// Reads a book as prose: consecutive non-blank lines form a paragraph, paragraphs are split
/// into sentences, and the book is cut into documents of at most `max_sentences` sentences.
#[derive(Debug)]
pub struct BookReader<R> {
    lines: Lines<R>,
    title: String,
    max_sentences: usize,
    part: usize,
    carry: Vec<String>,
    /// Lines of the paragraph being read, joined by spaces.
    paragraph: String,
    /// Whether the last line of `paragraph` ended a sentence.
    sentence_ended: bool,
}

impl<R: BufRead> BookReader<R> {
    /// Reads `reader` (which reads `path`); the title is the file stem.
    pub fn new(reader: R, path: &Path, max_sentences: usize) -> Self {
        let title = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            lines: Lines::new(reader, path),
            title,
            max_sentences: max_sentences.max(1),
            part: 0,
            carry: Vec::new(),
            paragraph: String::new(),
            sentence_ended: false,
        }
    }

    fn flush_paragraph(&mut self) {
        flush(&mut self.paragraph, &mut self.carry);
        self.sentence_ended = false;
    }

    fn take_document(&mut self, at_end: bool) -> Option<Document> {
        if self.carry.is_empty() {
            return None;
        }
        let n = if at_end { self.carry.len().min(self.max_sentences) } else { self.max_sentences };
        let rest = self.carry.split_off(n.min(self.carry.len()));
        let sentences = std::mem::replace(&mut self.carry, rest);
        self.part += 1;
        Some(Document {
            id: format!("{}#{}", self.lines.path().display(), self.part),
            title: Some(self.title.clone()),
            sentences,
        })
    }
}

impl<R: BufRead> DocumentSource for BookReader<R> {
    fn next_document(&mut self) -> Result<Option<Document>> {
        loop {
            if self.carry.len() >= self.max_sentences {
                return Ok(self.take_document(false));
            }
            let Some(line) = self.lines.next_line()? else {
                break;
            };
            if line.trim().is_empty() {
                self.flush_paragraph();
                continue;
            }
            // Segment what came before when it ended a sentence and this line does not
            // continue it in lowercase: the result is the same as segmenting the whole
            // paragraph, with memory bounded by a sentence rather than a paragraph.
            let continues = line.trim_start().starts_with(char::is_lowercase);
            if (self.sentence_ended && !continues) || self.paragraph.len() > MAX_PARAGRAPH_BYTES {
                flush(&mut self.paragraph, &mut self.carry);
            }
            self.paragraph.push(' ');
            self.paragraph.push_str(line);
            self.sentence_ended = ends_sentence(line);
        }
        self.flush_paragraph();
        Ok(self.take_document(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bert(text: &str, max: usize) -> Vec<Document> {
        BertTextReader::new(Cursor::new(text.as_bytes()), Path::new("t.txt"), max)
            .documents()
            .collect::<Result<Vec<_>>>()
            .expect("valid text")
    }

    #[test]
    fn bert_format_blank_lines_separate_documents() {
        let docs = bert("\n\nOne a.\nOne  b.\n\n\nTwo a.\n", 100);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].sentences, vec!["One a.", "One b."]);
        assert_eq!(docs[0].id, "t.txt:3");
        assert_eq!(docs[1].sentences, vec!["Two a."]);
        assert_eq!(docs[1].id, "t.txt:7");
        let cut = bert("a\nb\nc\n", 2);
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[1].sentences, vec!["c"]);
    }

    #[test]
    fn book_joins_wrapped_lines_and_cuts_long_books() {
        let text = "Chapter 1\n\nIt was a\nlong day. He slept.\n\nShe woke.\n";
        let docs: Vec<Document> = BookReader::new(Cursor::new(text), Path::new("b/emma.txt"), 2)
            .documents()
            .collect::<Result<Vec<_>>>()
            .expect("valid text");
        let all: Vec<&str> = docs.iter().flat_map(|d| &d.sentences).map(String::as_str).collect();
        assert_eq!(all, vec!["Chapter 1", "It was a long day.", "He slept.", "She woke."]);
        assert_eq!(docs.len(), 2);
        assert!(docs.iter().all(|d| d.title.as_deref() == Some("emma")));
        assert!(docs.iter().all(|d| d.sentences.len() <= 2));
    }

    #[test]
    fn book_with_one_paragraph_per_line_and_no_blank_lines() {
        let text = "He met Mr.\nSmith there. They talked.\nShe said \"Go!\"\nAnd he went\naway. \"Why?\"\nasked she.\n";
        let docs: Vec<Document> = BookReader::new(Cursor::new(text), Path::new("b.txt"), 100)
            .documents()
            .collect::<Result<Vec<_>>>()
            .expect("valid text");
        assert_eq!(
            docs[0].sentences,
            vec![
                "He met Mr. Smith there.",
                "They talked.",
                "She said \"Go!\"",
                "And he went away.",
                "\"Why?\" asked she.",
            ]
        );
    }

    #[test]
    fn streaming_book_segmentation_equals_whole_paragraph_segmentation() {
        let path = crate::test_support::fixture("persuasion.txt");
        let text = std::fs::read_to_string(&path).expect("fixture");
        let mut expected = Vec::new();
        let mut paragraph = String::new();
        for line in text.lines().chain([""]) {
            if line.trim().is_empty() {
                push_sentences(&paragraph, &mut expected);
                paragraph.clear();
            } else {
                paragraph.push(' ');
                paragraph.push_str(line);
            }
        }
        let docs: Vec<Document> = BookReader::new(Cursor::new(text), &path, usize::MAX)
            .documents()
            .collect::<Result<Vec<_>>>()
            .expect("valid text");
        assert_eq!(docs.len(), 1);
        let got = &docs[0].sentences;
        let first_difference = got.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(
            first_difference,
            None,
            "{:?}",
            first_difference.map(|i| (&got[i], &expected[i]))
        );
        assert_eq!(got.len(), expected.len());
    }
}
