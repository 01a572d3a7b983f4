//! A replica's full training state as two flat sections — what peers transfer when one heals,
//! what checkpoints hold, and what the state hash in every vote covers.
//!
//! - parameters: every parameter in the `GradLayout` order, f32;
//! - optimizer: for every parameter in the same order, LAMB's first moment then its second
//!   moment (f32, the parameter's shape each); empty before the first update.
//!
//! Both sections travel and are stored as little-endian bytes. The state hash covers the
//! layout fingerprint and both sections with their lengths, so equal hashes mean bit-identical
//! parameters *and* optimizer state under the same layout. It is BLAKE3 (in its key-derivation
//! mode, so the context string separates it from every other use): every step hashes the
//! whole state (142 MB for albert-base), and BLAKE3 hashes it about four times faster than
//! SHA-256 on one core. Checkpoints written before BLAKE3 recorded a SHA-256 state hash;
//! [`HashAlgorithm::Sha256`] still verifies them.

use albatross_model::ModelError;
use albatross_proto::domain::StateHash;
use sha2::{Digest, Sha256};

use crate::error::Result;

/// Parameters and LAMB moments of one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    /// All parameters, layout order.
    pub parameters: Vec<f32>,
    /// Per parameter, m then v; empty before the first optimizer step.
    pub optimizer: Vec<f32>,
}

impl TrainerState {
    /// Checks the section sizes against a layout of `parameters` elements.
    ///
    /// # Errors
    /// [`ModelError::WrongSize`] naming the section.
    pub fn check_sizes(&self, parameters: usize) -> Result<()> {
        let wrong = |what: &str, expected: String, actual: usize| ModelError::WrongSize {
            what: what.to_owned(),
            expected,
            actual: format!("{actual} f32 elements"),
        };
        if self.parameters.len() != parameters {
            return Err(wrong(
                "parameter section",
                format!("{parameters} f32 elements"),
                self.parameters.len(),
            )
            .into());
        }
        if !self.optimizer.is_empty() && self.optimizer.len() != 2 * parameters {
            return Err(wrong(
                "optimizer section",
                format!("0 or {} f32 elements", 2 * parameters),
                self.optimizer.len(),
            )
            .into());
        }
        Ok(())
    }

    /// The state hash replicas vote with ([`HashAlgorithm::CURRENT`]) under the layout with
    /// fingerprint `layout`.
    pub fn hash(&self, layout: &[u8; 32]) -> StateHash {
        self.hash_with(HashAlgorithm::CURRENT, layout)
    }

    /// The state hash by `algorithm` (older checkpoints recorded SHA-256).
    pub fn hash_with(&self, algorithm: HashAlgorithm, layout: &[u8; 32]) -> StateHash {
        match algorithm {
            HashAlgorithm::Blake3 => {
                let mut hasher = StateHasher::new(layout);
                for section in [&self.parameters, &self.optimizer] {
                    hasher.section(section.len());
                    feed_le_bytes(section, |bytes| hasher.update(bytes));
                }
                hasher.finalize()
            }
            HashAlgorithm::Sha256 => {
                let mut hasher = Sha256::new().chain_update(b"albatross.trainer-state/v2");
                self.feed(layout, |bytes| hasher.update(bytes));
                StateHash(hasher.finalize().into())
            }
        }
    }

    /// Feeds what the hash covers: the layout, then each section's length and little-endian
    /// bytes (without materialising a byte copy of a whole section).
    fn feed(&self, layout: &[u8; 32], mut update: impl FnMut(&[u8])) {
        update(layout);
        for section in [&self.parameters, &self.optimizer] {
            update(&(section.len() as u64).to_le_bytes());
            feed_le_bytes(section, &mut update);
        }
    }
}

/// `values` as little-endian bytes, in pieces (the values' own bytes on a little-endian
/// machine, no copy).
fn feed_le_bytes(values: &[f32], mut update: impl FnMut(&[u8])) {
    if cfg!(target_endian = "little") {
        update(bytemuck::cast_slice::<f32, u8>(values));
    } else {
        for chunk in values.chunks(4096) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            update(&bytes);
        }
    }
}

/// The (BLAKE3) state hash fed piece by piece — the layout, then per section its element
/// count and its little-endian bytes — as [`TrainerState::hash`] feeds it: a state received
/// from a peer is hashed as it arrives rather than in a second pass over 142 MB.
#[derive(Debug, Clone)]
pub struct StateHasher(blake3::Hasher);

impl StateHasher {
    pub fn new(layout: &[u8; 32]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("albatross trainer-state v3");
        hasher.update(layout);
        Self(hasher)
    }

    /// Starts the next section (the parameters, then the optimizer state) of `elements`
    /// values.
    pub fn section(&mut self, elements: usize) {
        self.0.update(&(elements as u64).to_le_bytes());
    }

    /// The current section's next little-endian bytes.
    pub fn update(&mut self, le_bytes: &[u8]) {
        self.0.update(le_bytes);
    }

    pub fn finalize(&self) -> StateHash {
        StateHash(self.0.finalize().into())
    }
}

/// How a state hash was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// BLAKE3 (key-derivation mode, context `albatross trainer-state v3`): what votes carry.
    Blake3,
    /// SHA-256 with the domain tag `albatross.trainer-state/v2`: checkpoints written before
    /// BLAKE3.
    Sha256,
}

impl HashAlgorithm {
    /// What new hashes use.
    pub const CURRENT: Self = Self::Blake3;

    /// The name checkpoints record.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blake3 => "blake3",
            Self::Sha256 => "sha256",
        }
    }

    /// The algorithm a recorded name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Blake3, Self::Sha256].into_iter().find(|a| a.name() == name)
    }
}

/// `values` as little-endian bytes.
pub fn f32s_to_le_bytes(values: &[f32]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice::<f32, u8>(values).to_vec()
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_travel_as_little_endian_bytes() {
        let values = vec![0.0, -0.0, 1.5, f32::MIN_POSITIVE, f32::MAX, -3.25e-7];
        let expected: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(f32s_to_le_bytes(&values), expected);
    }

    /// A receiver hashes a state piece by piece as it arrives, cut anywhere: the same hash.
    #[test]
    fn the_incremental_hash_is_the_state_hash() {
        let state = TrainerState {
            parameters: (0..37).map(|i| i as f32 * 0.25).collect(),
            optimizer: (0..74).map(|i| -(i as f32)).collect(),
        };
        let layout = [3u8; 32];
        for piece in [1, 3, 4, 7, 64, 1000] {
            let mut hasher = StateHasher::new(&layout);
            for section in [&state.parameters, &state.optimizer] {
                hasher.section(section.len());
                for bytes in f32s_to_le_bytes(section).chunks(piece) {
                    hasher.update(bytes);
                }
            }
            assert_eq!(hasher.finalize(), state.hash(&layout), "pieces of {piece} bytes");
        }
    }

    #[test]
    fn hash_covers_every_section_and_the_layout() {
        let state = TrainerState { parameters: vec![1.0, 2.0], optimizer: vec![] };
        let layout = [7u8; 32];
        let base = state.hash(&layout);
        assert_eq!(base, state.clone().hash(&layout));
        assert_ne!(base, state.hash(&[8u8; 32]));
        let mut changed = state.clone();
        changed.parameters[1] = 2.000_001;
        assert_ne!(base, changed.hash(&layout));
        // Moving a value from one section to the other changes the hash (lengths are hashed).
        let moved = TrainerState { parameters: vec![1.0], optimizer: vec![2.0] };
        assert_ne!(base, moved.hash(&layout));
        let with_moments = TrainerState { parameters: vec![1.0, 2.0], optimizer: vec![0.0; 4] };
        assert_ne!(base, with_moments.hash(&layout));
    }

    /// Both algorithms are pinned to known digests, so a change of definition (which would
    /// make every recorded checkpoint fail verification) cannot go unnoticed.
    #[test]
    fn both_algorithms_are_stable_and_distinct() {
        let state = TrainerState { parameters: vec![1.0, -2.5], optimizer: vec![0.5; 4] };
        let layout = [3u8; 32];
        let blake3 = state.hash_with(HashAlgorithm::Blake3, &layout);
        let sha256 = state.hash_with(HashAlgorithm::Sha256, &layout);
        assert_eq!(state.hash(&layout), blake3, "votes use BLAKE3");
        assert_ne!(blake3, sha256);
        assert_eq!(blake3.to_hex(), PINNED_BLAKE3);
        assert_eq!(sha256.to_hex(), PINNED_SHA256);
        for algorithm in [HashAlgorithm::Blake3, HashAlgorithm::Sha256] {
            assert_eq!(HashAlgorithm::from_name(algorithm.name()), Some(algorithm));
        }
        assert_eq!(HashAlgorithm::from_name("md5"), None);
    }

    // Computed outside Rust (Python's hashlib and the `blake3` package) from the definition:
    // layout, then per section its u64 LE length and f32 LE bytes; SHA-256 prefixed by its tag.
    const PINNED_BLAKE3: &str = "db99fa30c4a9d488e4715eee74980e402b473d9c2f161dda50ccd83ce7e78f4a";
    const PINNED_SHA256: &str = "0ff83c18533836d4cf5157d0906d16820ad5f1924ce95cb6bff404b6c39e9657";

    #[test]
    fn sizes_are_checked_per_section() {
        let ok = TrainerState { parameters: vec![0.0; 3], optimizer: vec![0.0; 6] };
        ok.check_sizes(3).expect("fits");
        let err = TrainerState { parameters: vec![0.0; 3], optimizer: vec![0.0; 5] }
            .check_sizes(3)
            .expect_err("odd optimizer section");
        assert!(err.to_string().contains("optimizer section"), "{err}");
        assert!(ok.check_sizes(4).is_err());
    }
}
