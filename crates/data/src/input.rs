//! Opening inputs: transparent `.bz2` (including multistream) decompression and UTF-8 lines
//! with their line numbers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Bytes every bzip2 stream starts with.
const BZIP2_MAGIC: &[u8] = b"BZh";
/// Read buffer size for inputs.
const BUFFER_BYTES: usize = 256 * 1024;

/// Opens `path` for buffered reading, decompressing bzip2 (detected by its magic bytes, so the
/// extension does not matter). Multistream files (Wikipedia's `*-multistream.xml.bz2`) are read
/// to the end of the last stream.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, file);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.starts_with(BZIP2_MAGIC) {
        let decoder = bzip2::bufread::MultiBzDecoder::new(reader);
        Ok(Box::new(BufReader::with_capacity(BUFFER_BYTES, decoder)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Reads up to `n` bytes from the start of `path` (decompressed if bzip2), for format sniffing.
pub fn head(path: &Path, n: usize) -> Result<Vec<u8>> {
    let reader = open(path)?;
    let mut out = Vec::with_capacity(n);
    reader.take(n as u64).read_to_end(&mut out).map_err(|e| DataError::io(path, e))?;
    Ok(out)
}

/// UTF-8 lines of an input with 1-based line numbers; invalid UTF-8 is an error naming the line.
#[derive(Debug)]
pub struct Lines<R> {
    reader: R,
    path: PathBuf,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    /// Wraps `reader`, which reads `path`.
    pub fn new(reader: R, path: &Path) -> Self {
        Self { reader, path: path.to_path_buf(), line: 0, buf: Vec::new() }
    }

    /// The file these lines come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The 1-based number of the line last returned.
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// The next line without its `\n` / `\r\n`, or `None` at the end of input.
    pub fn next_line(&mut self) -> Result<Option<&str>> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| DataError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let mut bytes: &[u8] = &self.buf;
        if self.line == 1 {
            check_bom(bytes, &self.path)?;
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        std::str::from_utf8(bytes).map(Some).map_err(|e| DataError::Encoding {
            path: self.path.clone(),
            encoding: "invalid UTF-8".to_owned(),
            location: format!("line {} byte {}", self.line, e.valid_up_to() + 1),
        })
    }
}

/// Fails with the encoding's name when `bytes` start with a UTF-16 or UTF-32 byte-order mark.
pub fn check_bom(bytes: &[u8], path: &Path) -> Result<()> {
    let found = if bytes.starts_with(&[0x00, 0x00, 0xFE, 0xFF]) {
        Some("UTF-32BE")
    } else if bytes.starts_with(&[0xFF, 0xFE, 0x00, 0x00]) {
        Some("UTF-32LE")
    } else if bytes.starts_with(&[0xFE, 0xFF]) {
        Some("UTF-16BE")
    } else if bytes.starts_with(&[0xFF, 0xFE]) {
        Some("UTF-16LE")
    } else {
        None
    };
    match found {
        Some(encoding) => Err(DataError::Encoding {
            path: path.to_path_buf(),
            encoding: format!("{encoding} byte-order mark"),
            location: "byte 0".to_owned(),
        }),
        None => Ok(()),
    }
}

/// Expands command-line inputs into files, in order: a directory gives every non-hidden file
/// below it (sorted); a `*` or `?` in the last component matches names in its directory
/// (sorted); anything else must be an existing file. A pattern matching nothing is an error.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(pattern) = name.filter(|n| n.contains(['*', '?'])) {
            let dir = match input.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let mut matched: Vec<PathBuf> = list_dir(&dir)?
                .into_iter()
                .filter(|p| {
                    p.file_name().is_some_and(|n| wildcard_match(&pattern, &n.to_string_lossy()))
                })
                .collect();
            if matched.is_empty() {
                return Err(DataError::io(
                    input,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the pattern matches no file",
                    ),
                ));
            }
            matched.sort();
            out.extend(matched);
        } else if input.is_dir() {
            let mut files = Vec::new();
            collect_files(input, &mut files)?;
            files.sort();
            out.extend(files);
        } else {
            std::fs::metadata(input).map_err(|e| DataError::io(input, e))?;
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden {
            paths.push(entry.path());
        }
    }
    Ok(paths)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for path in list_dir(dir)? {
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Shell-style matching of `*` (any run) and `?` (one character).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_strip_bom_and_crlf_and_reject_invalid_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.txt");
        let mut f = File::create(&path).expect("create");
        f.write_all(b"\xEF\xBB\xBFfirst\r\nsecond\n\xFFbad\n").expect("write");
        drop(f);
        let mut lines = Lines::new(open(&path).expect("open"), &path);
        assert_eq!(lines.next_line().expect("line 1"), Some("first"));
        assert_eq!(lines.next_line().expect("line 2"), Some("second"));
        let err = lines.next_line().expect_err("line 3 is not UTF-8");
        let text = err.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("a.txt"), "{text}");
    }

    #[test]
    fn inputs_expand_directories_and_wildcards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        for name in ["b.jsonl", "a.jsonl", "c.txt", ".hidden", "sub/d.jsonl"] {
            std::fs::write(root.join(name), "x").expect("write");
        }
        let got = expand_inputs(&[root.join("*.jsonl")]).expect("glob");
        assert_eq!(got, vec![root.join("a.jsonl"), root.join("b.jsonl")]);
        let got = expand_inputs(&[root.to_path_buf()]).expect("dir");
        let names: Vec<_> = got.iter().map(|p| p.strip_prefix(root).expect("under root")).collect();
        assert_eq!(names, ["a.jsonl", "b.jsonl", "c.txt", "sub/d.jsonl"].map(Path::new));
        assert!(expand_inputs(&[root.join("*.xml")]).is_err());
        let err = expand_inputs(&[root.join("missing.txt")]).expect_err("missing");
        assert!(err.to_string().contains("missing.txt"), "{err}");
        assert!(wildcard_match(
            "enwiki-*-pages-articles?.xml*",
            "enwiki-2024-pages-articles1.xml.bz2"
        ));
        assert!(!wildcard_match("*.xml", "a.xml.bz2"));
    }

    #[test]
    fn utf16_bom_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("u16.txt");
        std::fs::write(&path, b"\xFF\xFEh\x00i\x00").expect("write");
        let mut lines = Lines::new(open(&path).expect("open"), &path);
        let err = lines.next_line().expect_err("utf-16 is refused");
        assert!(err.to_string().contains("UTF-16LE"), "{err}");
    }
}
