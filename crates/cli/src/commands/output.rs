//! Where command output goes: stdout (logs go to stderr).

use std::io::Write;

use anyhow::Context;

/// Writes `text` to stdout and flushes it.
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write to stdout")
}
