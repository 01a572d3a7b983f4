/// Half-open range `[start, end)` of positions in one epoch's sample order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleRange {
    pub epoch: u64,
    pub start: u64,
    pub end: u64,
}

impl SampleRange {
    /// `None` when `end < start`.
    pub fn new(epoch: u64, start: u64, end: u64) -> Option<Self> {
        (start <= end).then_some(Self { epoch, start, end })
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The first not-yet-consumed position of the data stream. Moves only on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DataCursor {
    pub epoch: u64,
    pub next_sample: u64,
}

impl DataCursor {
    /// Where the stream stands after `steps` decided steps of `global_batch` samples each,
    /// counted from the start, over epochs of `epoch_size` samples. Every decided step (commit
    /// or skip) consumes exactly one global batch, so the cursor is this pure function of the
    /// step number; workers and checkpoints derive it instead of being told.
    pub fn after_steps(steps: u64, global_batch: u64, epoch_size: u64) -> Self {
        let consumed = u128::from(steps) * u128::from(global_batch);
        let size = u128::from(epoch_size.max(1));
        Self {
            epoch: u64::try_from(consumed / size).unwrap_or(u64::MAX),
            next_sample: u64::try_from(consumed % size).unwrap_or(0),
        }
    }

    /// The cursor `n` samples on, over epochs of `epoch_size` samples (a size of 0 counts as 1).
    #[must_use]
    pub fn advance(self, n: u64, epoch_size: u64) -> Self {
        let size = u128::from(epoch_size.max(1));
        let total = u128::from(self.next_sample) + u128::from(n);
        let epochs = u64::try_from(total / size).unwrap_or(u64::MAX);
        Self {
            epoch: self.epoch.saturating_add(epochs),
            next_sample: u64::try_from(total % size).unwrap_or(0),
        }
    }

    /// The `len` samples from this cursor on, as ranges that never cross an epoch boundary.
    pub fn ranges(self, len: u64, epoch_size: u64) -> Vec<SampleRange> {
        let epoch_size = epoch_size.max(1);
        let mut out = Vec::new();
        let mut at = self.advance(0, epoch_size);
        let mut left = len;
        while left > 0 {
            let take = left.min(epoch_size - at.next_sample);
            out.push(SampleRange {
                epoch: at.epoch,
                start: at.next_sample,
                end: at.next_sample + take,
            });
            left -= take;
            at = at.advance(take, epoch_size);
        }
        out
    }

    /// The `global` samples of a step starting at this cursor, cut into `world` contiguous
    /// slices, one per rank in ring order, at multiples of `unit` samples from the step's start
    /// (the last unit may be short): each rank gets whole units, the first ranks one unit more
    /// when they do not divide evenly. A pure function, so a retried step re-splits the same
    /// samples the same way. A `unit` of 1 balances samples; exact mode passes the micro-batch
    /// size, so every micro-batch is computed whole by one rank whatever the world size.
    pub fn split(
        self,
        global: u64,
        world: usize,
        epoch_size: u64,
        unit: u64,
    ) -> Vec<Vec<SampleRange>> {
        let unit = unit.max(1);
        let units = global.div_ceil(unit);
        let world_u64 = u64::try_from(world.max(1)).unwrap_or(u64::MAX);
        let (base, extra) = (units / world_u64, units % world_u64);
        let mut first_unit = 0;
        (0..world_u64)
            .map(|rank| {
                let count = base + u64::from(rank < extra);
                let start = (first_unit * unit).min(global);
                let end = ((first_unit + count) * unit).min(global);
                first_unit += count;
                self.advance(start, epoch_size).ranges(end - start, epoch_size)
            })
            .collect()
    }
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
        assert_eq!(c(0, 0).advance(7, 10), c(0, 7));
        assert_eq!(c(0, 7).advance(3, 10), c(1, 0));
        assert_eq!(c(2, 9).advance(25, 10), c(5, 4));
    }

    #[test]
    fn ranges_cross_epoch_boundaries() {
        assert_eq!(c(0, 8).ranges(5, 10), vec![r(0, 8, 10), r(1, 0, 3)]);
        assert_eq!(c(0, 0).ranges(10, 10), vec![r(0, 0, 10)]);
        assert_eq!(c(1, 3).ranges(0, 10), vec![]);
        // A step longer than an epoch (a tiny data set) spans several epochs.
        assert_eq!(c(1, 4).ranges(12, 5), vec![r(1, 4, 5), r(2, 0, 5), r(3, 0, 5), r(4, 0, 1)]);
    }

    #[test]
    fn split_is_contiguous_and_balanced() {
        let slices = c(0, 6).split(10, 3, 8, 1);
        assert_eq!(slices, vec![vec![r(0, 6, 8), r(1, 0, 2)], vec![r(1, 2, 5)], vec![r(1, 5, 8)]]);
        let one = c(3, 0).split(4, 1, 100, 1);
        assert_eq!(one, vec![vec![r(3, 0, 4)]]);
        // More ranks than samples: the last ranks get empty slices.
        assert_eq!(c(0, 0).split(2, 3, 10, 1), vec![vec![r(0, 0, 1)], vec![r(0, 1, 2)], vec![]]);
    }

    #[test]
    fn rank_slices_concatenate_to_the_step_for_any_world() {
        let step: Vec<(u64, u64)> = c(0, 7)
            .ranges(5, 10)
            .iter()
            .flat_map(|r| (r.start..r.end).map(move |p| (r.epoch, p)))
            .collect();
        assert_eq!(step.len(), 5);
        for unit in [1, 2, 3, 8] {
            for world in 1..=7 {
                let union: Vec<(u64, u64)> = c(0, 7)
                    .split(5, world, 10, unit)
                    .iter()
                    .flatten()
                    .flat_map(|r| (r.start..r.end).map(move |p| (r.epoch, p)))
                    .collect();
                // Concatenated in rank order, the slices are exactly the step: no gap, no overlap.
                assert_eq!(union, step, "world {world}, unit {unit}");
            }
        }
    }

    #[test]
    fn split_in_units_gives_whole_units_and_cuts_only_at_unit_boundaries() {
        // 10 samples in units of 3: units [0,3) [3,6) [6,9) [9,10) over 3 ranks → 2, 1, 1 units.
        let slices = c(0, 0).split(10, 3, 100, 3);
        assert_eq!(slices, vec![vec![r(0, 0, 6)], vec![r(0, 6, 9)], vec![r(0, 9, 10)]]);
        // Across an epoch boundary the cut points stay at multiples of the unit from the start.
        let slices = c(0, 6).split(8, 2, 8, 4);
        assert_eq!(slices, vec![vec![r(0, 6, 8), r(1, 0, 2)], vec![r(1, 2, 6)]]);
        // More ranks than units: the last ranks get nothing.
        assert_eq!(c(0, 0).split(4, 3, 10, 2), vec![vec![r(0, 0, 2)], vec![r(0, 2, 4)], vec![]]);
    }
}
