//! Kernels over flat f32 buffers (gradients, parameters, optimizer moments): sums of squares and
//! scans that the compiler vectorises, with a summation order fixed by the code alone, so every
//! replica gets the same bits from the same bytes.

/// Independent partial sums: enough lanes for the compiler to keep vector registers of
/// accumulators instead of one serial chain of dependent adds (4 cycles each).
pub(crate) const LANES: usize = 8;

/// Σ x² over `values`, accumulated in f64 lanes. Deterministic: the summation order depends
/// on the length only, so replicas holding the same bytes get the same bits.
pub fn sum_squares(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(x) * f64::from(x);
        }
    }
    for (lane, &x) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane += f64::from(x) * f64::from(x);
    }
    lanes.iter().sum()
}

/// `values[i] /= divisor` for every element, returning Σ of the quotients' squares summed as
/// [`sum_squares`] would sum them afterwards (same lanes, same order, same bits), in one pass
/// instead of two. The sum is finite exactly when every quotient is: an f32 squared in f64 is
/// at most ~1.2e77, so no count of finite values overflows it, while NaN and ±Inf carry through.
pub fn divide_and_sum_squares(values: &mut [f32], divisor: f32) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut chunks = values.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *x /= divisor;
            *lane += f64::from(*x) * f64::from(*x);
        }
    }
    for (lane, x) in lanes.iter_mut().zip(chunks.into_remainder()) {
        *x /= divisor;
        *lane += f64::from(*x) * f64::from(*x);
    }
    lanes.iter().sum()
}

/// L2 norm of `values` ([`sum_squares`], square-rooted).
pub fn l2_norm(values: &[f32]) -> f64 {
    sum_squares(values).sqrt()
}

/// Whether every value is finite (no NaN, no ±Inf); reads the buffer in vector-sized steps.
pub fn all_finite(values: &[f32]) -> bool {
    let mut chunks = values.chunks_exact(LANES);
    let blocks_ok = chunks.by_ref().all(|chunk| {
        // A product with 0 is NaN exactly for NaN and ±Inf: one multiply and compare per
        // element, no branch inside the block.
        chunk.iter().fold(true, |ok, &x| ok & ((x * 0.0) == 0.0))
    });
    blocks_ok && chunks.remainder().iter().all(|x| x.is_finite())
}

/// `values[i] *= factor` for every element.
pub fn scale(values: &mut [f32], factor: f32) {
    values.iter_mut().for_each(|x| *x *= factor);
}

/// `acc[i] += add[i]`; the lengths must be equal.
///
/// # Panics
/// When the lengths differ (a caller's bug).
pub fn add_assign(acc: &mut [f32], add: &[f32]) {
    assert_eq!(acc.len(), add.len(), "add_assign: lengths differ");
    acc.iter_mut().zip(add).for_each(|(a, b)| *a += *b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dividing_and_summing_in_one_pass_gives_the_two_passes_bits() {
        for len in [0, 1, 7, 8, 9, 1000, 1003] {
            let values: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
            let mut fused = values.clone();
            let sum = divide_and_sum_squares(&mut fused, 3.0);
            let mut separate = values.clone();
            separate.iter_mut().for_each(|x| *x /= 3.0);
            assert_eq!(fused, separate, "length {len}");
            assert_eq!(sum.to_bits(), sum_squares(&separate).to_bits(), "length {len}");
        }
        let mut extreme = vec![f32::MAX; 1000];
        assert!(divide_and_sum_squares(&mut extreme, 1.0).is_finite(), "no overflow in f64");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut values = vec![1.0f32; 20];
            values[13] = bad;
            assert!(!divide_and_sum_squares(&mut values, 2.0).is_finite(), "{bad} is seen");
        }
    }

    fn naive_sum_squares(values: &[f32]) -> f64 {
        values.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
    }

    #[test]
    fn sum_squares_matches_the_f64_reference_for_every_tail_length() {
        for n in [0, 1, 7, 15, 16, 17, 4095, 4096, 4097, 100_003] {
            let values: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 0.013).collect();
            let (got, want) = (sum_squares(&values), naive_sum_squares(&values));
            assert!((got - want).abs() <= 1e-12 * want.max(1e-30), "n {n}: {got} vs {want}");
            assert_eq!(got.to_bits(), sum_squares(&values).to_bits(), "deterministic");
        }
        assert!((l2_norm(&[3.0, 4.0]) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn finiteness_is_checked_everywhere_including_the_tail() {
        let mut values = vec![1.0f32; 40];
        assert!(all_finite(&values));
        assert!(all_finite(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 15, 16, 31, 32, 39] {
                values[at] = bad;
                assert!(!all_finite(&values), "{bad} at {at}");
                values[at] = f32::MAX;
            }
        }
        assert!(all_finite(&values), "f32::MAX is finite");
    }

    #[test]
    fn scale_and_add_assign_are_element_wise() {
        let mut a = vec![1.0, 2.0, 3.0];
        scale(&mut a, 0.5);
        assert_eq!(a, vec![0.5, 1.0, 1.5]);
        add_assign(&mut a, &[1.0, 1.0, 1.0]);
        assert_eq!(a, vec![1.5, 2.0, 2.5]);
    }
}
