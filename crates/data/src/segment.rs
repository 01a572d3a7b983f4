//! Sentence segmentation of prose paragraphs (Unicode UAX #29 via `unicode-segmentation`), with
//! a small fix-up so that titles such as "Mr." and initials such as "J." do not end a sentence.

use unicode_segmentation::UnicodeSegmentation;

/// Abbreviations after which UAX #29 would break but English prose does not.
const ABBREVIATIONS: &[&str] = &[
    "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Mt", "Gen", "Col", "Lt", "Capt", "Rev",
    "Hon", "vs", "No", "Fig", "Vol", "cf", "ca", "approx", "e.g", "i.e", "etc",
];

/// A document: an identifier, an optional title, and its text as sentences in reading order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// Where the document came from: an article id, a line number, a file name.
    pub id: String,
    /// The article or book title, when the format has one.
    pub title: Option<String>,
    /// The sentences, whitespace-normalised, none empty.
    pub sentences: Vec<String>,
}

impl Document {
    /// Total length of the sentences in bytes.
    pub fn text_bytes(&self) -> usize {
        self.sentences.iter().map(String::len).sum()
    }
}

/// Collapses runs of whitespace into one space and trims both ends.
pub fn normalize_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Splits a paragraph into sentences and appends them to `out`. Pieces without any letter or
/// digit (stray punctuation) are dropped.
pub fn push_sentences(paragraph: &str, out: &mut Vec<String>) {
    let paragraph = normalize_whitespace(paragraph);
    let first = out.len();
    let mut pending = String::new();
    for piece in paragraph.split_sentence_bounds() {
        // A piece starting in lowercase continues the sentence (`"Who?" asked he.`).
        if pending.is_empty()
            && out.len() > first
            && piece.starts_with(char::is_lowercase)
            && let Some(last) = out.pop()
        {
            pending = last + " ";
        }
        pending.push_str(piece);
        if ends_with_abbreviation(pending.trim_end()) {
            continue;
        }
        flush(&mut pending, out);
    }
    flush(&mut pending, out);
}

/// Splits a paragraph into sentences.
pub fn sentences(paragraph: &str) -> Vec<String> {
    let mut out = Vec::new();
    push_sentences(paragraph, &mut out);
    out
}

fn flush(pending: &mut String, out: &mut Vec<String>) {
    let sentence = pending.trim();
    if sentence.chars().any(char::is_alphanumeric) {
        out.push(sentence.to_owned());
    }
    pending.clear();
}

/// Whether `text` ends with "Mr." or a single-letter initial such as "J.".
pub(crate) fn ends_with_abbreviation(text: &str) -> bool {
    let Some(stem) = text.strip_suffix('.') else {
        return false;
    };
    let word =
        stem.rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"').next().unwrap_or(stem);
    let mut chars = word.chars();
    let single_initial =
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_uppercase());
    single_initial || ABBREVIATIONS.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_sentence_ends_but_not_titles_or_initials() {
        let got = sentences(
            "Mr. Elliot  came in.  \"Who is there?\" asked J. R. Smith! Then\tnothing happened.",
        );
        assert_eq!(
            got,
            vec![
                "Mr. Elliot came in.",
                "\"Who is there?\" asked J. R. Smith!",
                "Then nothing happened.",
            ]
        );
    }

    #[test]
    fn drops_pieces_without_letters() {
        assert_eq!(sentences("  ... -- !  "), Vec::<String>::new());
        assert_eq!(sentences("Één zin. 日本語の文。"), vec!["Één zin.", "日本語の文。"]);
    }
}
