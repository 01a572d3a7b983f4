//! JSON Lines logs that a process may be killed while writing: every complete line is read, a
//! torn last line is ignored, and a bad line anywhere else is an error.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// Reads every complete line of `path` as a `T`; a missing file reads as no lines.
pub fn read<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let torn_last = !text.ends_with('\n');
    let count = text.lines().count();
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(parsed) => lines.push(parsed),
            Err(e) if number + 1 == count && torn_last => {
                tracing::debug!(error = %e, path = %path.display(), "ignoring a torn last line");
            }
            Err(e) => {
                return Err(e).with_context(|| format!("{}:{}", path.display(), number + 1));
            }
        }
    }
    Ok(lines)
}
