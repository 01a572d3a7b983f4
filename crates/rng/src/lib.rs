//! The one pseudo-random generator of Albatross (SplitMix64) and its seed mixing. Everything
//! that must replay bit for bit draws from it: initial parameters, sample order, masks and
//! example pairs, chaos schedules, simulated packet loss, synthetic benchmark data. Those must
//! be identical on every worker and across releases, so this is versioned here and does not
//! depend on an external crate's algorithm choices: changing any output is a breaking change.

/// Multiplies a seed into a well-mixed 64-bit value (the SplitMix64 finaliser).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a list of integers (seed, epoch, sample id, ...) into one seed.
pub fn derive_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x2545_F491_4F6C_DD1D, |acc, part| {
        mix64(acc ^ mix64(part.wrapping_add(0x9E37_79B9_7F4A_7C15)))
    })
}

/// SplitMix64: tiny state, passes BigCrush, fast.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `state` (for a seed that is already well mixed, such
    /// as a hash; otherwise prefer [`SplitMix64::from_parts`]).
    pub fn new(state: u64) -> Self {
        Self { state }
    }

    /// A generator seeded from several integers.
    pub fn from_parts(parts: &[u64]) -> Self {
        Self { state: derive_seed(parts) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `n` must be positive (0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift with rejection: unbiased.
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// Uniform in `[low, high]` (inclusive); `low` when `high < low`.
    pub fn range_inclusive(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        low + self.below((high - low) as u64 + 1) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_roughly_uniform() {
        let mut a = SplitMix64::from_parts(&[1, 2, 3]);
        let mut b = SplitMix64::from_parts(&[1, 2, 3]);
        let mut c = SplitMix64::from_parts(&[1, 2, 4]);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..8).map(|_| c.next_u64()).collect::<Vec<_>>());
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[a.below(10) as usize] += 1;
        }
        // Each bucket expects 10 000; 5 sigma is about 475.
        assert!(counts.iter().all(|c| c.abs_diff(10_000) < 500), "{counts:?}");
        let mean = (0..100_000).map(|_| a.next_f64()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
    }
}
