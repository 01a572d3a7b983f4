//! `--expect-hash` and `--reference`: a run checked against an earlier one, which makes a
//! bit-exact fault test one command. The final hash says whether the two runs ended with the
//! same bits; their metrics logs, compared step by step, say where they parted.
//!
//! Every `metrics.jsonl` line carries the state hash the replicas held before its step
//! (`state_before`), and the step's losses and gradient norm, which exact mode makes the same
//! bits in every run. A `state_before` that differs at step k means the state after step k-1
//! differed: the divergence is step k-1 (0 is the initial state). Losses or a gradient norm
//! that differ at step k, with the state before it equal, mean step k diverged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::jsonl;

/// The fields of a `metrics.jsonl` line that exact mode reproduces bit for bit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StepBits {
    pub step: u64,
    /// Absent on lines written before the coordinator logged it.
    pub state_before: Option<String>,
    pub loss: Option<f64>,
    pub mlm_loss: Option<f64>,
    pub sop_loss: Option<f64>,
    pub grad_norm: Option<f64>,
}

/// A run's final hashes (the fields of `summary.json` a check reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FinalHashes {
    /// Parameters and optimizer moments.
    pub final_state_hash: Option<String>,
    pub final_param_hash: Option<String>,
}

/// Which final hash matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    State,
    Parameters,
}

/// Where the expected final hash came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedFrom {
    ExpectHash,
    Reference,
}

/// The field of a metrics line where two runs first differed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepField {
    StateBefore,
    Loss,
    MlmLoss,
    SopLoss,
    GradNorm,
}

impl StepField {
    /// The field's name in `metrics.jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            Self::StateBefore => "state_before",
            Self::Loss => "loss",
            Self::MlmLoss => "mlm_loss",
            Self::SopLoss => "sop_loss",
            Self::GradNorm => "grad_norm",
        }
    }
}

/// Two metrics logs compared step by step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepComparison {
    /// Steps both runs logged.
    pub compared_steps: u64,
    /// The first step whose result differed, and the field that showed it.
    pub divergence: Option<(u64, StepField)>,
}

/// The outcome of the check, in `summary.json` and `chaos-report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    /// `expect_hash`, or `reference`: the reference run's final state hash (its parameter hash
    /// when it has none).
    pub expected_from: ExpectedFrom,
    pub expected_hash: String,
    pub matched: bool,
    /// Which of this run's final hashes equals `expected_hash`; null when neither does.
    pub matched_hash: Option<HashKind>,
    /// The reference run's directory, whose metrics log was compared with this run's; null
    /// without `--reference`.
    pub reference: Option<PathBuf>,
    /// Steps both runs logged (a replayed step counts once, with its last line).
    pub compared_steps: Option<u64>,
    /// The first step whose result differed (0: the initial state), and the field that showed
    /// it; null when every compared step agreed.
    pub first_divergent_step: Option<u64>,
    pub divergent_field: Option<StepField>,
}

/// An earlier run to compare with (`--reference DIR`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub dir: PathBuf,
    /// Its final state hash, or its parameter hash when it has none.
    pub final_hash: String,
    pub steps: Vec<StepBits>,
}

impl Reference {
    /// Reads `dir/summary.json` and `dir/metrics.jsonl`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let (summary, metrics) = (dir.join("summary.json"), dir.join("metrics.jsonl"));
        for path in [&summary, &metrics] {
            if !path.is_file() {
                bail!(
                    "--reference {}: no {} there (give the --out directory of an earlier \
                     `albatross launch`)",
                    dir.display(),
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        }
        let text = std::fs::read_to_string(&summary)
            .with_context(|| format!("cannot read {}", summary.display()))?;
        let hashes: FinalHashes = serde_json::from_str(&text)
            .with_context(|| format!("cannot read the final hashes in {}", summary.display()))?;
        let Some(final_hash) = hashes.final_state_hash.or(hashes.final_param_hash) else {
            bail!("{} has no final hash: the reference run did not finish", summary.display());
        };
        Ok(Self { dir: dir.to_owned(), final_hash, steps: read_steps(&metrics)? })
    }
}

/// What to check a run against.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub from: ExpectedFrom,
    /// The final hash the run must end with (lowercase hex).
    pub hash: String,
    pub reference: Option<Reference>,
}

impl Expect {
    /// The check that `--expect-hash` and `--reference` ask for, `None` when neither was given.
    /// Given both, the final hash is checked against `hash` and the steps against the
    /// reference.
    pub fn load(hash: Option<&str>, reference: Option<&Path>) -> anyhow::Result<Option<Self>> {
        let reference = reference.map(Reference::load).transpose()?;
        Ok(match (hash, reference) {
            (Some(hash), reference) => {
                Some(Self { from: ExpectedFrom::ExpectHash, hash: hash.to_owned(), reference })
            }
            (None, Some(reference)) => Some(Self {
                from: ExpectedFrom::Reference,
                hash: reference.final_hash.clone(),
                reference: Some(reference),
            }),
            (None, None) => None,
        })
    }

    /// Checks a run that ended with `hashes` and logged `steps`.
    pub fn check(&self, hashes: &FinalHashes, steps: &[StepBits]) -> Expectation {
        let matched_hash = matching_hash(&self.hash, hashes);
        let compared = self.reference.as_ref().map(|r| compare_steps(steps, &r.steps));
        let divergence = compared.and_then(|c| c.divergence);
        Expectation {
            expected_from: self.from,
            expected_hash: self.hash.clone(),
            matched: matched_hash.is_some(),
            matched_hash,
            reference: self.reference.as_ref().map(|r| r.dir.clone()),
            compared_steps: compared.map(|c| c.compared_steps),
            first_divergent_step: divergence.map(|(step, _)| step),
            divergent_field: divergence.map(|(_, field)| field),
        }
    }
}

/// Reads the reproducible fields of a metrics log.
pub fn read_steps(path: &Path) -> anyhow::Result<Vec<StepBits>> {
    jsonl::read(path)
}

/// `text` as a final hash: 64 hex digits, lowercased (the value parser of `--expect-hash`).
pub fn parse_hash(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected 64 hex digits (a final hash an earlier run printed), got {text:?} ({} \
             characters)",
            text.chars().count()
        ))
    }
}

/// Which of `hashes` equals `expected`: the state hash (parameters and optimizer moments),
/// else the parameter hash.
pub fn matching_hash(expected: &str, hashes: &FinalHashes) -> Option<HashKind> {
    [(HashKind::State, &hashes.final_state_hash), (HashKind::Parameters, &hashes.final_param_hash)]
        .into_iter()
        .find(|(_, hash)| hash.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(expected)))
        .map(|(kind, _)| kind)
}

/// Compares two metrics logs (in log order) at every step both logged, the last line of a
/// step winning (a step replayed after a rollback is logged again); finds the first step
/// whose result differed.
pub fn compare_steps(this: &[StepBits], reference: &[StepBits]) -> StepComparison {
    let last_lines = |lines: &[StepBits]| -> BTreeMap<u64, StepBits> {
        lines.iter().map(|l| (l.step, l.clone())).collect()
    };
    let (ours, theirs) = (last_lines(this), last_lines(reference));
    let mut comparison = StepComparison::default();
    for (step, ours) in &ours {
        let Some(theirs) = theirs.get(step) else { continue };
        comparison.compared_steps += 1;
        if comparison.divergence.is_none() {
            comparison.divergence = first_difference(ours, theirs).map(|field| match field {
                StepField::StateBefore => (step.saturating_sub(1), field),
                _ => (*step, field),
            });
        }
    }
    comparison
}

/// The first field in which two lines of one step differ: the state before the step (skipped
/// when either line lacks it), then the step's results, compared bit for bit.
fn first_difference(a: &StepBits, b: &StepBits) -> Option<StepField> {
    if let (Some(x), Some(y)) = (&a.state_before, &b.state_before)
        && !x.eq_ignore_ascii_case(y)
    {
        return Some(StepField::StateBefore);
    }
    let bits = |v: Option<f64>| v.map(f64::to_bits);
    [
        (StepField::Loss, a.loss, b.loss),
        (StepField::MlmLoss, a.mlm_loss, b.mlm_loss),
        (StepField::SopLoss, a.sop_loss, b.sop_loss),
        (StepField::GradNorm, a.grad_norm, b.grad_norm),
    ]
    .into_iter()
    .find(|&(_, x, y)| bits(x) != bits(y))
    .map(|(field, ..)| field)
}

impl Expectation {
    /// One line for the terminal: whether the final hash matched and, if not, where the runs
    /// parted.
    pub fn line(&self, deterministic: bool) -> String {
        let against = match self.expected_from {
            ExpectedFrom::ExpectHash => "the expected hash",
            ExpectedFrom::Reference => "the reference",
        };
        let verdict = match self.matched_hash {
            Some(HashKind::State) => format!("final state hash matches {against}"),
            Some(HashKind::Parameters) => format!("final parameter hash matches {against}"),
            None => format!("final hash differs from {against}"),
        };
        let steps = match (self.first_divergent_step, self.divergent_field, self.compared_steps) {
            (Some(0), Some(field), _) => format!(": the initial state differs ({})", field.name()),
            (Some(step), Some(field), _) => {
                format!(": first divergent step {step} ({})", field.name())
            }
            (_, _, Some(n)) if !self.matched => format!(": the {n} steps both runs logged agree"),
            (_, _, Some(n)) => format!(", {n} logged steps identical"),
            _ => String::new(),
        };
        let mode = if deterministic { "exact mode" } else { "the job was not in exact mode" };
        format!("{verdict}{steps} ({mode})\n")
    }

    /// Why the run fails the check (naming both hashes and where the runs parted), or `None`
    /// when it passed.
    pub fn failure(&self, hashes: &FinalHashes) -> Option<String> {
        if self.matched {
            return None;
        }
        let hash = |h: &Option<String>| h.clone().unwrap_or_else(|| "none".to_owned());
        let steps = match (self.first_divergent_step, self.divergent_field, self.compared_steps) {
            (Some(step), Some(field), _) => {
                format!("; first divergent step {step} ({})", field.name())
            }
            (_, _, Some(n)) => format!("; the {n} steps both runs logged agree"),
            _ => String::new(),
        };
        Some(format!(
            "the final hash does not match: expected {}, this run ended with state hash {} and \
             parameter hash {}{steps}",
            self.expected_hash,
            hash(&hashes.final_state_hash),
            hash(&hashes.final_param_hash),
        ))
    }
}

#[cfg(test)]
#[path = "expect_test.rs"]
mod expect_test;
