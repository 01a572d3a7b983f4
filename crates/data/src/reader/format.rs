//! Input formats, their names on the command line, and `--format auto` sniffing.

use std::path::Path;
use std::str::FromStr;

use crate::error::{DataError, Result};
use crate::input;

/// How many leading bytes sniffing looks at.
const SNIFF_BYTES: usize = 64 * 1024;

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Decide from the file's content ([`sniff_format`]).
    Auto,
    /// BERT format: one sentence per line, blank line between documents.
    Text,
    /// Book prose: paragraphs (wrapped or one per line) separated by blank lines.
    Book,
    /// JSON Lines with a configurable text field.
    Jsonl,
    /// WikiExtractor `--json` output (JSON Lines with `id`, `url`, `title`, `text`).
    WikiExtractorJson,
    /// WikiExtractor `<doc ...>` output.
    WikiExtractor,
    /// A MediaWiki XML export, plain or bzip2.
    WikiXml,
    /// Apache Parquet (Hugging Face layouts).
    Parquet,
}

impl Format {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Text => "text",
            Self::Book => "book",
            Self::Jsonl => "jsonl",
            Self::WikiExtractorJson => "wikiextractor-json",
            Self::WikiExtractor => "wikiextractor",
            Self::WikiXml => "wiki-xml",
            Self::Parquet => "parquet",
        }
    }

    /// Every format, for help texts.
    pub const ALL: [Format; 8] = [
        Self::Auto,
        Self::Text,
        Self::Book,
        Self::Jsonl,
        Self::WikiExtractorJson,
        Self::WikiExtractor,
        Self::WikiXml,
        Self::Parquet,
    ];
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            DataError::UnknownFormat {
                path: s.into(),
                reason: format!(
                    "not a format name; expected one of {}",
                    Self::ALL.map(Format::name).join(", ")
                ),
            }
        })
    }
}

/// Decides the format of `path` from its first bytes (decompressed if bzip2).
pub fn sniff_format(path: &Path) -> Result<Format> {
    let head = input::head(path, SNIFF_BYTES)?;
    if head.starts_with(b"PAR1") {
        return Ok(Format::Parquet);
    }
    input::check_bom(&head, path)?;
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    let body = &body[start..];
    let unknown = |reason: &str| DataError::UnknownFormat {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    if body.is_empty() {
        return Err(unknown("the file is empty"));
    }
    if body.starts_with(b"<?xml") || body.starts_with(b"<mediawiki") {
        return Ok(Format::WikiXml);
    }
    if body.starts_with(b"<doc ") {
        return Ok(Format::WikiExtractor);
    }
    // Cut at the last complete character so a multi-byte character split by the window is fine.
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return Err(unknown("binary or non-UTF-8 content")),
    };
    if text.starts_with('{') {
        let first = text.lines().next().unwrap_or_default();
        let wikiextractor =
            ["\"id\"", "\"url\"", "\"title\"", "\"text\""].iter().all(|key| first.contains(key));
        return Ok(if wikiextractor { Format::WikiExtractorJson } else { Format::Jsonl });
    }
    if text.starts_with('<') {
        return Err(unknown("markup that is neither a MediaWiki dump nor WikiExtractor output"));
    }
    Ok(plain_text_kind(text))
}

/// BERT format when nearly every line ends a sentence and lines are short; book prose otherwise.
fn plain_text_kind(text: &str) -> Format {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return Format::Text;
    }
    let terminal = lines
        .iter()
        .filter(|l| l.ends_with(['.', '!', '?', '"', '\'', '\u{201D}', ')', '。']))
        .count();
    let mean_len = lines.iter().map(|l| l.len()).sum::<usize>() / lines.len();
    if terminal * 10 >= lines.len() * 8 && mean_len < 300 { Format::Text } else { Format::Book }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_choices() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>().expect("known name"), format);
        }
        let err = "csv".parse::<Format>().expect_err("unknown");
        assert!(err.to_string().contains("wiki-xml"), "{err}");
    }

    #[test]
    fn plain_text_heuristic() {
        assert_eq!(plain_text_kind("One sentence.\nAnother one!\n\nNew doc.\n"), Format::Text);
        assert_eq!(
            plain_text_kind("It was a\nlong day and\nnobody came.\n\nChapter 2\n"),
            Format::Book
        );
    }
}
