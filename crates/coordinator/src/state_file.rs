//! Durable coordinator state in `--state-dir`: one small TOML file with a checksum header,
//! written atomically (temp file, fsync, rename, fsync of the directory). The previous good
//! copy is kept as `state.prev.toml` and used when the current file is missing or corrupt.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use albatross_proto::domain::{CheckpointRef, DataCursor, Generation, Sha256Digest};
use albatross_proto::job::JobSpec;
use serde::{Deserialize, Serialize};

use crate::effect::Durable;
use crate::error::CoordinatorError;

const CURRENT: &str = "state.toml";
const PREVIOUS: &str = "state.prev.toml";
const TEMP: &str = "state.toml.tmp";
const HEADER: &str = "# albatross coordinator state, sha256 of the rest: ";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: u32,
    job_name: String,
    job_fingerprint: String,
    epoch_size: u64,
    generation: u64,
    committed_step: u64,
    aborted_steps: u64,
    /// Added after format 1 was first written: files without it load as 0.
    #[serde(default)]
    skipped_steps: u64,
    /// Added after format 1 was first written: files without it load as 0 (unknown), which
    /// matches no worker's pending vote, so none applies gradients on that account.
    #[serde(default)]
    committed_generation: u64,
    /// Added after format 1 was first written: files without it load as 0.
    #[serde(default)]
    recoveries: u64,
    /// Added after format 1 was first written: files without it load as 0 (unknown: the
    /// first quorum after a restart forms as before, without waiting for anyone).
    #[serde(default)]
    last_quorum_size: u64,
    /// Added after format 1 was first written: absent in files of jobs not in exact mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kernel_set: Option<String>,
    cursor: CursorRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint: Option<CheckpointRecord>,
    /// The job spec in canonical form, for operators and for a coordinator started without one.
    job_toml: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorRecord {
    epoch: u64,
    next_sample: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointRecord {
    step: u64,
    path: String,
    manifest_sha256: String,
    cursor: CursorRecord,
}

/// State read back from the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub durable: Durable,
    /// Set when the current file was unusable and the previous copy was used: why.
    pub fell_back: Option<String>,
}

/// The state directory of one job.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    job_name: String,
    job_fingerprint: Sha256Digest,
    job_toml: String,
    epoch_size: u64,
}

impl StateStore {
    /// The state directory `dir` (created if missing) for `job` over `epoch_size` samples.
    ///
    /// # Errors
    /// [`CoordinatorError::Io`] when the directory cannot be created.
    pub fn open(dir: &Path, job: &JobSpec, epoch_size: u64) -> Result<Self, CoordinatorError> {
        fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        Ok(Self {
            dir: dir.to_owned(),
            job_name: job.name.clone(),
            job_fingerprint: job.fingerprint(),
            job_toml: job.to_canonical_toml(),
            epoch_size,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The persisted state, if any.
    ///
    /// # Errors
    /// [`CoordinatorError::Corrupt`] when the current file is corrupt and no intact previous copy
    /// exists; [`CoordinatorError::ForeignState`] when the state belongs to another job or data
    /// set; [`CoordinatorError::Io`] on read errors.
    pub fn load(&self) -> Result<Option<Restored>, CoordinatorError> {
        let current = self.dir.join(CURRENT);
        let previous = self.dir.join(PREVIOUS);
        let (record, fell_back) = match read(&current)? {
            Some(Ok(record)) => (record, None),
            found => {
                let unusable = match found {
                    Some(Err(reason)) => Unusable::Corrupt(reason),
                    _ => Unusable::Missing,
                };
                let why = unusable.describe(&current);
                match read(&previous)? {
                    Some(Ok(record)) => (record, Some(why)),
                    Some(Err(reason)) => {
                        return Err(CoordinatorError::Corrupt {
                            path: current,
                            reason: format!(
                                "{why}, and the previous copy is corrupt too: {reason}"
                            ),
                        });
                    }
                    None if matches!(unusable, Unusable::Corrupt(_)) => {
                        return Err(CoordinatorError::Corrupt {
                            path: current,
                            reason: format!("{why}, and there is no previous copy"),
                        });
                    }
                    None => return Ok(None),
                }
            }
        };
        self.check_owner(&record)?;
        Ok(Some(Restored { durable: to_durable(&record)?, fell_back }))
    }

    /// Persist `durable` atomically. The file it replaces becomes the previous copy.
    ///
    /// # Errors
    /// [`CoordinatorError::Io`] when any write, fsync or rename fails.
    pub fn save(&self, durable: &Durable) -> Result<(), CoordinatorError> {
        let record = Record {
            format: FORMAT,
            job_name: self.job_name.clone(),
            job_fingerprint: self.job_fingerprint.to_hex(),
            epoch_size: self.epoch_size,
            generation: durable.generation.0,
            committed_step: durable.committed_step,
            aborted_steps: durable.aborted_steps,
            skipped_steps: durable.skipped_steps,
            committed_generation: durable.committed_generation.0,
            recoveries: durable.recoveries,
            last_quorum_size: durable.last_quorum_size,
            kernel_set: durable.kernel_set.clone(),
            cursor: cursor_record(durable.cursor),
            checkpoint: durable.latest_checkpoint.as_ref().map(|c| CheckpointRecord {
                step: c.step,
                path: c.path.clone(),
                manifest_sha256: c.manifest_sha256.to_hex(),
                cursor: cursor_record(c.cursor),
            }),
            job_toml: self.job_toml.clone(),
        };
        let body = toml::to_string(&record)
            .map_err(|e| CoordinatorError::Config(format!("cannot encode the state: {e}")))?;
        let text = format!("{HEADER}{}\n{body}", Sha256Digest::of(&body).to_hex());
        let temp = self.dir.join(TEMP);
        let current = self.dir.join(CURRENT);
        let mut file = File::create(&temp).map_err(|e| io(&temp, e))?;
        file.write_all(text.as_bytes()).map_err(|e| io(&temp, e))?;
        file.sync_all().map_err(|e| io(&temp, e))?;
        drop(file);
        if current.exists() {
            let previous = self.dir.join(PREVIOUS);
            fs::rename(&current, &previous).map_err(|e| io(&previous, e))?;
        }
        fs::rename(&temp, &current).map_err(|e| io(&current, e))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io(&self.dir, e))
    }

    fn check_owner(&self, record: &Record) -> Result<(), CoordinatorError> {
        let foreign =
            |reason: String| CoordinatorError::ForeignState { dir: self.dir.clone(), reason };
        if record.job_fingerprint != self.job_fingerprint.to_hex() {
            return Err(foreign(format!(
                "it holds job {} with fingerprint {}, not {} with {}",
                record.job_name, record.job_fingerprint, self.job_name, self.job_fingerprint
            )));
        }
        if record.epoch_size != self.epoch_size {
            return Err(foreign(format!(
                "its data set has {} samples per epoch, not {}",
                record.epoch_size, self.epoch_size
            )));
        }
        Ok(())
    }
}

/// Why the current state file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unusable {
    Missing,
    /// It exists but cannot be trusted: why.
    Corrupt(String),
}

impl Unusable {
    /// The sentence operators read (`<path> is corrupt: <reason>`).
    fn describe(&self, path: &Path) -> String {
        match self {
            Self::Missing => format!("{} is missing", path.display()),
            Self::Corrupt(reason) => format!("{} is corrupt: {reason}", path.display()),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> CoordinatorError {
    CoordinatorError::Io { path: path.to_owned(), source }
}

fn cursor_record(c: DataCursor) -> CursorRecord {
    CursorRecord { epoch: c.epoch, next_sample: c.next_sample }
}

/// `None` when the file does not exist, `Some(Err(reason))` when it cannot be trusted.
fn read(path: &Path) -> Result<Option<Result<Record, String>>, CoordinatorError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    Ok(Some(parse(&bytes)))
}

fn parse(bytes: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let (header, body) = text.split_once('\n').ok_or("no header line")?;
    let digest =
        header.strip_prefix(HEADER).ok_or("the header line is not an albatross state header")?;
    let actual = Sha256Digest::of(body).to_hex();
    if digest != actual {
        return Err(format!("checksum mismatch: header says {digest}, content hashes to {actual}"));
    }
    let record: Record = toml::from_str(body)
        .map_err(|e| format!("invalid content: {}", e.to_string().trim_end()))?;
    if record.format != FORMAT {
        return Err(format!("format {} is not the supported {FORMAT}", record.format));
    }
    Ok(record)
}

fn to_durable(r: &Record) -> Result<Durable, CoordinatorError> {
    let latest_checkpoint = match &r.checkpoint {
        None => None,
        Some(c) => {
            let digest = hex::decode(&c.manifest_sha256)
                .ok()
                .and_then(|b| Sha256Digest::try_from(b.as_slice()).ok())
                .ok_or_else(|| CoordinatorError::Corrupt {
                    path: PathBuf::from(CURRENT),
                    reason: format!(
                        "checkpoint.manifest_sha256 {:?} is not a SHA-256 hex digest",
                        c.manifest_sha256
                    ),
                })?;
            Some(CheckpointRef {
                step: c.step,
                path: c.path.clone(),
                manifest_sha256: digest,
                cursor: DataCursor { epoch: c.cursor.epoch, next_sample: c.cursor.next_sample },
            })
        }
    };
    Ok(Durable {
        generation: Generation(r.generation),
        committed_step: r.committed_step,
        cursor: DataCursor { epoch: r.cursor.epoch, next_sample: r.cursor.next_sample },
        latest_checkpoint,
        aborted_steps: r.aborted_steps,
        skipped_steps: r.skipped_steps,
        committed_generation: Generation(r.committed_generation),
        recoveries: r.recoveries,
        last_quorum_size: r.last_quorum_size,
        kernel_set: r.kernel_set.clone(),
    })
}

#[cfg(test)]
#[path = "state_file_test.rs"]
mod tests;
