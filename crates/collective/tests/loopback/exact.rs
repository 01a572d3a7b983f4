//! The exact i64 all-reduce: the same contributions give the same bits on any ring.

use albatross_collective::CollectiveConfig;

use crate::support::{start, tag};

/// Contributions summed in every test: 12 vectors, the first 6 near +2^62 and the last 6 near
/// -2^62, so partial sums wrap (two of the first already pass i64::MAX) while the true sum of
/// each element, a sum of small offsets, fits.
fn contributions(len: usize) -> Vec<Vec<i64>> {
    (0..12i64)
        .map(|k| {
            let sign = if k < 6 { 1 } else { -1 };
            (0..len as i64)
                .map(|i| sign * ((1 << 62) + (k * 7919 + i * 104_729) % 1_000_003))
                .collect()
        })
        .collect()
}

/// Which rank gets each contribution: round robin, blocks, and a scrambled assignment that
/// leaves the last rank (of two or more) with none.
fn assignments(n: usize) -> Vec<[usize; 12]> {
    let round_robin = std::array::from_fn(|k| k % n);
    let blocks = std::array::from_fn(|k| k * n / 12);
    let scrambled = std::array::from_fn(|k| (k * 5 + 3) % 12 % n.saturating_sub(1).max(1));
    vec![round_robin, blocks, scrambled]
}

/// Each rank's buffer: the wrapping sum of the contributions assigned to it (zeros if none).
fn rank_inputs(all: &[Vec<i64>], assignment: &[usize; 12], n: usize) -> Vec<Vec<i64>> {
    let mut inputs = vec![vec![0i64; all[0].len()]; n];
    for (contribution, &rank) in all.iter().zip(assignment) {
        for (acc, v) in inputs[rank].iter_mut().zip(contribution) {
            *acc = acc.wrapping_add(*v);
        }
    }
    inputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i64_sums_are_exact_and_identical_for_every_world_size_and_assignment() {
    // 5 elements per piece: every length below cuts into segments and pieces unevenly.
    let config = CollectiveConfig { piece_bytes: 40, ..CollectiveConfig::default() };
    let lens = [1usize, 7, 23, 1001];
    let all: Vec<Vec<Vec<i64>>> = lens.iter().map(|&len| contributions(len)).collect();
    let expected: Vec<Vec<i64>> = all
        .iter()
        .map(|c| {
            (0..c[0].len()).map(|i| c.iter().fold(0i64, |acc, v| acc.wrapping_add(v[i]))).collect()
        })
        .collect();
    // The inputs do wrap on the way, and the wrapping sum is the true sum.
    let c = &all[0];
    assert!(i128::from(c[0][0]) + i128::from(c[1][0]) > i128::from(i64::MAX));
    let exact: i128 = c.iter().map(|v| i128::from(v[0])).sum();
    assert_eq!(i128::from(expected[0][0]), exact);

    for n in 1..=4usize {
        let ring = start(n, config.clone()).await;
        let mut op_seq = 0;
        for assignment in assignments(n) {
            for (len, (c, want)) in lens.iter().zip(all.iter().zip(&expected)) {
                let inputs = rank_inputs(c, &assignment, n);
                let out = ring.all_reduce_i64(inputs, tag(1, op_seq)).await;
                op_seq += 1;
                for (rank, buf) in out.iter().enumerate() {
                    assert!(
                        buf == want,
                        "n {n} assignment {assignment:?} len {len}: rank {rank} differs"
                    );
                }
            }
        }
        for rank in ring.ranks {
            rank.stop().await;
        }
    }
}
