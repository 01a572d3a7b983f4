//! The ring schedule against a naive in-memory simulation of `n` ranks.

use std::collections::VecDeque;

use super::*;
use crate::compress::{self, WireFormat};
use crate::testing::{inputs, ring_order_sum as reference};

/// Run every rank's plan with one FIFO per ring link. Each round lets every rank make as
/// much progress as it can (ranks visited in `order`); the run must finish without stalling.
/// Returns the final buffers and the set of pieces each rank received.
fn simulate(
    mut bufs: Vec<Vec<f32>>,
    piece_elems: usize,
    format: WireFormat,
    reversed: bool,
) -> Vec<Vec<f32>> {
    let n = bufs.len();
    let len = bufs[0].len();
    let plans: Vec<RingPlan> = (0..n)
        .map(|rank| RingPlan::all_reduce(RingShape { world: n, rank, len, piece_elems }))
        .collect();
    // links[r] carries messages from r - 1 to r.
    let mut links: Vec<VecDeque<(Transfer, bytes::Bytes)>> = vec![VecDeque::new(); n];
    let mut sent = vec![0usize; n];
    let mut applied = vec![0usize; n];
    loop {
        let mut progress = false;
        let order: Vec<usize> = if reversed { (0..n).rev().collect() } else { (0..n).collect() };
        for &r in &order {
            let plan = &plans[r];
            while let Some((transfer, payload)) = links[r].pop_front() {
                let expected = &plan.recvs[applied[r]];
                assert_eq!(transfer, expected.transfer, "rank {r} got an unexpected piece");
                let range = transfer.range.clone();
                compress::apply(
                    &mut bufs[r][range],
                    &crate::payload::Payload::from(payload),
                    format,
                    expected.action,
                );
                applied[r] += 1;
                progress = true;
            }
            while sent[r] < plan.sends.len() && plan.sends[sent[r]].after_recvs <= applied[r] {
                let step = &plan.sends[sent[r]];
                let range = step.transfer.range.clone();
                if step.owner_source {
                    compress::round_in_place(&mut bufs[r][range.clone()], format);
                }
                let payload = compress::encode(&bufs[r][range], format);
                links[(r + 1) % n].push_back((step.transfer.clone(), payload));
                sent[r] += 1;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    for r in 0..n {
        assert_eq!(sent[r], plans[r].sends.len(), "rank {r} stalled sending");
        assert_eq!(applied[r], plans[r].recvs.len(), "rank {r} stalled receiving");
    }
    bufs
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn segments_cover_the_buffer_and_differ_by_at_most_one() {
    for len in [0usize, 1, 7, 1000, 1001] {
        for parts in 1..=8 {
            let segs = Segments::new(len, parts);
            let mut next = 0;
            let sizes: Vec<usize> = (0..parts)
                .map(|i| {
                    let r = segs.range(i);
                    assert_eq!(r.start, next, "len {len} parts {parts}");
                    next = r.end;
                    r.len()
                })
                .collect();
            assert_eq!(next, len);
            let (min, max) = (sizes.iter().min(), sizes.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{sizes:?}");
        }
    }
    assert_eq!(Segments::new(10, 3).range(0), 0..4);
    assert_eq!(Segments::new(10, 3).range(2), 7..10);
}

#[test]
fn ring_sums_match_the_reference_bit_for_bit_on_every_rank() {
    for n in [1usize, 2, 3, 4, 5, 7] {
        for len in [0usize, 1, 7, 1000, (1 << 20) + 3] {
            // Small pieces for small buffers so pipelining is exercised everywhere.
            let piece_elems = if len > 10_000 { 65_536 } else { 3 };
            let input = inputs(n, len, (n * 1_000_003 + len) as u64);
            let expected = reference(&input, WireFormat::F32);
            let out = simulate(input.clone(), piece_elems, WireFormat::F32, n % 2 == 0);
            for (r, buf) in out.iter().enumerate() {
                assert!(bits(buf) == bits(&expected), "n {n} len {len}: rank {r} differs");
            }
            // And close to the exact sum (f64), as a sanity check of the reference itself.
            for i in (0..len).step_by(997) {
                let exact: f64 = input.iter().map(|b| f64::from(b[i])).sum();
                assert!((f64::from(expected[i]) - exact).abs() < 1e-5 * n as f64, "{i}");
            }
        }
    }
}

#[test]
fn each_rank_owns_the_segment_after_its_own() {
    for n in 2..=6usize {
        for rank in 0..n {
            let plan = RingPlan::all_reduce(RingShape { world: n, rank, len: 100, piece_elems: 7 });
            let last_rs = plan
                .recvs
                .iter()
                .rfind(|r| r.transfer.phase == Phase::ReduceScatter)
                .map(|r| r.transfer.segment as usize);
            assert_eq!(last_rs, Some((rank + 1) % n));
            let owner_sends: Vec<u32> =
                plan.sends.iter().filter(|s| s.owner_source).map(|s| s.transfer.segment).collect();
            assert!(owner_sends.iter().all(|&s| s as usize == (rank + 1) % n));
            let owned = Segments::new(100, n).range((rank + 1) % n).len();
            assert_eq!(owner_sends.len(), owned.div_ceil(7));
        }
    }
}

#[test]
fn every_element_is_accumulated_n_minus_1_times_across_the_ring() {
    let (n, len) = (5usize, 1003usize);
    let mut count = vec![0usize; len];
    for rank in 0..n {
        let plan = RingPlan::all_reduce(RingShape { world: n, rank, len, piece_elems: 64 });
        for r in plan.recvs.iter().filter(|r| r.action == RecvAction::Accumulate) {
            for i in r.transfer.range.clone() {
                count[i] += 1;
            }
        }
        // Bytes on the wire per rank: 2 (n - 1) / n of the buffer, the bandwidth optimum.
        let sent: usize = plan.sends.iter().map(|s| s.transfer.range.len()).sum();
        assert!(sent.abs_diff(2 * (n - 1) * len / n) <= 2 * n, "{sent}");
    }
    assert!(count.iter().all(|&c| c == n - 1));
}

#[test]
fn bf16_ring_is_bit_identical_and_within_the_error_bound() {
    for n in [2usize, 3, 4, 7] {
        let len = 5000;
        let input = inputs(n, len, 42 + n as u64);
        let expected = reference(&input, WireFormat::Bf16);
        let out = simulate(input.clone(), 128, WireFormat::Bf16, false);
        for buf in &out {
            assert!(bits(buf) == bits(&expected), "n {n}: ranks differ");
        }
        // Each of the n roundings (n - 1 hops and the owner's) errs by at most 2^-8 of a
        // partial sum, and every partial sum is bounded by the sum of magnitudes.
        for i in 0..len {
            let exact: f64 = input.iter().map(|b| f64::from(b[i])).sum();
            let magnitude: f64 = input.iter().map(|b| f64::from(b[i].abs())).sum();
            let err = (f64::from(out[0][i]) - exact).abs();
            assert!(err <= n as f64 * 2f64.powi(-8) * magnitude, "n {n} i {i} err {err}");
        }
    }
}

#[test]
fn broadcast_forwards_every_piece_from_the_root() {
    for n in [1usize, 2, 3, 5] {
        for root in 0..n {
            let len = 77;
            let shape = |rank| RingShape { world: n, rank, len, piece_elems: 10 };
            let plans: Vec<RingPlan> =
                (0..n).map(|r| RingPlan::broadcast(shape(r), root)).collect();
            for (rank, plan) in plans.iter().enumerate() {
                let succ = &plans[(rank + 1) % n];
                let sent: Vec<&Transfer> = plan.sends.iter().map(|s| &s.transfer).collect();
                let got: Vec<&Transfer> = succ.recvs.iter().map(|r| &r.transfer).collect();
                assert_eq!(sent, got, "n {n} root {root} link {rank}->{}", (rank + 1) % n);
                for (i, s) in plan.sends.iter().enumerate() {
                    let needed = if rank == root { 0 } else { i + 1 };
                    assert_eq!(s.after_recvs, needed);
                }
            }
            assert!(plans[root].recvs.is_empty());
            assert!(plans[(root + n - 1) % n].sends.is_empty());
        }
    }
}

#[test]
fn shape_validation_names_the_problem() {
    let ok = RingShape { world: 3, rank: 2, len: 10, piece_elems: 4 };
    assert_eq!(validate_shape(&ok), Ok(()));
    let bad_rank = RingShape { rank: 3, ..ok };
    assert!(validate_shape(&bad_rank).is_err_and(|e| e.contains("rank 3")));
    let empty = RingShape { world: 0, rank: 0, ..ok };
    assert!(validate_shape(&empty).is_err_and(|e| e.contains("no members")));
    let zero_piece = RingShape { piece_elems: 0, ..ok };
    assert!(validate_shape(&zero_piece).is_err_and(|e| e.contains("piece size")));
}
