//! Reading, canonical form and fingerprint.

use std::path::Path;

use super::{JobSpec, JobSpecError};
use crate::domain::Sha256Digest;

impl JobSpec {
    /// Parse and validate a job spec. `origin` names the source in errors (a path, `<stdin>`).
    ///
    /// # Errors
    /// [`JobSpecError::Parse`] for malformed TOML, unknown keys, missing or mistyped fields;
    /// [`JobSpecError::Invalid`] listing every out-of-range field.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, JobSpecError> {
        let spec: JobSpec = toml::from_str(text).map_err(|err| JobSpecError::Parse {
            origin: origin.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })?;
        spec.validate()
            .map_err(|errors| JobSpecError::Invalid { origin: origin.to_owned(), errors })?;
        Ok(spec)
    }

    /// Read, parse and validate a job file.
    ///
    /// # Errors
    /// [`JobSpecError::Read`] when the file cannot be read, otherwise as [`Self::from_toml_str`].
    pub fn from_path(path: &Path) -> Result<Self, JobSpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| JobSpecError::Read { path: path.to_owned(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The canonical TOML form: every field explicit, in declaration order, durations in
    /// humantime form. Two specs that mean the same job have the same canonical form.
    pub fn to_canonical_toml(&self) -> String {
        toml::to_string(self).expect("invariant: a JobSpec always serialises to TOML")
    }

    /// SHA-256 of the canonical form; identifies the job across processes.
    pub fn fingerprint(&self) -> Sha256Digest {
        Sha256Digest::of(self.to_canonical_toml())
    }
}
