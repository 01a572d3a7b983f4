use std::{fmt, path::PathBuf};

/// One field that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `optimizer.learning_rate`.
    pub field: String,
    /// The value as written (after parsing).
    pub value: String,
    /// What would be accepted, e.g. `greater than 0 and at most 1`.
    pub allowed: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {} is not allowed: must be {}", self.field, self.value, self.allowed)
    }
}

/// Why a job spec could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JobSpecError {
    #[error("cannot read job spec {path}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Not TOML, a key the spec does not know, a missing required key, or a wrong type.
    #[error("job spec {origin} is not a valid job file: {message}")]
    Parse { origin: String, message: String },
    /// Parsed, but fields are out of range. Every violation is listed.
    #[error("job spec {origin} has {} invalid field(s):\n{}", errors.len(), list(errors))]
    Invalid { origin: String, errors: Vec<FieldError> },
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
}
