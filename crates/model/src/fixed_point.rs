//! Exact, order-independent sums of f32 gradients: fixed-point integers in i64.
//!
//! Floating-point addition is not associative, so a sum over micro-batches and ranks depends on
//! how the batch was split and in which order the ring added the parts. Exact mode instead
//! turns every micro-batch's gradient into integers — `round(x · 2^F)`, the same function of
//! `x` wherever it is computed — and adds integers, whose (wrapping) addition is associative
//! and commutative: any split, any order, any number of ranks gives the same bits. The sum is
//! turned back into f32 once, after the all-reduce.
//!
//! Range: each term must lie below `2^range_bits` in magnitude ([`FixedPoint::accumulate`]
//! reports the first that does not), and the job leaves `ceil(log2(terms))` bits of headroom,
//! so the true sum of all terms stays below `2^62` and wrapping never shows in the result.
//! Intermediate sums may wrap (a rank may hold large terms of one sign): wrapping addition is
//! exact modulo 2^64, and the final value is in range.
//!
//! The scale is fixed by the job (the fraction bits follow from the range and the micro-batch
//! count) rather than agreed per step from the step's largest gradient: agreeing first would
//! mean holding every micro-batch's f32 gradient until all are computed (a rank's memory would
//! grow with its share of the batch), because the integers of a micro-batch can only be formed
//! once the scale is known.

/// A fixed-point format: `fraction_bits` bits after the binary point, terms below
/// `2^range_bits` in magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    fraction_bits: u32,
    range_bits: u32,
}

/// A term outside the format's range (or not finite): the step cannot be summed exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutOfRange {
    /// Index of the first such element.
    pub index: usize,
    pub value: f32,
    /// The format's bound, `2^range_bits`.
    pub bound: f64,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "element {} is {}, outside the exact-mode range of ±{} (determinism.range_bits)",
            self.index, self.value, self.bound
        )
    }
}

impl FixedPoint {
    /// `fraction_bits + range_bits` must leave the sign bit and headroom free (at most 62).
    ///
    /// # Panics
    /// When the two exceed 62 bits: the job spec's validation makes that impossible.
    pub fn new(fraction_bits: u32, range_bits: u32) -> Self {
        assert!(
            fraction_bits + range_bits <= 62,
            "fixed point of {fraction_bits}+{range_bits} bits"
        );
        Self { fraction_bits, range_bits }
    }

    pub fn fraction_bits(self) -> u32 {
        self.fraction_bits
    }

    fn scale(self) -> f64 {
        // Powers of two are exact in f64, and so are products of an f32 with them.
        f64::from(self.fraction_bits).exp2()
    }

    fn bound(self) -> f64 {
        f64::from(self.range_bits).exp2()
    }

    /// Adds `values` (a micro-batch's gradient) into `sums`, element by element, with wrapping
    /// addition. Every element is checked first, so on error `sums` is unchanged.
    ///
    /// # Errors
    /// [`OutOfRange`] naming the first element at or beyond `2^range_bits` in magnitude, or not
    /// finite.
    ///
    /// # Panics
    /// When the slices differ in length.
    pub fn accumulate(self, sums: &mut [i64], values: &[f32]) -> Result<(), OutOfRange> {
        assert_eq!(sums.len(), values.len(), "fixed-point sums and values differ in length");
        let bound = self.bound();
        // A power of two up to 2^40: exact in f32.
        let limit = bound as f32;
        if let Some(index) = values.iter().position(|x| x.is_nan() || x.abs() >= limit) {
            return Err(OutOfRange { index, value: values[index], bound });
        }
        // Each value becomes an integer count of 2^-F, rounded to nearest, ties to even: exact
        // for every value whose last significant bit is not below 2^-F. In range,
        // |x · 2^F| < 2^62, so the conversion to i64 cannot saturate.
        let scale = self.scale();
        for (sum, &x) in sums.iter_mut().zip(values) {
            *sum = sum.wrapping_add((f64::from(x) * scale).round_ties_even() as i64);
        }
        Ok(())
    }

    /// The sums as f32: each rounded once from the exact integer (through f64).
    ///
    /// # Panics
    /// When the slices differ in length.
    pub fn write_f32(self, sums: &[i64], out: &mut [f32]) {
        assert_eq!(sums.len(), out.len(), "fixed-point sums and output differ in length");
        // Each sum is rounded once, to 53 bits, then scaled exactly: multiplying by 2^-F equals
        // dividing by 2^F, and vectorises better.
        let inverse = 1.0 / self.scale();
        for (o, &s) in out.iter_mut().zip(sums) {
            *o = (s as f64 * inverse) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of gradient-like values over many binades, both signs.
    fn terms(count: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state
        };
        (0..count)
            .map(|_| {
                (0..len)
                    .map(|_| {
                        let bits = next();
                        let mantissa = (bits >> 40) as f32 / (1u64 << 24) as f32;
                        let exponent = ((bits >> 8) % 40) as i32 - 30;
                        let sign = if bits & 1 == 0 { 1.0 } else { -1.0 };
                        sign * mantissa * 2f32.powi(exponent)
                    })
                    .collect()
            })
            .collect()
    }

    fn exact_sum(fp: FixedPoint, parts: &[&Vec<f32>]) -> Vec<i64> {
        let mut sums = vec![0i64; parts[0].len()];
        for part in parts {
            fp.accumulate(&mut sums, part).expect("in range");
        }
        sums
    }

    #[test]
    fn any_order_and_any_split_across_ranks_gives_the_same_bits() {
        let fp = FixedPoint::new(40, 12);
        let all = terms(12, 257, 7);
        let reference = exact_sum(fp, &all.iter().collect::<Vec<_>>());
        // Reversed and interleaved orders.
        let reversed: Vec<&Vec<f32>> = all.iter().rev().collect();
        assert_eq!(exact_sum(fp, &reversed), reference);
        let shuffled: Vec<&Vec<f32>> = (0..12).map(|i| &all[(i * 5) % 12]).collect::<Vec<_>>();
        assert_eq!(exact_sum(fp, &shuffled), reference);
        // Split over 1..=5 ranks: each sums its share, then the ranks' sums are added in ring
        // order (wrapping), as the i64 all-reduce does.
        for ranks in 1..=5 {
            let mut total = vec![0i64; 257];
            for rank in 0..ranks {
                let share: Vec<&Vec<f32>> = all.iter().skip(rank).step_by(ranks).collect();
                let local = if share.is_empty() { vec![0; 257] } else { exact_sum(fp, &share) };
                for (t, l) in total.iter_mut().zip(&local) {
                    *t = t.wrapping_add(*l);
                }
            }
            assert_eq!(total, reference, "{ranks} ranks");
        }
        // f32 summation, by contrast, depends on the order for these values.
        let f32_sum = |parts: &[&Vec<f32>]| -> Vec<u32> {
            (0..257).map(|i| parts.iter().map(|p| p[i]).sum::<f32>().to_bits()).collect()
        };
        assert_ne!(f32_sum(&all.iter().collect::<Vec<_>>()), f32_sum(&reversed));
    }

    #[test]
    fn the_result_is_the_exact_sum_rounded_once() {
        let fp = FixedPoint::new(40, 12);
        // Values on the 2^-40 grid are summed without any rounding.
        let a = [1.5f32, -0.25, 2f32.powi(-40), 1000.0];
        let b = [2f32.powi(-30), 0.25, 2f32.powi(-40), -999.0];
        let mut sums = vec![0i64; 4];
        fp.accumulate(&mut sums, &a).expect("a");
        fp.accumulate(&mut sums, &b).expect("b");
        let mut out = [0f32; 4];
        fp.write_f32(&sums, &mut out);
        assert_eq!(out, [1.5 + 2f32.powi(-30), 0.0, 2f32.powi(-39), 1.0]);
        // Below the grid, values round to nearest, ties to even, the same everywhere.
        let mut ties = vec![0i64; 4];
        let half = 2f32.powi(-41);
        fp.accumulate(&mut ties, &[half, 3.0 * half, -3.0 * half, 3.25]).expect("ties");
        assert_eq!(&ties[..3], &[0, 2, -2]);
        let mut back = [0f32; 4];
        fp.write_f32(&ties, &mut back);
        assert_eq!(back[3], 3.25);
    }

    #[test]
    fn intermediate_wrapping_cancels_when_the_final_sum_is_in_range() {
        // Range 2^20 with 42 fraction bits: each term uses nearly all 62 bits, and three large
        // terms of one sign overflow i64 before the negative ones bring the sum back.
        let fp = FixedPoint::new(42, 20);
        let big = [1_000_000.0f32];
        let neg = [-1_000_000.0f32];
        let mut sums = vec![0i64; 1];
        for part in [&big, &big, &big, &big, &neg, &neg, &neg] {
            fp.accumulate(&mut sums, part).expect("in range");
        }
        let mut out = [0f32];
        fp.write_f32(&sums, &mut out);
        assert_eq!(out, [1_000_000.0]);
    }

    #[test]
    fn out_of_range_and_non_finite_terms_are_refused_and_leave_the_sums_alone() {
        let fp = FixedPoint::new(40, 10);
        let mut sums = vec![5i64; 4];
        let err = fp.accumulate(&mut sums, &[1.0, -1024.0, 3.0, 2000.0]).expect_err("range");
        assert_eq!((err.index, err.value, err.bound), (1, -1024.0, 1024.0));
        assert!(err.to_string().contains("determinism.range_bits"), "{err}");
        assert_eq!(sums, vec![5; 4]);
        let err = fp.accumulate(&mut sums, &[0.0, 0.0, f32::NAN, 0.0]).expect_err("nan");
        assert_eq!(err.index, 2);
        let err = fp.accumulate(&mut sums, &[f32::INFINITY, 0.0, 0.0, 0.0]).expect_err("inf");
        assert_eq!(err.index, 0);
        fp.accumulate(&mut sums, &[1023.999, 0.0, 0.0, -1023.999]).expect("just inside");
    }
}
