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
