//! Test inputs and the reference sum, shared by this crate's unit tests and its loopback
//! integration tests (which cannot see `#[cfg(test)]` items). Not part of the public API.

use crate::compress::{self, WireFormat};
use crate::schedule::Segments;

/// Deterministic pseudo-random inputs (xorshift), different per rank.
pub fn inputs(n: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

/// Segment `c` summed in ring order starting at rank `c`, the order the schedule promises,
/// with every partial sum rounded to the wire precision before it travels.
pub fn ring_order_sum(input: &[Vec<f32>], format: WireFormat) -> Vec<f32> {
    let n = input.len();
    let len = input[0].len();
    let segments = Segments::new(len, n);
    let mut out = vec![0f32; len];
    for c in 0..n {
        for i in segments.range(c) {
            let mut acc = input[c][i];
            for j in 1..n {
                let mut sent = [acc];
                compress::round_in_place(&mut sent, format);
                acc = input[(c + j) % n][i] + sent[0];
            }
            let mut owned = [acc];
            if n > 1 {
                compress::round_in_place(&mut owned, format);
            }
            out[i] = owned[0];
        }
    }
    out
}
