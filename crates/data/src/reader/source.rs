//! The one reader loop: every corpus reader produces documents one at a time, and this turns
//! that into an iterator that ends for good after the last document or the first error.

use crate::error::Result;
use crate::segment::Document;

/// A reader of one input: its next document, or `None` at the end of the input.
pub trait DocumentSource {
    /// # Errors
    /// Input that cannot be read or is malformed, naming the file and where in it.
    fn next_document(&mut self) -> Result<Option<Document>>;

    /// The documents, as an iterator.
    fn documents(self) -> DocumentIter<Self>
    where
        Self: Sized,
    {
        DocumentIter { source: self, done: false }
    }
}

/// A reader's documents; after its last document or its first error it yields nothing more.
#[derive(Debug)]
pub struct DocumentIter<S> {
    source: S,
    done: bool,
}

impl<S: DocumentSource> Iterator for DocumentIter<S> {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.source.next_document();
        self.done = !matches!(next, Ok(Some(_)));
        next.transpose()
    }
}
