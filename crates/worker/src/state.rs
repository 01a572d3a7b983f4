//! A replica's full training state as two flat sections — what peers transfer when one heals,
//! what checkpoints hold, and what the state hash in every vote covers.
//!
//! - parameters: every parameter in the `GradLayout` order, f32;
//! - optimizer: for every parameter in the same order, LAMB's first moment then its second
//!   moment (f32, the parameter's shape each); empty before the first update.
//!
//! Both sections travel and are stored as little-endian bytes. The hash is SHA-256 over a
//! domain tag, the layout fingerprint and both sections with their lengths, so equal hashes
//! mean bit-identical parameters *and* optimizer state under the same layout.

use albatross_model::ModelError;
use albatross_proto::domain::Sha256Digest;
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

    /// SHA-256 of the state under the layout with fingerprint `layout`.
    pub fn hash(&self, layout: &[u8; 32]) -> Sha256Digest {
        let mut hasher = Sha256::new().chain_update(b"albatross.trainer-state/v2");
        hasher.update(layout);
        for section in [&self.parameters, &self.optimizer] {
            hasher.update((section.len() as u64).to_le_bytes());
            hash_f32s(&mut hasher, section);
        }
        Sha256Digest(hasher.finalize().into())
    }
}

/// Feeds `values` as little-endian bytes without materialising a byte copy of the whole slice.
fn hash_f32s(hasher: &mut Sha256, values: &[f32]) {
    if cfg!(target_endian = "little") {
        hasher.update(bytemuck::cast_slice::<f32, u8>(values));
    } else {
        for chunk in values.chunks(4096) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            hasher.update(&bytes);
        }
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

/// Little-endian bytes back to f32s.
///
/// # Errors
/// When the length is not a multiple of 4, naming `what`.
pub fn le_bytes_to_f32s(what: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(ModelError::WrongSize {
            what: what.to_owned(),
            expected: "a multiple of 4 bytes".to_owned(),
            actual: format!("{} bytes", bytes.len()),
        }
        .into());
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_bit_exactly() {
        let values = vec![0.0, -0.0, 1.5, f32::MIN_POSITIVE, f32::MAX, -3.25e-7];
        let back = le_bytes_to_f32s("test", &f32s_to_le_bytes(&values)).expect("round trip");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
        assert!(le_bytes_to_f32s("test section", &[0, 1, 2]).is_err());
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
