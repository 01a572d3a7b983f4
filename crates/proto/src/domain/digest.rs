use std::fmt;

/// Bytes that should have been a 32-byte digest but have the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} digest has 32 bytes, got {len}")]
pub struct DigestLengthError {
    /// Which digest (`SHA-256`, `state`).
    pub kind: &'static str,
    /// The length received.
    pub len: usize,
}

/// A 32-byte digest newtype with hex display, wire conversions and length checks; each kind
/// is its own type so a state hash is never compared with a file checksum.
macro_rules! digest32 {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
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

        impl TryFrom<&[u8]> for $name {
            type Error = DigestLengthError;

            fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
                <[u8; 32]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| DigestLengthError { kind: $kind, len: bytes.len() })
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

digest32!(
    /// A SHA-256 digest: job and data fingerprints, checkpoint manifests, transfer checksums.
    Sha256Digest,
    "SHA-256"
);

digest32!(
    /// The hash of a replica's full training state (parameters and optimizer moments) that
    /// votes, quorum requests and state transfers carry; replicas agree exactly when it is
    /// equal. Computed by the worker (BLAKE3 over the flat state); opaque to everyone else.
    StateHash,
    "state"
);

impl Sha256Digest {
    /// Digest of `data`.
    pub fn of(data: impl AsRef<[u8]>) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(data.as_ref()).into())
    }
}
