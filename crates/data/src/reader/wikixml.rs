//! Wikipedia `pages-articles` XML dumps (plain, `.bz2`, multistream `.bz2`), read as a stream
//! with quick-xml: one document per article in namespace 0 that is not a redirect.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::{BytesDecl, BytesEnd, BytesRef, BytesStart, Event};

use crate::error::{DataError, Result};
use crate::input::check_bom;
use crate::reader::source::DocumentSource;
use crate::reader::wikitext::wikitext_to_paragraphs;
use crate::segment::{Document, push_sentences};

/// Which element's text is being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    None,
    Title,
    Namespace,
    Id,
    Text,
}

/// The page being read.
#[derive(Debug, Default)]
struct Page {
    title: String,
    namespace: String,
    id: String,
    text: String,
    redirect: bool,
    in_revision: bool,
}

/// Reads a MediaWiki XML export into article documents.
#[derive(Debug)]
pub struct WikiXmlReader<R> {
    xml: Reader<R>,
    path: PathBuf,
    buf: Vec<u8>,
    page: Option<Page>,
    field: Field,
    seen_root: bool,
}

impl<R: BufRead> WikiXmlReader<R> {
    /// Reads `reader`, which reads `path`. Fails at once on a UTF-16/UTF-32 byte-order mark.
    pub fn new(mut reader: R, path: &Path) -> Result<Self> {
        let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
        check_bom(head, path)?;
        Ok(Self {
            xml: Reader::from_reader(reader),
            path: path.to_path_buf(),
            buf: Vec::with_capacity(64 * 1024),
            page: None,
            field: Field::None,
            seen_root: false,
        })
    }

    fn malformed(&self, reason: String) -> DataError {
        DataError::Malformed {
            path: self.path.clone(),
            format: "Wikipedia XML",
            location: format!("byte {}", self.xml.buffer_position()),
            reason,
        }
    }

    fn xml_error(&self, error: quick_xml::Error) -> DataError {
        match error {
            quick_xml::Error::Io(io) => {
                DataError::io(&self.path, std::io::Error::new(io.kind(), io.to_string()))
            }
            quick_xml::Error::Encoding(e) => DataError::Encoding {
                path: self.path.clone(),
                encoding: format!("invalid UTF-8 ({e})"),
                location: format!("byte {}", self.xml.error_position()),
            },
            other => DataError::Malformed {
                path: self.path.clone(),
                format: "Wikipedia XML",
                location: format!("byte {}", self.xml.error_position()),
                reason: other.to_string(),
            },
        }
    }

    /// Adds text to the field being collected; text outside a page or a wanted field (the
    /// `<siteinfo>` block, revision metadata) is dropped.
    fn append(&mut self, text: &str) {
        let Some(page) = self.page.as_mut() else {
            return;
        };
        match self.field {
            Field::Title => page.title.push_str(text),
            Field::Namespace => page.namespace.push_str(text),
            Field::Id => page.id.push_str(text),
            Field::Text => page.text.push_str(text),
            Field::None => {}
        }
    }

    /// Refuses a declared encoding other than UTF-8 up front, naming it: the reader decodes
    /// UTF-8 only, and would otherwise fail (or misread) at the first non-ASCII byte.
    fn check_declaration(&self, decl: &BytesDecl<'_>) -> Result<()> {
        if let Some(Ok(encoding)) = decl.encoding() {
            let name = encoding.to_ascii_lowercase();
            if name != "utf-8" && name != "utf8" {
                return Err(DataError::Encoding {
                    path: self.path.clone(),
                    encoding: format!("declared encoding {encoding}"),
                    location: "the XML declaration".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Opens a page or chooses the field whose text is collected next. The page id is the
    /// first `<id>` outside `<revision>` (revisions and contributors have ids of their own),
    /// and only the revision's `<text>` is the article.
    fn start_element(&mut self, start: &BytesStart<'_>) {
        let name = start.local_name().into_inner().to_owned();
        self.seen_root = true;
        match (name.as_str(), self.page.as_mut()) {
            ("page", _) => self.page = Some(Page::default()),
            ("revision", Some(page)) => page.in_revision = true,
            ("title", Some(_)) => self.field = Field::Title,
            ("ns", Some(_)) => self.field = Field::Namespace,
            ("id", Some(page)) if !page.in_revision && page.id.is_empty() => {
                self.field = Field::Id;
            }
            ("text", Some(page)) if page.in_revision => self.field = Field::Text,
            ("redirect", Some(page)) => page.redirect = true,
            _ => {}
        }
    }

    /// An empty element only matters as `<redirect/>`, which marks the page a redirect.
    fn empty_element(&mut self, empty: &BytesStart<'_>) {
        if let (b"redirect", Some(page)) =
            (empty.local_name().into_inner().as_bytes(), self.page.as_mut())
        {
            page.redirect = true;
        }
    }

    /// The text of a character or entity reference. Without a DTD only the five predefined
    /// entities exist; any other is an error rather than text silently dropped.
    fn resolve_reference(&self, reference: &BytesRef<'_>) -> Result<String> {
        match reference.resolve_char_ref() {
            Ok(Some(c)) => Ok(c.to_string()),
            Ok(None) => match &**reference {
                "amp" => Ok("&".to_owned()),
                "lt" => Ok("<".to_owned()),
                "gt" => Ok(">".to_owned()),
                "quot" => Ok("\"".to_owned()),
                "apos" => Ok("'".to_owned()),
                other => Err(self.malformed(format!("unknown entity &{other};"))),
            },
            Err(e) => Err(self.malformed(e.to_string())),
        }
    }

    /// Closes the current field; at `</page>`, the page's document, unless it is not an
    /// article (redirect, other namespace, no text), in which case reading goes on.
    fn end_element(&mut self, end: &BytesEnd<'_>) -> Option<Document> {
        self.field = Field::None;
        match end.local_name().into_inner() {
            "revision" => {
                if let Some(page) = self.page.as_mut() {
                    page.in_revision = false;
                }
                None
            }
            "page" => self.page.take().and_then(article),
            _ => None,
        }
    }

    /// The end of the input is clean only outside a page and after some element, so a
    /// truncated download or a file that is not XML is an error, not a short or empty corpus.
    fn end_of_input(&self) -> Result<Option<Document>> {
        if self.page.is_some() {
            return Err(self.malformed("input ends inside a <page>".to_owned()));
        }
        if !self.seen_root {
            return Err(self.malformed("no XML element found".to_owned()));
        }
        Ok(None)
    }
}

impl<R: BufRead> DocumentSource for WikiXmlReader<R> {
    fn next_document(&mut self) -> Result<Option<Document>> {
        loop {
            self.buf.clear();
            let event = match self.xml.read_event_into(&mut self.buf) {
                Ok(event) => event.into_owned(),
                Err(e) => return Err(self.xml_error(e)),
            };
            match event {
                Event::Decl(decl) => self.check_declaration(&decl)?,
                Event::Start(start) => self.start_element(&start),
                Event::Empty(empty) => self.empty_element(&empty),
                Event::Text(text) => self.append(&text.xml10_content()),
                Event::CData(data) => self.append(&data.xml10_content()),
                Event::GeneralRef(reference) => {
                    let resolved = self.resolve_reference(&reference)?;
                    self.append(&resolved);
                }
                Event::End(end) => {
                    if let Some(doc) = self.end_element(&end) {
                        return Ok(Some(doc));
                    }
                }
                Event::Eof => return self.end_of_input(),
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }
}

/// The document for an article page; `None` for redirects, other namespaces and empty pages.
fn article(page: Page) -> Option<Document> {
    let is_redirect = page.redirect
        || page.text.trim_start().get(..9).is_some_and(|s| s.eq_ignore_ascii_case("#redirect"));
    if page.namespace.trim() != "0" || is_redirect {
        return None;
    }
    let mut sentences = Vec::new();
    for paragraph in wikitext_to_paragraphs(&page.text) {
        push_sentences(&paragraph, &mut sentences);
    }
    (!sentences.is_empty()).then(|| Document {
        id: page.id.trim().to_owned(),
        title: Some(page.title),
        sentences,
    })
}

#[cfg(test)]
#[path = "wikixml_test.rs"]
mod tests;
