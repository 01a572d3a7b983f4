//! Verification of a shard as it is opened: the header against the file, one pass over the
//! body for both checksums, then the index tables. Only `Shard::open` uses it; nothing here
//! hands out bytes that have not passed every check before them.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::format::{HEADER_BYTES, MAGIC, VERSION};
use crate::error::{DataError, Result};

/// Bytes hashed per read while verifying.
const VERIFY_CHUNK: usize = 1 << 20;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A verification failure in `path`, located at byte `offset`.
fn corrupt(path: &Path, offset: u64, reason: String) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        format: "shard",
        location: format!("byte {offset}"),
        reason,
    }
}

/// A shard's header, checked against the file it starts: nothing after it is interpreted
/// until its magic, version, token width and implied size are known to be right.
pub(super) struct Header {
    /// The raw bytes, which the whole-file checksum covers.
    bytes: [u8; HEADER_BYTES],
    /// Bytes per token id (2 or 4).
    pub(super) width: usize,
    /// Number of examples `n`.
    examples: u64,
    /// Number of tokens `t`.
    tokens: u64,
    /// The file size, equal to the size the header implies.
    size: u64,
    /// Bytes of the index tables that start the body.
    pub(super) tables_len: usize,
}

impl Header {
    /// Reads the header from the start of `file` and checks it. The size is checked before
    /// any table is allocated, so a corrupt count cannot make us allocate or read past the end.
    pub(super) fn read(file: &mut File, path: &Path) -> Result<Self> {
        let size = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        if size < HEADER_BYTES as u64 {
            return Err(corrupt(
                path,
                size,
                format!("truncated: {size} bytes, the header needs {HEADER_BYTES}"),
            ));
        }
        let mut bytes = [0u8; HEADER_BYTES];
        file.read_exact(&mut bytes).map_err(|e| DataError::io(path, e))?;
        if &bytes[..8] != MAGIC {
            return Err(corrupt(path, 0, "not a shard (bad magic)".to_owned()));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            let reason = format!("shard version {version}, this build reads {VERSION}");
            return Err(corrupt(path, 8, reason));
        }
        let width = usize::from(bytes[12]);
        if width != 2 && width != 4 {
            return Err(corrupt(path, 12, format!("token width {width} is not 2 or 4")));
        }
        let (n, t) = (u64_at(&bytes, 16), u64_at(&bytes, 24));
        if implied_size(n, t, width) != Some(size) {
            return Err(corrupt(
                path,
                size,
                format!(
                    "size {size} does not match the header ({n} examples, {t} tokens): \
                     truncated or extended"
                ),
            ));
        }
        // Cannot overflow u64 now that the size matched; usize can be narrower.
        let tables_len = usize::try_from(8 * (n + 1) + 3 * n)
            .map_err(|_| corrupt(path, 16, format!("{n} examples do not fit in memory")))?;
        Ok(Self { bytes, width, examples: n, tokens: t, size, tables_len })
    }

    /// The SHA-256 of the body recorded when the shard was written.
    fn body_sha256(&self) -> &[u8] {
        &self.bytes[32..64]
    }
}

/// The file size a header of `n` examples and `t` tokens of `width` bytes implies; `None` if
/// it overflows, which only a corrupt header can cause.
fn implied_size(n: u64, t: u64, width: usize) -> Option<u64> {
    n.checked_add(1)
        .and_then(|x| x.checked_mul(8))
        .and_then(|x| x.checked_add(n.checked_mul(3)?))
        .and_then(|x| x.checked_add(t.checked_mul(width as u64)?))
        .and_then(|x| x.checked_add(HEADER_BYTES as u64))
}

/// What one pass over the body yields: its index tables, still unverified, and the two hashes
/// that decide whether they can be trusted.
pub(super) struct Body {
    tables: Vec<u8>,
    /// Hash of everything after the header (the content checksum in the header).
    body_hash: Sha256,
    /// Hash of the whole file (the checksum the manifest records).
    file_hash: Sha256,
}

/// Reads the body once, in chunks, hashing it two ways and keeping only the index tables, so
/// verifying a shard never holds its token ids in memory.
pub(super) fn read_body(file: &mut File, path: &Path, header: &Header) -> Result<Body> {
    let mut body = Body {
        tables: Vec::with_capacity(header.tables_len),
        body_hash: Sha256::new(),
        file_hash: Sha256::new(),
    };
    body.file_hash.update(header.bytes);
    let mut chunk = vec![0u8; VERIFY_CHUNK];
    let mut position = HEADER_BYTES as u64;
    loop {
        let read = file.read(&mut chunk).map_err(|e| DataError::io(path, e))?;
        if read == 0 {
            break;
        }
        let data = &chunk[..read];
        body.body_hash.update(data);
        body.file_hash.update(data);
        let wanted = header.tables_len.saturating_sub(body.tables.len()).min(read);
        body.tables.extend_from_slice(&data[..wanted]);
        position += read as u64;
    }
    // The size was checked before the pass; a different count now means the file changed.
    if position != header.size {
        return Err(corrupt(path, position, "the file changed while it was verified".to_owned()));
    }
    Ok(body)
}

impl Body {
    /// The index tables, once the content checksum matches the header and, when the manifest
    /// recorded one, the file checksum matches the manifest.
    pub(super) fn verified_tables(
        self,
        path: &Path,
        header: &Header,
        expected_sha256: Option<&str>,
    ) -> Result<Vec<u8>> {
        if self.body_hash.finalize().as_slice() != header.body_sha256() {
            return Err(corrupt(
                path,
                HEADER_BYTES as u64,
                "content checksum mismatch: the shard was altered".to_owned(),
            ));
        }
        if let Some(expected) = expected_sha256 {
            let actual = hex::encode(self.file_hash.finalize());
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(corrupt(
                    path,
                    0,
                    format!("file checksum {actual} differs from the manifest's {expected}"),
                ));
            }
        }
        Ok(self.tables)
    }
}

/// The decoded index tables: where each example's tokens start and end, its segment A length
/// and its SOP label.
pub(super) struct Index {
    pub(super) offsets: Vec<u64>,
    pub(super) segment_a: Vec<u16>,
    pub(super) sop: Vec<u8>,
}

impl Index {
    /// Decodes verified tables. A matching checksum does not prove the writer was right, so
    /// the offsets are also checked to cover exactly the header's tokens, in order: `example`
    /// then never reads outside the token area.
    pub(super) fn parse(tables: &[u8], header: &Header, path: &Path) -> Result<Self> {
        let n = header.examples as usize;
        let offsets: Vec<u64> = (0..=n).map(|i| u64_at(tables, 8 * i)).collect();
        let a_at = 8 * (n + 1);
        let segment_a: Vec<u16> = tables[a_at..a_at + 2 * n]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let sop = tables[a_at + 2 * n..].to_vec();
        let monotonic = offsets.windows(2).all(|w| w[0] <= w[1]);
        if offsets.first() != Some(&0) || offsets.last() != Some(&header.tokens) || !monotonic {
            return Err(corrupt(
                path,
                HEADER_BYTES as u64,
                "example offsets are inconsistent".to_owned(),
            ));
        }
        Ok(Self { offsets, segment_a, sop })
    }
}
