//! `corrupt-checkpoint:latest@end`: damage the newest checkpoint and check that a restart
//! would name it and resume from the previous one.

use std::path::Path;

use anyhow::Context;

use crate::summary::unix_ms;

/// What `corrupt-checkpoint:latest@end` damaged, how it was caught, and where a restart
/// resumes: the same manifest check a cold start runs before loading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointDamage {
    pub corrupted: String,
    pub step: u64,
    pub unix_ms: u64,
    /// The verification error naming the damaged file.
    pub detected: Option<String>,
    /// The newest checkpoint that still verifies.
    pub resumes_from: Option<String>,
}

/// Flips bytes in the middle of the newest checkpoint's weights, then checks that
/// verification names it and finds the previous checkpoint intact.
///
/// # Errors
/// When there is no checkpoint or the files cannot be read or written.
pub fn corrupt_newest_checkpoint(root: &Path) -> anyhow::Result<CheckpointDamage> {
    use albatross_worker::checkpoint::{list, verify};
    let checkpoints = list(root)?;
    let (step, newest) =
        checkpoints.last().with_context(|| format!("no checkpoint in {}", root.display()))?;
    let weights = newest.join("model.safetensors");
    let mut bytes =
        std::fs::read(&weights).with_context(|| format!("cannot read {}", weights.display()))?;
    let middle = bytes.len() / 2;
    for byte in bytes.iter_mut().skip(middle).take(16) {
        *byte ^= 0xFF;
    }
    std::fs::write(&weights, &bytes)
        .with_context(|| format!("cannot write {}", weights.display()))?;
    let unix_ms = unix_ms();
    let detected = verify(newest).err().map(|e| e.to_string());
    let resumes_from = checkpoints
        .iter()
        .rev()
        .skip(1)
        .find(|(_, dir)| verify(dir).is_ok())
        .map(|(_, dir)| dir.display().to_string());
    tracing::info!(checkpoint = %newest.display(), ?detected, ?resumes_from, "checkpoint corrupted");
    Ok(CheckpointDamage {
        corrupted: newest.display().to_string(),
        step: *step,
        unix_ms,
        detected,
        resumes_from,
    })
}
