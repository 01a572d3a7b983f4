use super::*;

/// Deterministic values in [lo, hi] (a fixed LCG; no test depends on a random seed).
fn spread(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * unit
        })
        .collect()
}

#[test]
fn exp_is_within_a_few_ulp_of_f64_across_the_normal_range() {
    let mut worst = 0.0f64;
    for i in 0..=200_000 {
        let x = -87.0 + 175.5 * (i as f32 / 200_000.0);
        let got = f64::from(exp(x));
        let want = f64::from(x).exp();
        worst = worst.max(((got - want) / want).abs());
    }
    // 2 ulp of f32 is 2.4e-7 relative.
    assert!(worst < 2.4e-7, "worst relative error {worst:e}");
}

#[test]
fn exp_edges_are_exact() {
    assert_eq!(exp(0.0), 1.0);
    assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp(-100.0), 0.0);
    assert_eq!(exp(f32::MIN), 0.0);
    assert_eq!(exp(89.0), f32::INFINITY);
    assert_eq!(exp(f32::INFINITY), f32::INFINITY);
    assert!(exp(f32::NAN).is_nan());
    // The largest finite results stay finite.
    assert!(exp(88.7).is_finite());
}

fn gelu_f64(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

#[test]
fn gelu_forward_matches_the_tanh_formula() {
    let xs: Vec<f32> = (0..=1600).map(|i| -8.0 + i as f32 * 0.01).chain([-30.0, 30.0]).collect();
    let mut out = vec![0.0; xs.len()];
    gelu_new_forward(&xs, &mut out);
    for (&x, &y) in xs.iter().zip(&out) {
        let want = gelu_f64(f64::from(x));
        assert!((f64::from(y) - want).abs() < 1e-6, "x {x}: {y} vs {want}");
    }
}

#[test]
fn gelu_backward_matches_a_central_difference_of_the_tanh_formula() {
    let far = [-4e8, -1e8, -1e4, -100.0, -30.0, -12.0, 12.0, 30.0, 100.0, 1e4];
    let xs: Vec<f32> = (0..=1600).map(|i| -8.0 + i as f32 * 0.01).chain(far).collect();
    let upstream = spread(xs.len(), -2.0, 2.0, 7);
    let mut grad = upstream.clone();
    gelu_new_backward(&xs, &mut grad);
    for ((&x, &g), &up) in xs.iter().zip(&grad).zip(&upstream) {
        let h = 1e-5;
        let x = f64::from(x);
        let slope = (gelu_f64(x + h) - gelu_f64(x - h)) / (2.0 * h);
        let want = f64::from(up) * slope;
        assert!((f64::from(g) - want).abs() < 2e-6, "x {x}: {g} vs {want}");
    }
}

#[test]
fn gelu_keeps_nan() {
    let mut out = [0.0; 2];
    gelu_new_forward(&[f32::NAN, 1.0], &mut out);
    assert!(out[0].is_nan());
    assert!(out[1].is_finite());
    let mut grad = [1.0, f32::NAN];
    gelu_new_backward(&[f32::NAN, 1.0], &mut grad);
    assert!(grad[0].is_nan() && grad[1].is_nan());
}

/// Reference softmax in f64: `softmax(scale · s + mask)` row by row.
fn probs_f64(scores: &[f32], mask: &[f32], rows: ScoreRows, scale: f32) -> Vec<f64> {
    let mut out = Vec::with_capacity(scores.len());
    for (r, row) in scores.chunks(rows.row_len).enumerate() {
        let b = r / rows.rows_per_batch;
        let m = &mask[b * rows.row_len..(b + 1) * rows.row_len];
        let z: Vec<f64> =
            row.iter().zip(m).map(|(&s, &m)| f64::from(s * scale) + f64::from(m)).collect();
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|&z| (z - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        out.extend(e.iter().map(|e| e / sum));
    }
    out
}

#[test]
fn attention_probs_match_f64_softmax_with_padding_masked() {
    // Lengths that are not multiples of the lane count, and one that is.
    for row_len in [1usize, 5, 16, 37, 128] {
        let rows = ScoreRows { batches: 3, rows_per_batch: 4, row_len };
        let scores = spread(rows.len(), -12.0, 12.0, row_len as u64);
        let mut mask = vec![0.0f32; rows.batches * row_len];
        // The second sequence pads its last third of keys, as the model's mask bias does.
        for m in &mut mask[row_len + row_len - row_len / 3..2 * row_len] {
            *m = f32::MIN;
        }
        let mut out = vec![0.0; rows.len()];
        attention_probs_forward(&scores, &mask, rows, 0.125, &mut out);
        let want = probs_f64(&scores, &mask, rows, 0.125);
        for (i, (&p, &w)) in out.iter().zip(&want).enumerate() {
            assert!((f64::from(p) - w).abs() < 1e-6, "row_len {row_len} i {i}: {p} vs {w}");
            let key = i % row_len;
            let batch = i / (rows.rows_per_batch * row_len);
            if mask[batch * row_len + key] == f32::MIN {
                assert_eq!(p, 0.0, "a padded key gets no attention");
            }
        }
    }
}

#[test]
fn a_nan_score_poisons_its_row_only() {
    let rows = ScoreRows { batches: 1, rows_per_batch: 2, row_len: 20 };
    let mut scores = spread(rows.len(), -1.0, 1.0, 3);
    scores[3] = f32::NAN;
    let mut out = vec![0.0; rows.len()];
    attention_probs_forward(&scores, &[0.0; 20], rows, 1.0, &mut out);
    assert!(out[..20].iter().all(|p| p.is_nan()));
    assert!(out[20..].iter().all(|p| p.is_finite()));
}

#[test]
fn attention_probs_backward_matches_the_softmax_jacobian() {
    let rows = ScoreRows { batches: 2, rows_per_batch: 3, row_len: 37 };
    let scores = spread(rows.len(), -6.0, 6.0, 11);
    let mask = vec![0.0f32; rows.batches * rows.row_len];
    let scale = 0.125;
    let mut probs = vec![0.0; rows.len()];
    attention_probs_forward(&scores, &mask, rows, scale, &mut probs);
    let upstream = spread(rows.len(), -1.0, 1.0, 5);
    let mut grad = upstream.clone();
    attention_probs_backward(&probs, &mut grad, rows.row_len, scale);
    // ds_j = scale · Σ_k g_k · p_k · (δ_jk − p_j), computed in f64 from the f64 probabilities.
    let p64 = probs_f64(&scores, &mask, rows, scale);
    for (r, (p, g)) in p64.chunks(rows.row_len).zip(upstream.chunks(rows.row_len)).enumerate() {
        for j in 0..rows.row_len {
            let want: f64 = (0..rows.row_len)
                .map(|k| {
                    let delta = if j == k { 1.0 } else { 0.0 };
                    f64::from(g[k]) * p[k] * (delta - p[j])
                })
                .sum::<f64>()
                * f64::from(scale);
            let got = f64::from(grad[r * rows.row_len + j]);
            assert!((got - want).abs() < 1e-7, "row {r} key {j}: {got} vs {want}");
        }
    }
}

#[test]
fn empty_inputs_are_fine() {
    let rows = ScoreRows { batches: 0, rows_per_batch: 4, row_len: 8 };
    attention_probs_forward(&[], &[], rows, 1.0, &mut []);
    attention_probs_backward(&[], &mut [], 0, 1.0);
    gelu_new_forward(&[], &mut []);
}

#[test]
fn merge_heads_gathers_contiguous_and_transposed_views() {
    let (batches, heads, seq, width) = (2usize, 3usize, 4usize, 5usize);
    let n = batches * heads * seq * width;
    let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
    // Contiguous [B, heads, S, d].
    let view = StridedView {
        dims: [batches, heads, seq, width],
        strides: [heads * seq * width, seq * width, width, 1],
        offset: 0,
    };
    let mut out = vec![0.0; n];
    merge_heads(&src, view, &mut out);
    for b in 0..batches {
        for s in 0..seq {
            for h in 0..heads {
                for e in 0..width {
                    let want = ((b * heads + h) * seq + s) * width + e;
                    assert_eq!(out[(b * seq + s) * heads * width + h * width + e], want as f32);
                }
            }
        }
    }
    // The same values stored as [B, heads, d, S] and viewed transposed, behind an offset.
    let mut stored = vec![-1.0f32; 3 + n];
    for b in 0..batches {
        for h in 0..heads {
            for s in 0..seq {
                for e in 0..width {
                    stored[3 + ((b * heads + h) * width + e) * seq + s] =
                        src[((b * heads + h) * seq + s) * width + e];
                }
            }
        }
    }
    let transposed = StridedView {
        dims: [batches, heads, seq, width],
        strides: [heads * width * seq, width * seq, 1, seq],
        offset: 3,
    };
    let mut again = vec![0.0; n];
    merge_heads(&stored, transposed, &mut again);
    assert_eq!(again, out);
}

#[test]
#[should_panic(expected = "range")]
fn merge_heads_refuses_a_view_past_the_buffer() {
    let view = StridedView { dims: [1, 1, 2, 4], strides: [8, 8, 4, 1], offset: 1 };
    merge_heads(&[0.0; 8], view, &mut [0.0; 8]);
}

#[test]
fn layer_norm_forward_matches_f64_and_records_its_statistics() {
    let width = 37;
    let rows = 5;
    // A large common offset: the two-pass variance must not lose it.
    let x: Vec<f32> = spread(rows * width, -3.0, 3.0, 21).iter().map(|v| v + 1000.0).collect();
    let gamma = spread(width, 0.5, 1.5, 22);
    let beta = spread(width, -0.5, 0.5, 23);
    let mut out = vec![0.0; x.len()];
    let mut stats = vec![0.0; 2 * rows];
    let eps = 1e-12;
    layer_norm_forward(&x, Affine { gamma: &gamma, beta: &beta }, eps, &mut out, &mut stats);
    for (r, row) in x.chunks(width).enumerate() {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / width as f64;
        let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / width as f64;
        let rstd = 1.0 / (var + f64::from(eps)).sqrt();
        assert!((f64::from(stats[2 * r]) - mean).abs() < 1e-3);
        assert!((f64::from(stats[2 * r + 1]) - rstd).abs() < 1e-3 * rstd);
        for j in 0..width {
            let want = (f64::from(row[j]) - mean) * rstd * f64::from(gamma[j]) + f64::from(beta[j]);
            let got = f64::from(out[r * width + j]);
            assert!((got - want).abs() < 2e-4, "row {r} col {j}: {got} vs {want}");
        }
    }
}

#[test]
fn layer_norm_backward_matches_central_differences() {
    let (rows, width) = (3, 19);
    let x = spread(rows * width, -2.0, 2.0, 31);
    let gamma = spread(width, 0.5, 1.5, 32);
    let beta = spread(width, -0.5, 0.5, 33);
    let upstream = spread(rows * width, -1.0, 1.0, 34);
    let eps = 1e-5f32;
    // Loss = Σ upstream · layer_norm(x), evaluated in f64.
    let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| -> f64 {
        let mut total = 0.0;
        for (r, row) in x.chunks(width).enumerate() {
            let mean = row.iter().sum::<f64>() / width as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            let rstd = 1.0 / (var + f64::from(eps)).sqrt();
            for j in 0..width {
                let y = (row[j] - mean) * rstd * gamma[j] + beta[j];
                total += f64::from(upstream[r * width + j]) * y;
            }
        }
        total
    };
    let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let (x64, g64, b64) = (widen(&x), widen(&gamma), widen(&beta));
    let mut out = vec![0.0; x.len()];
    let mut stats = vec![0.0; 2 * rows];
    layer_norm_forward(&x, Affine { gamma: &gamma, beta: &beta }, eps, &mut out, &mut stats);
    let mut grad = upstream.clone();
    let (mut dg, mut db) = (vec![0.0; width], vec![0.0; width]);
    layer_norm_backward(&x, &gamma, &stats, &mut grad, NormSums { gamma: &mut dg, beta: &mut db });
    let h = 1e-6;
    let diff = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
    for i in 0..x.len() {
        let slope = diff(&|d| {
            let mut x = x64.clone();
            x[i] += d;
            loss(&x, &g64, &b64)
        });
        assert!((f64::from(grad[i]) - slope).abs() < 1e-4, "dx[{i}]: {} vs {slope}", grad[i]);
    }
    for j in 0..width {
        let slope_g = diff(&|d| {
            let mut g = g64.clone();
            g[j] += d;
            loss(&x64, &g, &b64)
        });
        let slope_b = diff(&|d| {
            let mut b = b64.clone();
            b[j] += d;
            loss(&x64, &g64, &b)
        });
        assert!((f64::from(dg[j]) - slope_g).abs() < 1e-4, "dγ[{j}]");
        assert!((f64::from(db[j]) - slope_b).abs() < 1e-4, "dβ[{j}]");
    }
}

#[test]
fn transpose_moves_every_element_across_partial_tiles() {
    // 70 × 130: neither side a multiple of the tile, so edge tiles are partial.
    let (rows, cols) = (70, 130);
    let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let mut out = vec![f32::NAN; rows * cols];
    transpose(&src, rows, cols, &mut out);
    for r in 0..rows {
        for c in 0..cols {
            assert_eq!(out[c * rows + r], src[r * cols + c], "element ({r}, {c})");
        }
    }
    let mut empty: Vec<f32> = Vec::new();
    transpose(&[], 0, 5, &mut empty);
}
