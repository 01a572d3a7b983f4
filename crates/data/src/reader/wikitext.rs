//! Wikitext to clean prose: drops templates, tables, references and other non-prose tags, HTML
//! comments, file/image/category and interlanguage links and magic words; keeps the text of
//! links and external links; headings, list items and blank lines become paragraph breaks.

use crate::reader::entities::decode_entities;
use crate::segment::normalize_whitespace;

/// Tags removed together with their content.
const DROPPED_TAGS: &[&str] = &[
    "ref",
    "references",
    "gallery",
    "math",
    "timeline",
    "imagemap",
    "score",
    "syntaxhighlight",
    "source",
    "pre",
    "chem",
    "ce",
    "hiero",
    "graph",
    "mapframe",
    "maplink",
    "templatedata",
    "table",
    "noinclude",
    "inputbox",
    "categorytree",
    "poem",
];
/// Link namespaces whose links are dropped with their caption.
const DROPPED_NAMESPACES: &[&str] = &["file", "image", "category", "media"];
/// URL schemes that start an external link `[scheme://... label]`.
const URL_SCHEMES: &[&str] = &["http://", "https://", "ftp://", "//", "mailto:", "news:"];

/// Converts an article's wikitext into paragraphs of plain prose (not yet split into sentences).
pub fn wikitext_to_paragraphs(wikitext: &str) -> Vec<String> {
    let text = strip_comments(wikitext);
    let text = strip_dropped_tags(&text);
    let text = strip_templates_and_tables(&text);
    let text = replace_links(&text);
    let text = replace_external_links(&text);
    let text = strip_html_tags(&text);
    let text = decode_entities(&text);
    let text = strip_apostrophe_runs(&text);
    paragraphs(&text)
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start + 4..].find("-->") {
            Some(end) => rest = &rest[start + 4 + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The lowercase tag name at `text[at..]` (just after `<` or `</`), if it is one.
fn tag_name(text: &str, at: usize) -> Option<String> {
    let name: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_alphabetic()))
        .then(|| name.to_ascii_lowercase())
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    (0..h.len().saturating_sub(n.len() - 1)).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn strip_dropped_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let dropped = tag_name(rest, 1).filter(|name| DROPPED_TAGS.contains(&name.as_str()));
        let (Some(name), Some(gt)) = (dropped, rest.find('>')) else {
            out.push('<');
            rest = &rest[1..];
            continue;
        };
        if rest[..gt].ends_with('/') {
            rest = &rest[gt + 1..];
            continue;
        }
        let closing = format!("</{name}");
        rest = match find_ascii_case_insensitive(&rest[gt + 1..], &closing) {
            Some(close) => {
                let after = &rest[gt + 1 + close..];
                after.find('>').map_or("", |end| &after[end + 1..])
            }
            None => &rest[gt + 1..],
        };
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Template,
    Parameter,
    Table,
}

fn at_line_start(bytes: &[u8], i: usize) -> bool {
    bytes[..i].iter().rev().find(|b| **b != b' ' && **b != b'\t').is_none_or(|b| *b == b'\n')
}

fn strip_templates_and_tables(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut stack: Vec<Block> = Vec::new();
    let mut copy_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let opened = if rest.starts_with(b"{{{") && !rest.starts_with(b"{{{{") {
            Some((Block::Parameter, 3))
        } else if rest.starts_with(b"{{") {
            Some((Block::Template, 2))
        } else if rest.starts_with(b"{|") && at_line_start(bytes, i) {
            Some((Block::Table, 2))
        } else {
            None
        };
        if let Some((block, len)) = opened {
            if stack.is_empty() {
                out.push_str(&text[copy_from..i]);
            }
            stack.push(block);
            i += len;
            continue;
        }
        let closed = match stack.last() {
            Some(Block::Parameter) if rest.starts_with(b"}}}") => Some(3),
            Some(Block::Template) if rest.starts_with(b"}}") => Some(2),
            Some(Block::Table) if rest.starts_with(b"|}") => Some(2),
            _ => None,
        };
        match closed {
            Some(len) => {
                stack.pop();
                i += len;
                if stack.is_empty() {
                    copy_from = i;
                }
            }
            None => i += 1,
        }
    }
    if stack.is_empty() {
        out.push_str(&text[copy_from..]);
    }
    out
}

/// Index just past the `]]` that closes a `[[` opened before `from`, honouring nesting.
fn matching_link_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 1usize;
    let mut i = from;
    while i + 1 < bytes.len() {
        if bytes[i] == b'[' && bytes[i + 1] == b'[' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b']' && bytes[i + 1] == b']' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

fn link_text(inner: &str) -> String {
    let (target, label) = match inner.split_once('|') {
        Some((target, label)) => (target.trim(), Some(label)),
        None => (inner.trim(), None),
    };
    if let Some((prefix, _)) = target.split_once(':') {
        let prefix = prefix.trim().to_ascii_lowercase();
        let interwiki = !prefix.is_empty()
            && prefix.len() <= 12
            && prefix.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            && !target.starts_with(char::is_uppercase);
        if DROPPED_NAMESPACES.contains(&prefix.as_str()) || (interwiki && label.is_none()) {
            return String::new();
        }
    }
    match label {
        Some(label) if !label.trim().is_empty() => replace_links(label),
        _ => target.trim_start_matches(':').to_owned(),
    }
}

fn replace_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        out.push_str(&rest[..start]);
        match matching_link_end(rest, start + 2) {
            Some(end) => {
                out.push_str(&link_text(&rest[start + 2..end - 2]));
                rest = &rest[end..];
            }
            None => rest = &rest[start + 2..],
        }
    }
    out.push_str(rest);
    out
}

fn replace_external_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let is_url = URL_SCHEMES.iter().any(|s| {
            after.as_bytes().get(..s.len()).is_some_and(|h| h.eq_ignore_ascii_case(s.as_bytes()))
        });
        let end = after.find([']', '\n']).filter(|e| after.as_bytes()[*e] == b']');
        match (is_url, end) {
            (true, Some(end)) => {
                if let Some((_, label)) = after[..end].split_once(' ') {
                    out.push_str(label);
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn strip_html_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let name_at = if rest[1..].starts_with('/') { 2 } else { 1 };
        let gt = rest.find('>').filter(|gt| *gt < 500 && !rest[..*gt].contains('\n'));
        match (tag_name(rest, name_at), gt) {
            (Some(name), Some(gt)) => {
                if name == "br" {
                    out.push(' ');
                }
                rest = &rest[gt + 1..];
            }
            _ => {
                out.push('<');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn strip_apostrophe_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = 0usize;
    for c in text.chars() {
        if c == '\'' {
            run += 1;
            continue;
        }
        if run == 1 {
            out.push('\'');
        }
        run = 0;
        out.push(c);
    }
    if run == 1 {
        out.push('\'');
    }
    out
}

fn strip_magic_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("__") {
        let after = &rest[start + 2..];
        let word_len = after.chars().take_while(char::is_ascii_uppercase).count();
        if word_len > 0 && after[word_len..].starts_with("__") {
            out.push_str(&rest[..start]);
            rest = &after[word_len + 2..];
        } else {
            out.push_str(&rest[..start + 2]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Splits cleaned text into paragraphs at blank lines, headings, rules and list items.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = strip_magic_words(raw);
        let line = line.trim();
        let heading = line.len() >= 2 && line.starts_with('=') && line.ends_with('=');
        let leftover = line.starts_with(['|', '!', '{', '}']) || line.starts_with("----");
        let list_item = line.starts_with(['*', '#', ':', ';']);
        if line.is_empty() || heading || leftover || list_item {
            finish_paragraph(&mut current, &mut out);
        }
        if list_item {
            current.push_str(line.trim_start_matches(['*', '#', ':', ';']));
            finish_paragraph(&mut current, &mut out);
        } else if !(line.is_empty() || heading || leftover) {
            current.push(' ');
            current.push_str(line);
        }
    }
    finish_paragraph(&mut current, &mut out);
    out
}

/// Tidies what removed markup leaves behind and keeps the paragraph if it has any letter.
fn finish_paragraph(current: &mut String, out: &mut Vec<String>) {
    let mut text = normalize_whitespace(current);
    current.clear();
    for marker in ["{{", "}}", "[[", "]]", "{|", "|}"] {
        if text.contains(marker) {
            text = text.replace(marker, " ");
        }
    }
    loop {
        let before = text.len();
        for (from, to) in [
            ("( ", "("),
            (" )", ")"),
            ("(,", "("),
            ("(;", "("),
            ("()", ""),
            (" ,", ","),
            (" .", "."),
            (" ;", ";"),
            (",,", ","),
            ("  ", " "),
        ] {
            if text.contains(from) {
                text = text.replace(from, to);
            }
        }
        if text.len() == before {
            break;
        }
    }
    let text = text.trim();
    if text.chars().any(char::is_alphabetic) {
        out.push(text.to_owned());
    }
}

#[cfg(test)]
#[path = "wikitext_test.rs"]
mod tests;
