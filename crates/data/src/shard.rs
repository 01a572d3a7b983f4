//! Binary shards of unmasked examples. Layout (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `ALBSHARD` |
//! | 4 | version (1) |
//! | 1 | token width in bytes (2 or 4), then 3 reserved zero bytes |
//! | 8 | number of examples `n` |
//! | 8 | number of tokens `t` |
//! | 32 | SHA-256 of everything after the header |
//! | 8 (n+1) | token offset of each example, then the total |
//! | 2 n | length of `[CLS] A [SEP]` of each example |
//! | n | SOP label of each example |
//! | width t | token ids |
//!
//! A shard is verified (size, then checksums) when opened, before any example is served.

mod format;
mod verification;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::example::Example;
pub use format::{HEADER_BYTES, MAGIC, VERSION};
use verification::{Header, Index, read_body};

/// Collects examples (token ids already at the shard's width) and writes them as one shard.
#[derive(Debug)]
pub struct ShardWriter {
    token_width: u8,
    offsets: Vec<u64>,
    segment_a: Vec<u16>,
    sop: Vec<u8>,
    tokens: Vec<u8>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenShard {
    /// Examples in the shard.
    pub examples: u64,
    /// Tokens in the shard.
    pub tokens: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

impl ShardWriter {
    /// A writer storing token ids in `token_width` bytes (2 or 4).
    pub fn new(token_width: u8) -> Result<Self> {
        if token_width != 2 && token_width != 4 {
            return Err(DataError::InvalidArgument(format!(
                "token width {token_width} is not 2 or 4"
            )));
        }
        Ok(Self {
            token_width,
            offsets: vec![0],
            segment_a: Vec::new(),
            sop: Vec::new(),
            tokens: Vec::new(),
        })
    }

    /// Adds one example; an id too wide for the token width is an error.
    pub fn push(&mut self, example: &Example) -> Result<()> {
        let a_len = u16::try_from(example.segment_a_len).map_err(|_| {
            DataError::InvalidArgument(format!("segment A of {} tokens", example.segment_a_len))
        })?;
        let before = self.tokens.len();
        for &id in &example.input_ids {
            if self.token_width == 2 {
                let Ok(narrow) = u16::try_from(id) else {
                    self.tokens.truncate(before);
                    return Err(DataError::InvalidArgument(format!(
                        "token id {id} does not fit in 2 bytes"
                    )));
                };
                self.tokens.extend_from_slice(&narrow.to_le_bytes());
            } else {
                self.tokens.extend_from_slice(&id.to_le_bytes());
            }
        }
        self.offsets.push(self.token_count());
        self.segment_a.push(a_len);
        self.sop.push(example.sop_label);
        Ok(())
    }

    fn token_count(&self) -> u64 {
        (self.tokens.len() / usize::from(self.token_width)) as u64
    }

    /// Examples collected so far.
    pub fn len(&self) -> usize {
        self.sop.len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.sop.is_empty()
    }

    /// The index tables that start the body (offsets, segment A lengths, SOP labels).
    fn tables(&self) -> Vec<u8> {
        let n = self.len();
        let mut tables = Vec::with_capacity(8 * (n + 1) + 3 * n);
        for offset in &self.offsets {
            tables.extend_from_slice(&offset.to_le_bytes());
        }
        for a in &self.segment_a {
            tables.extend_from_slice(&a.to_le_bytes());
        }
        tables.extend_from_slice(&self.sop);
        tables
    }

    fn header(&self, body_hash: &[u8]) -> Vec<u8> {
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&[self.token_width, 0, 0, 0]);
        header.extend_from_slice(&(self.len() as u64).to_le_bytes());
        header.extend_from_slice(&self.token_count().to_le_bytes());
        header.extend_from_slice(body_hash);
        header
    }

    /// Writes the shard to `path` (through a temporary file renamed into place) and clears
    /// the writer.
    pub fn write(&mut self, path: &Path) -> Result<WrittenShard> {
        let tables = self.tables();
        let mut body_hash = Sha256::new();
        body_hash.update(&tables);
        body_hash.update(&self.tokens);
        let header = self.header(&body_hash.finalize());
        let mut file_hash = Sha256::new();
        for part in [&header, &tables, &self.tokens] {
            file_hash.update(part);
        }
        let tmp = path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        for part in [&header, &tables, &self.tokens] {
            file.write_all(part).map_err(|e| DataError::io(&tmp, e))?;
        }
        file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))?;
        let written = WrittenShard {
            examples: self.len() as u64,
            tokens: self.token_count(),
            sha256: hex::encode(file_hash.finalize()),
            bytes: (header.len() + tables.len() + self.tokens.len()) as u64,
        };
        *self = Self::new(self.token_width)?;
        Ok(written)
    }
}

/// A verified shard: its index tables in memory, token ids read from the file on demand
/// (positioned reads, so memory stays small however large the dataset).
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    file: File,
    width: usize,
    offsets: Vec<u64>,
    segment_a: Vec<u16>,
    sop: Vec<u8>,
    /// File offset of the first token.
    tokens_at: u64,
}

impl Shard {
    /// Opens and verifies `path`: magic, version, exact size, the content checksum and, when
    /// given, the SHA-256 of the whole file recorded in the manifest. The file is read once,
    /// in chunks, to check it; errors name the file and the byte offset.
    pub fn open(path: &Path, expected_sha256: Option<&str>) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let header = Header::read(&mut file, path)?;
        let body = read_body(&mut file, path, &header)?;
        let tables = body.verified_tables(path, &header, expected_sha256)?;
        let index = Index::parse(&tables, &header, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            width: header.width,
            offsets: index.offsets,
            segment_a: index.segment_a,
            sop: index.sop,
            tokens_at: (HEADER_BYTES + header.tables_len) as u64,
        })
    }

    /// The file this shard was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.sop.len()
    }

    /// Whether the shard holds no example.
    pub fn is_empty(&self) -> bool {
        self.sop.is_empty()
    }

    /// Example `index`; `Ok(None)` past the end, an error if the file cannot be read.
    pub fn example(&self, index: usize) -> Result<Option<Example>> {
        let (Some(&start), Some(&end)) = (self.offsets.get(index), self.offsets.get(index + 1))
        else {
            return Ok(None);
        };
        let width = self.width as u64;
        let len = usize::try_from((end - start) * width)
            .map_err(|_| DataError::InvalidArgument(format!("example {index} is too long")))?;
        let mut raw = vec![0u8; len];
        self.file
            .read_exact_at(&mut raw, self.tokens_at + start * width)
            .map_err(|e| DataError::io(&self.path, e))?;
        let input_ids = raw
            .chunks_exact(self.width)
            .map(|c| match *c {
                [a, b] => u32::from(u16::from_le_bytes([a, b])),
                [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
                _ => 0,
            })
            .collect();
        Ok(Some(Example {
            input_ids,
            segment_a_len: usize::from(self.segment_a[index]),
            sop_label: self.sop[index],
        }))
    }
}

#[cfg(test)]
#[path = "shard_test.rs"]
mod tests;
