//! The exactly-once sampler: each epoch's order of sample ids is a seeded pseudo-random
//! permutation, computed per position (a Feistel network with cycle walking) so no worker ever
//! materialises it; a cursor `(epoch, position)` names where training is; a global batch is a
//! list of position ranges, split across the ranks of the current quorum by a pure function.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use albatross_rng::{derive_seed, mix64};

/// Feistel rounds; 6 is plenty for statistical shuffling (not cryptography).
const ROUNDS: u64 = 6;

/// Positions `[start, end)` of one epoch's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SampleRange {
    /// The epoch whose permutation the positions index.
    pub epoch: u64,
    /// First position (inclusive).
    pub start: u64,
    /// Past-the-end position.
    pub end: u64,
}

impl SampleRange {
    /// Number of positions in the range.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where training is in the data: the next position to read in `epoch`. Serialised into
/// checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SampleCursor {
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Next position within the epoch.
    pub position: u64,
}

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

    /// The sample ids of a position range, in order.
    pub fn ids(&self, range: SampleRange) -> Result<Vec<u64>> {
        if range.end > self.num_samples {
            return Err(DataError::InvalidArgument(format!(
                "range end {} is past the end of an epoch of {} samples",
                range.end, self.num_samples
            )));
        }
        (range.start..range.end).map(|p| self.sample_at(range.epoch, p)).collect()
    }

    /// The next `batch_size` positions from `cursor` as ranges (two when the batch crosses an
    /// epoch boundary), and the cursor after them.
    pub fn next_batch(
        &self,
        cursor: SampleCursor,
        batch_size: u64,
    ) -> Result<(Vec<SampleRange>, SampleCursor)> {
        if cursor.position > self.num_samples {
            return Err(DataError::InvalidArgument(format!(
                "cursor position {} is past the end of an epoch of {} samples",
                cursor.position, self.num_samples
            )));
        }
        let mut ranges = Vec::new();
        let mut cursor = cursor;
        let mut left = batch_size;
        while left > 0 {
            if cursor.position == self.num_samples {
                cursor = SampleCursor { epoch: cursor.epoch + 1, position: 0 };
            }
            let take = left.min(self.num_samples - cursor.position);
            ranges.push(SampleRange {
                epoch: cursor.epoch,
                start: cursor.position,
                end: cursor.position + take,
            });
            cursor.position += take;
            left -= take;
        }
        Ok((ranges, cursor))
    }
}

/// The slice `[start, end)` of a batch of `batch_len` items that `rank` of `world_size` reads:
/// contiguous, the first `batch_len % world_size` ranks take one more. A pure function, so a
/// retried step after a membership change re-splits the same batch the same way.
pub fn split_batch(batch_len: u64, world_size: u64, rank: u64) -> Result<Range<u64>> {
    if world_size == 0 || rank >= world_size {
        return Err(DataError::InvalidArgument(format!(
            "rank {rank} is not in a world of {world_size}"
        )));
    }
    let base = batch_len / world_size;
    let extra = batch_len % world_size;
    let start = rank * base + rank.min(extra);
    let len = base + u64::from(rank < extra);
    Ok(start..start + len)
}

/// The position ranges of a global batch (as [`EpochSampler::next_batch`] returns it) that
/// `rank` of `world_size` reads.
pub fn rank_ranges(batch: &[SampleRange], world_size: u64, rank: u64) -> Result<Vec<SampleRange>> {
    let total = batch.iter().map(SampleRange::len).sum();
    let mine = split_batch(total, world_size, rank)?;
    let mut out = Vec::new();
    let mut offset = 0;
    for range in batch {
        let (lo, hi) = (offset, offset + range.len());
        let start = mine.start.max(lo);
        let end = mine.end.min(hi);
        if start < end {
            out.push(SampleRange {
                epoch: range.epoch,
                start: range.start + (start - lo),
                end: range.start + (end - lo),
            });
        }
        offset = hi;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "sampler_test.rs"]
mod tests;
