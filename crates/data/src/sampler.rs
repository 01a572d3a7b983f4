//! The exactly-once sampler: each epoch's order of sample ids is a seeded pseudo-random
//! permutation, computed per position (a Feistel network with cycle walking) so no worker ever
//! materialises it. Which positions a step and each of its ranks read is the protocol's
//! business (`DataCursor::split` in `albatross-proto`); this maps positions to sample ids.

use std::ops::Range;

use crate::error::{DataError, Result};
use albatross_rng::{derive_seed, mix64};

/// Feistel rounds; 6 is plenty for statistical shuffling (not cryptography).
const ROUNDS: u64 = 6;

/// The per-epoch permutation of `num_samples` sample ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSampler {
    num_samples: u64,
    seed: u64,
    half_bits: u32,
}

impl EpochSampler {
    /// A sampler over ids `0..num_samples`; `num_samples` must be positive.
    pub fn new(num_samples: u64, seed: u64) -> Result<Self> {
        if num_samples == 0 {
            return Err(DataError::InvalidArgument(
                "a sampler needs at least one sample".to_owned(),
            ));
        }
        let bits = 64 - (num_samples - 1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        Ok(Self { num_samples, seed, half_bits })
    }

    /// Number of samples in an epoch.
    pub fn num_samples(&self) -> u64 {
        self.num_samples
    }

    fn feistel(&self, epoch: u64, value: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for round in 0..ROUNDS {
            let key = derive_seed(&[self.seed, epoch, round]);
            let f = mix64(right ^ key) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }

    /// The sample id at `position` of `epoch`'s order. Positions at or past the epoch size are
    /// an error.
    pub fn sample_at(&self, epoch: u64, position: u64) -> Result<u64> {
        if position >= self.num_samples {
            return Err(DataError::InvalidArgument(format!(
                "position {position} is past the end of an epoch of {} samples",
                self.num_samples
            )));
        }
        // Cycle walking: the Feistel network permutes [0, 2^(2h)) with 2^(2h) < 4n, so the
        // walk ends after fewer than four steps on average and stays a bijection on [0, n).
        let mut value = position;
        loop {
            value = self.feistel(epoch, value);
            if value < self.num_samples {
                return Ok(value);
            }
        }
    }

    /// The sample ids at `positions` of `epoch`'s order, in order.
    pub fn ids(&self, epoch: u64, positions: Range<u64>) -> Result<Vec<u64>> {
        if positions.end > self.num_samples {
            return Err(DataError::InvalidArgument(format!(
                "range end {} is past the end of an epoch of {} samples",
                positions.end, self.num_samples
            )));
        }
        positions.map(|p| self.sample_at(epoch, p)).collect()
    }
}

#[cfg(test)]
#[path = "sampler_test.rs"]
mod tests;
