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
}
