use std::fmt;

/// A wire message that does not describe a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// Path of the field in the message, outermost first (`members[1].address`).
    pub field: String,
    pub reason: String,
}

impl ConvertError {
    pub(crate) fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self { field: field.into(), reason: reason.to_string() }
    }

    pub(crate) fn missing(field: impl Into<String>) -> Self {
        Self::new(field, "is required but missing")
    }

    /// Prefix the field path with the name of the enclosing field.
    pub(crate) fn within(mut self, parent: impl fmt::Display) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid message field {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConvertError {}

impl From<ConvertError> for tonic::Status {
    fn from(err: ConvertError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

/// Convert a required nested message, naming `field` if it is absent or invalid.
pub(crate) fn required<W, D>(value: Option<W>, field: &str) -> Result<D, ConvertError>
where
    D: TryFrom<W, Error = ConvertError>,
{
    let value = value.ok_or_else(|| ConvertError::missing(field))?;
    D::try_from(value).map_err(|err| err.within(field))
}

/// Convert an optional nested message.
pub(crate) fn optional<W, D>(value: Option<W>, field: &str) -> Result<Option<D>, ConvertError>
where
    D: TryFrom<W, Error = ConvertError>,
{
    value.map(|v| D::try_from(v).map_err(|err| err.within(field))).transpose()
}

/// Convert every element of a repeated field, naming the index of a bad one.
pub(crate) fn repeated<W, D>(values: Vec<W>, field: &str) -> Result<Vec<D>, ConvertError>
where
    D: TryFrom<W, Error = ConvertError>,
{
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| D::try_from(v).map_err(|err| err.within(format_args!("{field}[{i}]"))))
        .collect()
}

/// An optional 32-byte digest of kind `D` (empty bytes mean absent).
pub(crate) fn optional_digest<D>(bytes: &[u8], field: &str) -> Result<Option<D>, ConvertError>
where
    D: for<'a> TryFrom<&'a [u8], Error = crate::domain::DigestLengthError>,
{
    if bytes.is_empty() {
        return Ok(None);
    }
    D::try_from(bytes).map(Some).map_err(|err| ConvertError::new(field, err))
}

/// A required SHA-256 digest.
pub(crate) fn required_digest(
    bytes: &[u8],
    field: &str,
) -> Result<crate::domain::Sha256Digest, ConvertError> {
    optional_digest(bytes, field)?.ok_or_else(|| ConvertError::missing(field))
}

/// A proto enum field: unknown numbers and `UNSPECIFIED` are both errors.
pub(crate) fn known_enum<E>(value: i32, field: &str) -> Result<E, ConvertError>
where
    E: TryFrom<i32>,
{
    E::try_from(value).map_err(|_| ConvertError::new(field, format_args!("unknown value {value}")))
}
