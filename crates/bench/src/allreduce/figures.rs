//! What a run measures ([`BenchOptions`]) and what it found per size ([`BenchResult`]).

use albatross_collective::{CollectiveConfig, CollectiveError, WireFormat};

use crate::measure::median;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    pub ranks: usize,
    /// Buffer sizes in bytes (f32, so multiples of 4).
    pub sizes: Vec<usize>,
    /// Timed iterations per size (the median is reported).
    pub iters: usize,
    /// Untimed iterations per size before timing.
    pub warmup: usize,
    pub config: CollectiveConfig,
    /// Sum i64 (exact mode's fixed-point gradients) instead of f32: as many elements as the
    /// f32 buffer of the same size, so twice the bytes.
    pub exact: bool,
}

impl BenchOptions {
    /// Sizes from MiB values (e.g. `--size-mib 16,48`).
    pub fn sizes_from_mib(mib: &[f64]) -> Vec<usize> {
        mib.iter().map(|m| ((m * 1048576.0) as usize / 4) * 4).collect()
    }

    pub(super) fn validate(&self) -> Result<(), CollectiveError> {
        let invalid = |m: String| Err(CollectiveError::InvalidArgument(m));
        if self.ranks == 0 {
            return invalid("bench needs at least one rank".to_owned());
        }
        if self.iters == 0 {
            return invalid("bench needs at least one timed iteration".to_owned());
        }
        if self.sizes.is_empty() || self.sizes.iter().any(|&s| s < 4) {
            return invalid(format!("bench sizes must be at least 4 bytes, got {:?}", self.sizes));
        }
        self.config.validate()
    }
}

/// What travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchWire {
    F32,
    Bf16,
    /// Exact mode: fixed-point i64, summed with wrapping addition.
    I64,
}

impl BenchWire {
    /// The wire of `options`.
    pub fn of(options: &BenchOptions) -> Self {
        match (options.exact, options.config.wire) {
            (true, _) => Self::I64,
            (false, WireFormat::F32) => Self::F32,
            (false, WireFormat::Bf16) => Self::Bf16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::I64 => "i64",
        }
    }
}

/// One measured size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    pub ranks: usize,
    /// The buffer's bytes (an i64 buffer has twice the bytes of the f32 one of the same size
    /// option: the same element count).
    pub bytes: usize,
    /// Elements summed.
    pub elements: usize,
    pub wire: BenchWire,
    pub iters: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub algbw_gbps: f64,
    pub busbw_gbps: f64,
}

impl BenchResult {
    pub(super) fn new(ranks: usize, elements: usize, wire: BenchWire, times: Vec<f64>) -> Self {
        let bytes = elements * if wire == BenchWire::I64 { 8 } else { 4 };
        let min_s = times.iter().copied().reduce(f64::min).unwrap_or(f64::NAN);
        let iters = times.len();
        let median_s = if times.is_empty() { f64::NAN } else { median(times) };
        let algbw_gbps = bytes as f64 / median_s / 1e9;
        let factor = if ranks > 1 { 2.0 * (ranks - 1) as f64 / ranks as f64 } else { 0.0 };
        Self {
            ranks,
            bytes,
            elements,
            wire,
            iters,
            median_s,
            min_s,
            algbw_gbps,
            busbw_gbps: algbw_gbps * factor,
        }
    }

    /// One JSON object (the `--json` output).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("invariant: a BenchResult always serialises")
    }

    /// One human-readable line.
    pub fn to_line(&self) -> String {
        format!(
            "ranks {:>2}  size {:>9.2} MiB  wire {:>4}  median {:>9.3} ms  algbw {:>6.3} GB/s  busbw {:>6.3} GB/s",
            self.ranks,
            self.bytes as f64 / 1048576.0,
            self.wire.name(),
            self.median_s * 1e3,
            self.algbw_gbps,
            self.busbw_gbps
        )
    }

    /// Parse [`Self::to_json`] output (used by the launcher to read rank 0's results).
    pub fn from_json(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_follow_nccl_tests() {
        let r = BenchResult::new(4, 250_000_000, BenchWire::F32, vec![2.0, 1.0, 4.0]);
        assert_eq!(r.median_s, 2.0);
        assert_eq!(r.min_s, 1.0);
        assert!((r.algbw_gbps - 0.5).abs() < 1e-12);
        assert!((r.busbw_gbps - 0.75).abs() < 1e-12);
        assert_eq!(BenchResult::from_json(&r.to_json()), Some(r));
        let exact = BenchResult::new(4, 250_000_000, BenchWire::I64, vec![2.0]);
        assert_eq!(exact.bytes, 2_000_000_000);
        assert!((exact.busbw_gbps - 1.5).abs() < 1e-12);
    }
}
