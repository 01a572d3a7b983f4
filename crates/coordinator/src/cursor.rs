//! The data stream as a sequence of epochs: where a step's samples lie and how each rank's
//! slice of them is cut. Pure arithmetic; the cursor itself lives in the durable state and moves
//! only when a step commits.

use albatross_proto::domain::{DataCursor, SampleRange};

/// The cursor `n` samples after `c` in a stream of epochs of `epoch_size` samples.
/// `epoch_size` must be positive (checked by [`crate::CoreConfig`]).
pub fn advance(c: DataCursor, n: u64, epoch_size: u64) -> DataCursor {
    let epoch_size = epoch_size.max(1);
    let total = u128::from(c.next_sample) + u128::from(n);
    let size = u128::from(epoch_size);
    let epochs = u64::try_from(total / size).unwrap_or(u64::MAX);
    DataCursor {
        epoch: c.epoch.saturating_add(epochs),
        next_sample: u64::try_from(total % size).unwrap_or(0),
    }
}

/// The `len` samples from `start` on, as ranges that never cross an epoch boundary.
pub fn ranges(start: DataCursor, len: u64, epoch_size: u64) -> Vec<SampleRange> {
    let epoch_size = epoch_size.max(1);
    let mut out = Vec::new();
    let mut at = advance(start, 0, epoch_size);
    let mut left = len;
    while left > 0 {
        let take = left.min(epoch_size - at.next_sample);
        out.push(SampleRange {
            epoch: at.epoch,
            start: at.next_sample,
            end: at.next_sample + take,
        });
        left -= take;
        at = advance(at, take, epoch_size);
    }
    out
}

/// Cut the `global` samples of a step starting at `start` into `world` contiguous slices, one
/// per rank in ring order; the first `global % world` ranks get one sample more.
pub fn split(
    start: DataCursor,
    global: u64,
    world: usize,
    epoch_size: u64,
) -> Vec<Vec<SampleRange>> {
    let world_u64 = u64::try_from(world.max(1)).unwrap_or(u64::MAX);
    let (base, extra) = (global / world_u64, global % world_u64);
    let mut offset = 0;
    (0..world_u64)
        .map(|rank| {
            let len = base + u64::from(rank < extra);
            let slice = ranges(advance(start, offset, epoch_size), len, epoch_size);
            offset += len;
            slice
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(epoch: u64, start: u64, end: u64) -> SampleRange {
        SampleRange { epoch, start, end }
    }

    fn c(epoch: u64, next_sample: u64) -> DataCursor {
        DataCursor { epoch, next_sample }
    }

    #[test]
    fn advance_wraps_into_later_epochs() {
        assert_eq!(advance(c(0, 0), 7, 10), c(0, 7));
        assert_eq!(advance(c(0, 7), 3, 10), c(1, 0));
        assert_eq!(advance(c(2, 9), 25, 10), c(5, 4));
    }

    #[test]
    fn ranges_cross_epoch_boundaries() {
        assert_eq!(ranges(c(0, 8), 5, 10), vec![r(0, 8, 10), r(1, 0, 3)]);
        assert_eq!(ranges(c(0, 0), 10, 10), vec![r(0, 0, 10)]);
        assert_eq!(ranges(c(1, 3), 0, 10), vec![]);
        // A step longer than an epoch (a tiny data set) spans several epochs.
        assert_eq!(ranges(c(1, 4), 12, 5), vec![r(1, 4, 5), r(2, 0, 5), r(3, 0, 5), r(4, 0, 1)]);
    }

    #[test]
    fn split_is_contiguous_and_balanced() {
        let slices = split(c(0, 6), 10, 3, 8);
        assert_eq!(slices, vec![vec![r(0, 6, 8), r(1, 0, 2)], vec![r(1, 2, 5)], vec![r(1, 5, 8)]]);
        let one = split(c(3, 0), 4, 1, 100);
        assert_eq!(one, vec![vec![r(3, 0, 4)]]);
        // More ranks than samples: the last ranks get empty slices.
        assert_eq!(split(c(0, 0), 2, 3, 10), vec![vec![r(0, 0, 1)], vec![r(0, 1, 2)], vec![]]);
    }
}
