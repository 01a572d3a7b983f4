//! The data pipeline: corpus readers (Wikipedia XML, WikiExtractor, JSON Lines, parquet, plain
//! text and books, behind one reader loop), the ALBERT tokenizer, SOP pairs with n-gram masking and the exactly-once sampler.
//!
//! Invariants:
//! - an epoch's sample order is a pure function of (seed, epoch); a position in that order names
//!   one sample on every worker;
//! - masking is a pure function of (seed, epoch, sample id);
//! - readers stream: memory is bounded by the longest document, not by the corpus;
//! - preparing the same inputs with the same settings gives byte-identical shards;
//! - a shard whose size or checksums disagree with its header or the manifest is never read.
//!
//! The pipeline, as the CLI drives it:
//! 1. [`expand_inputs`] turns paths, directories and `*` patterns into files;
//!    [`sniff_format`] / [`read_documents`] read each into [`Document`]s (sentences);
//! 2. [`AlbertTokenizer::from_file`] loads a `tokenizer.json`, or [`train_tokenizer`] makes one;
//! 3. [`prepare()`] tokenises, builds SOP examples ([`create_examples`]) and writes shards, the
//!    manifest and a copy of the tokenizer into one directory;
//! 4. at training time [`Dataset::open`] verifies it, [`EpochSampler`] orders sample ids per
//!    epoch (which positions a rank reads is the protocol's `DataCursor::split`),
//!    [`Dataset::sample`] masks on read ([`mask_example`]) and [`collate`] pads a batch into
//!    arrays.

pub mod batch;
pub mod dataset;
pub mod error;
pub mod example;
pub mod input;
pub mod inspect;
pub mod manifest;
pub mod masking;
pub mod prepare;
pub mod reader;
pub mod sampler;
pub mod segment;
pub mod shard;
pub mod tokenizer;
pub mod tokenizer_train;

#[cfg(test)]
pub(crate) mod test_support;

pub use batch::{Batch, collate};
pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use example::{Example, ExampleConfig, create_examples};
pub use input::expand_inputs;
pub use inspect::render_sample;
pub use manifest::Manifest;
pub use masking::{MaskedExample, MaskingConfig, MaskingVocab, mask_example};
pub use prepare::{PrepareConfig, PrepareSummary, Progress, prepare};
pub use reader::{Documents, Format, ReaderOptions, read_all, read_documents, sniff_format};
pub use sampler::EpochSampler;
pub use segment::Document;
pub use tokenizer::AlbertTokenizer;
pub use tokenizer_train::{TrainTokenizerConfig, train_tokenizer};
