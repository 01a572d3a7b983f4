//! An append-only JSON Lines file, shared by the operator logs (`--metrics-log`,
//! `--events-log`).
//!
//! The file is opened in append mode (a restarted coordinator continues it) and flushed after
//! every line, so a crash loses at most the line being written. Each log decides what to do
//! about a write failure; both log it and go on.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::CoordinatorError;

/// One open JSON Lines file.
#[derive(Debug)]
pub(crate) struct JsonLines {
    path: PathBuf,
    file: File,
}

impl JsonLines {
    /// Open `path` for appending, creating it if missing. Done once at start-up, so a wrong
    /// path is reported before training begins rather than as a warning per line.
    ///
    /// # Errors
    /// [`CoordinatorError::Io`] when the file cannot be opened for appending.
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| CoordinatorError::Io { path: path.to_owned(), source })?;
        Ok(Self { path: path.to_owned(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `line` as one JSON object and a newline, then flush.
    ///
    /// # Errors
    /// When `line` cannot be serialised or the write or flush fails.
    pub fn append(&mut self, line: &impl Serialize) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        // One write call per line, so concurrent readers never see half a line from us followed
        // by another writer's bytes.
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.file.flush()
    }
}

/// Wall-clock milliseconds since the Unix epoch, as the logs stamp their lines (0 if the clock
/// is before 1970).
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every line of a JSON-lines file, parsed (tests of the logs written with [`JsonLines`]).
#[cfg(test)]
pub(crate) fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read the log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
        .collect()
}
