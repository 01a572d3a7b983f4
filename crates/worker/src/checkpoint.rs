//! Training checkpoints: one directory per step under the job's checkpoint root,
//! `step-00001000/`, holding
//!
//! - `config.json` + `model.safetensors`: the model exactly as `albatross model export-hf`
//!   writes it (transformers' names and layouts), so `from_pretrained(dir)` loads a checkpoint;
//! - `optimizer.safetensors`: LAMB's moments, `<parameter>.moment_1` / `.moment_2` in burn's
//!   layout (absent before the first update);
//! - `state.json`: step, data cursor, job and layout fingerprints, the replica state hash;
//! - `manifest.json`, written last: size and SHA-256 of every other file.
//!
//! Writing is atomic: everything goes to a hidden temporary directory, each file is fsynced,
//! the directory is renamed into place and the root fsynced, then all but the newest `keep`
//! checkpoints are removed. Reading verifies the manifest before trusting any byte, and the
//! loaded state must reproduce the recorded state hash, so a torn, truncated or edited
//! checkpoint is refused by name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use albatross_model::{
    AlbertConfig, CONFIG_FILE, GradLayout, HfTensor, ParamEntry, WEIGHTS_FILE,
    hf_tensors_from_entries, read_hf_values, read_safetensors, write_safetensors,
};
use albatross_proto::domain::{DataCursor, Sha256Digest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, WorkerError};
use crate::state::{HashAlgorithm, TrainerState};

/// `state.json`.
pub const STATE_FILE: &str = "state.json";
/// `optimizer.safetensors`.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// `manifest.json`, the file that makes a checkpoint complete.
pub const MANIFEST_FILE: &str = "manifest.json";
/// v2 records `state_hash_algorithm`: a build that only knows v1 refuses it by its format
/// instead of misreading it.
const FORMAT: &str = "albatross-checkpoint/v2";
/// Formats this build still reads (v1: state hash by SHA-256).
const READABLE_FORMATS: [&str; 2] = [FORMAT, "albatross-checkpoint/v1"];
const DIR_PREFIX: &str = "step-";

/// What `state.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// `albatross-checkpoint/v2` (or v1 for checkpoints written before BLAKE3 state hashes).
    pub format: String,
    pub job_name: String,
    /// The last step whose update the checkpoint holds.
    pub step: u64,
    /// The data cursor after `step`.
    pub cursor: CursorJson,
    /// Hex SHA-256 of the canonical job spec.
    pub job_fingerprint: String,
    /// Hex fingerprint of the parameter layout.
    pub layout_fingerprint: String,
    /// Hex state hash (parameters and LAMB moments), as replicas vote it.
    pub state_hash: String,
    /// How `state_hash` was computed (`blake3`; absent in checkpoints that predate it, whose
    /// hash is SHA-256).
    #[serde(default = "legacy_hash_algorithm")]
    pub state_hash_algorithm: String,
    pub has_optimizer_state: bool,
    pub written_unix_ms: u64,
}

fn legacy_hash_algorithm() -> String {
    HashAlgorithm::Sha256.name().to_owned()
}

/// A data cursor in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorJson {
    pub epoch: u64,
    pub next_sample: u64,
}

impl From<DataCursor> for CursorJson {
    fn from(c: DataCursor) -> Self {
        Self { epoch: c.epoch, next_sample: c.next_sample }
    }
}

impl From<CursorJson> for DataCursor {
    fn from(c: CursorJson) -> Self {
        Self { epoch: c.epoch, next_sample: c.next_sample }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    bytes: u64,
    sha256: String,
}

/// Everything a checkpoint is written from.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointContents<'a> {
    pub job_name: &'a str,
    pub job_fingerprint: Sha256Digest,
    pub step: u64,
    pub cursor: DataCursor,
    pub config: &'a AlbertConfig,
    pub layout: &'a GradLayout,
    pub state: &'a TrainerState,
}

/// A verified checkpoint read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCheckpoint {
    pub dir: PathBuf,
    pub meta: CheckpointMeta,
    pub state: TrainerState,
}

fn error(path: &Path, reason: impl Into<String>) -> WorkerError {
    WorkerError::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WorkerError + '_ {
    move |e| error(path, e.to_string())
}

/// The directory name of step `step`'s checkpoint.
pub fn dir_name(step: u64) -> String {
    format!("{DIR_PREFIX}{step:08}")
}

/// The step a checkpoint directory name stands for (`step-00001000` → 1000).
pub fn step_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(DIR_PREFIX)?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Checkpoint directories under `root`, oldest first. A missing root has none.
pub fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error(root, e.to_string())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(root))?;
        if let Some(step) = entry.file_name().to_str().and_then(step_of)
            && entry.path().is_dir()
        {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes step `contents.step`'s checkpoint under `root` atomically and keeps the newest
/// `keep` (at least 1). Returns the checkpoint's directory and the SHA-256 of its manifest.
pub fn write(
    root: &Path,
    contents: &CheckpointContents<'_>,
    keep: usize,
) -> Result<(PathBuf, Sha256Digest)> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let name = dir_name(contents.step);
    let target = root.join(&name);
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    if let Err(e) = write_files(&tmp, contents) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_dir(&tmp)?;
    let (_, manifest_sha256) = digest_file(&tmp.join(MANIFEST_FILE))?;
    // A checkpoint of the same step (written before a rollback) is replaced, never merged.
    if target.exists() {
        let old = root.join(format!(".old-{name}-{}", std::process::id()));
        std::fs::rename(&target, &old).map_err(io(&target))?;
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
    }
    sync_dir(root)?;
    prune(root, keep)?;
    tracing::info!(dir = %target.display(), step = contents.step, "checkpoint written");
    Ok((target, manifest_sha256))
}

fn write_files(dir: &Path, c: &CheckpointContents<'_>) -> Result<()> {
    c.state.check_sizes(c.layout.len())?;
    let mut files = BTreeMap::new();
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, c.config.to_json_string()).map_err(io(&config_path))?;
    files.insert(CONFIG_FILE, &config_path);

    let entries = c
        .layout
        .entries()
        .iter()
        .map(|e| ParamEntry {
            name: e.name.clone(),
            id: e.id,
            shape: e.shape.clone(),
            values: Some(c.state.parameters[e.offset..e.offset + e.numel].to_vec()),
        })
        .collect();
    let weights_path = dir.join(WEIGHTS_FILE);
    write_safetensors(&weights_path, &hf_tensors_from_entries(entries, c.config)?)?;
    files.insert(WEIGHTS_FILE, &weights_path);

    let has_optimizer_state = !c.state.optimizer.is_empty();
    let optimizer_path = dir.join(OPTIMIZER_FILE);
    if has_optimizer_state {
        let mut tensors = Vec::with_capacity(2 * c.layout.entries().len());
        for e in c.layout.entries() {
            let at = 2 * e.offset;
            for (suffix, start) in [("moment_1", at), ("moment_2", at + e.numel)] {
                tensors.push(HfTensor {
                    name: format!("{}.{suffix}", e.name),
                    shape: e.shape.clone(),
                    values: c.state.optimizer[start..start + e.numel].to_vec(),
                });
            }
        }
        write_safetensors(&optimizer_path, &tensors)?;
        files.insert(OPTIMIZER_FILE, &optimizer_path);
    }

    let meta = CheckpointMeta {
        format: FORMAT.to_owned(),
        job_name: c.job_name.to_owned(),
        step: c.step,
        cursor: c.cursor.into(),
        job_fingerprint: c.job_fingerprint.to_hex(),
        layout_fingerprint: c.layout.fingerprint_hex(),
        state_hash: c.state.hash(&c.layout.fingerprint()).to_hex(),
        state_hash_algorithm: HashAlgorithm::CURRENT.name().to_owned(),
        has_optimizer_state,
        written_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let state_path = dir.join(STATE_FILE);
    write_json(&state_path, &meta)?;
    files.insert(STATE_FILE, &state_path);

    let mut manifest = Manifest { format: FORMAT.to_owned(), files: BTreeMap::new() };
    for (name, path) in files {
        File::open(path).and_then(|f| f.sync_all()).map_err(io(path))?;
        let (bytes, sha256) = digest_file(path)?;
        manifest.files.insert(name.to_owned(), FileEntry { bytes, sha256: sha256.to_hex() });
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    write_json(&manifest_path, &manifest)?;
    File::open(&manifest_path).and_then(|f| f.sync_all()).map_err(io(&manifest_path))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let file = File::create(path).map_err(io(path))?;
    let mut out = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| error(path, e.to_string()))?;
    out.write_all(b"\n").map_err(io(path))?;
    out.into_inner().map_err(|e| error(path, e.to_string()))?.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

fn digest_file(path: &Path) -> Result<(u64, Sha256Digest)> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, Sha256Digest(hasher.finalize().into())))
}

/// Removes all but the newest `keep` (at least 1) checkpoints under `root`, and temporary
/// directories this process left behind.
pub fn prune(root: &Path, keep: usize) -> Result<()> {
    let all = list(root)?;
    let excess = all.len().saturating_sub(keep.max(1));
    for (step, dir) in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        tracing::debug!(step, dir = %dir.display(), "old checkpoint removed");
    }
    Ok(())
}

/// Checks the manifest of `dir` (every listed file present with its size and SHA-256, nothing
/// missing) and returns its `state.json`.
pub fn verify(dir: &Path) -> Result<CheckpointMeta> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| error(&manifest_path, format!("{e} (an unfinished or damaged checkpoint)")))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| error(&manifest_path, format!("not a checkpoint manifest: {e}")))?;
    if !READABLE_FORMATS.contains(&manifest.format.as_str()) {
        return Err(error(
            &manifest_path,
            format!("format {:?}, expected one of {READABLE_FORMATS:?}", manifest.format),
        ));
    }
    for required in [CONFIG_FILE, WEIGHTS_FILE, STATE_FILE] {
        if !manifest.files.contains_key(required) {
            return Err(error(&manifest_path, format!("does not list {required}")));
        }
    }
    for (name, entry) in &manifest.files {
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(error(
                &manifest_path,
                format!("lists a file outside the checkpoint: {name}"),
            ));
        }
        let path = dir.join(name);
        let (bytes, sha) = digest_file(&path)?;
        if bytes != entry.bytes {
            return Err(error(&path, format!("{bytes} bytes, the manifest says {}", entry.bytes)));
        }
        if sha.to_hex() != entry.sha256 {
            return Err(error(
                &path,
                format!("SHA-256 {sha} differs from the manifest's {}", entry.sha256),
            ));
        }
    }
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| error(&state_path, format!("not a checkpoint state file: {e}")))?;
    if meta.format != manifest.format {
        return Err(error(
            &state_path,
            format!("format {:?}, the manifest's {:?}", meta.format, manifest.format),
        ));
    }
    if meta.has_optimizer_state != manifest.files.contains_key(OPTIMIZER_FILE) {
        return Err(error(&manifest_path, "optimizer state and manifest disagree"));
    }
    Ok(meta)
}

/// Reads and verifies the checkpoint in `dir` for a replica with `layout` running the job
/// with fingerprint `job`: manifest, fingerprints, and the state hash of what was read.
pub fn read(dir: &Path, layout: &GradLayout, job: Sha256Digest) -> Result<LoadedCheckpoint> {
    let meta = verify(dir)?;
    if meta.job_fingerprint != job.to_hex() {
        return Err(error(
            dir,
            format!("written by job {}, this job is {job}", meta.job_fingerprint),
        ));
    }
    if meta.layout_fingerprint != layout.fingerprint_hex() {
        return Err(error(
            dir,
            format!(
                "parameter layout {} differs from the model's {}",
                meta.layout_fingerprint,
                layout.fingerprint_hex()
            ),
        ));
    }
    let (_, values) = read_hf_values(dir)?;
    let mut parameters = Vec::with_capacity(layout.len());
    for e in layout.entries() {
        let v = values.get(&e.name).ok_or_else(|| error(dir, format!("{} is missing", e.name)))?;
        parameters.extend_from_slice(v);
    }
    let mut optimizer = Vec::new();
    if meta.has_optimizer_state {
        let path = dir.join(OPTIMIZER_FILE);
        let mut tensors = read_safetensors(&path)?;
        optimizer.reserve(2 * layout.len());
        for e in layout.entries() {
            for suffix in ["moment_1", "moment_2"] {
                let name = format!("{}.{suffix}", e.name);
                let (shape, v) = tensors
                    .remove(&name)
                    .ok_or_else(|| error(&path, format!("{name} is missing")))?;
                if shape != e.shape {
                    return Err(error(
                        &path,
                        format!("{name} has shape {shape:?}, expected {:?}", e.shape),
                    ));
                }
                optimizer.extend_from_slice(&v);
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(error(&path, format!("unexpected tensor {extra}")));
        }
    }
    let state = TrainerState { parameters, optimizer };
    state.check_sizes(layout.len())?;
    let algorithm = HashAlgorithm::from_name(&meta.state_hash_algorithm).ok_or_else(|| {
        error(
            dir,
            format!(
                "unknown state_hash_algorithm {:?} (expected blake3 or sha256)",
                meta.state_hash_algorithm
            ),
        )
    })?;
    let hash = state.hash_with(algorithm, &layout.fingerprint()).to_hex();
    if hash != meta.state_hash {
        return Err(error(
            dir,
            format!("state hash {hash} differs from the recorded {}", meta.state_hash),
        ));
    }
    Ok(LoadedCheckpoint { dir: dir.to_path_buf(), meta, state })
}

/// Checkpoints that failed verification: the directory and why.
pub type Rejected = Vec<(PathBuf, String)>;

/// The newest valid checkpoint under `root` at or before `at_most` (every step when `None`).
/// Each newer one that fails verification is logged as a warning naming it and why, and
/// returned in the second list, so the caller can report it.
pub fn newest_valid(
    root: &Path,
    at_most: Option<u64>,
    layout: &GradLayout,
    job: Sha256Digest,
) -> Result<(Option<LoadedCheckpoint>, Rejected)> {
    let mut rejected = Vec::new();
    for (step, dir) in list(root)?.into_iter().rev() {
        if at_most.is_some_and(|limit| step > limit) {
            continue;
        }
        match read(&dir, layout, job) {
            Ok(loaded) if loaded.meta.step == step => return Ok((Some(loaded), rejected)),
            Ok(loaded) => {
                let why = format!("records step {} but is named for step {step}", loaded.meta.step);
                tracing::warn!(dir = %dir.display(), reason = %why, "checkpoint skipped");
                rejected.push((dir, why));
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "checkpoint is unusable; trying an older one");
                rejected.push((dir, e.to_string()));
            }
        }
    }
    Ok((None, rejected))
}

#[cfg(test)]
#[path = "checkpoint_test.rs"]
mod tests;
