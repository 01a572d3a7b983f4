use std::fmt;

/// A SHA-256 digest: job and data fingerprints, state hashes, checksums.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

/// Bytes that should have been a SHA-256 digest but have the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SHA-256 digest has 32 bytes, got {0}")]
pub struct DigestLengthError(pub usize);

impl Sha256Digest {
    /// Digest of `data`.
    pub fn of(data: impl AsRef<[u8]>) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(data.as_ref()).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Wire form of an optional digest: absent is the empty byte string.
    ///
    /// # Errors
    /// When `bytes` is neither empty nor 32 bytes long.
    pub fn from_optional_bytes(bytes: &[u8]) -> Result<Option<Self>, DigestLengthError> {
        if bytes.is_empty() {
            return Ok(None);
        }
        Self::try_from(bytes).map(Some)
    }
}

impl TryFrom<&[u8]> for Sha256Digest {
    type Error = DigestLengthError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes).map(Self).map_err(|_| DigestLengthError(bytes.len()))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}
