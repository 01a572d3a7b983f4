//! Wikipedia `pages-articles` XML dumps (plain, `.bz2`, multistream `.bz2`), read as a stream
//! with quick-xml: one document per article in namespace 0 that is not a redirect.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::Event;

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
                Event::Decl(decl) => {
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
                }
                Event::Start(start) => {
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
                Event::Empty(empty) => {
                    if let (b"redirect", Some(page)) =
                        (empty.local_name().into_inner().as_bytes(), self.page.as_mut())
                    {
                        page.redirect = true;
                    }
                }
                Event::Text(text) => {
                    let content = text.xml10_content();
                    self.append(&content);
                }
                Event::CData(data) => {
                    let content = data.xml10_content();
                    self.append(&content);
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match &*reference {
                            "amp" => "&".to_owned(),
                            "lt" => "<".to_owned(),
                            "gt" => ">".to_owned(),
                            "quot" => "\"".to_owned(),
                            "apos" => "'".to_owned(),
                            other => {
                                return Err(self.malformed(format!("unknown entity &{other};")));
                            }
                        },
                        Err(e) => return Err(self.malformed(e.to_string())),
                    };
                    self.append(&resolved);
                }
                Event::End(end) => {
                    self.field = Field::None;
                    match end.local_name().into_inner() {
                        "revision" => {
                            if let Some(page) = self.page.as_mut() {
                                page.in_revision = false;
                            }
                        }
                        "page" => {
                            if let Some(doc) = self.page.take().and_then(article) {
                                return Ok(Some(doc));
                            }
                        }
                        _ => {}
                    }
                }
                Event::Eof => {
                    if self.page.is_some() {
                        return Err(self.malformed("input ends inside a <page>".to_owned()));
                    }
                    if !self.seen_root {
                        return Err(self.malformed("no XML element found".to_owned()));
                    }
                    return Ok(None);
                }
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
