//! A naive f64 ALBERT forward over plain vectors: the reference the burn model is tested against.

use std::collections::HashMap;

use crate::config::{AlbertConfig, HiddenAct};
use crate::hash::ParamEntry;
use crate::params::SHARED_LAYER;

pub(crate) struct Naive<'a> {
    pub(crate) config: &'a AlbertConfig,
    params: HashMap<String, Vec<f64>>,
}

type Rows = Vec<Vec<f64>>;

impl<'a> Naive<'a> {
    pub(crate) fn new(config: &'a AlbertConfig, entries: &[ParamEntry]) -> Self {
        let params = entries
            .iter()
            .map(|e| {
                let values = e.values.as_ref().expect("values collected");
                (e.name.clone(), values.iter().map(|&v| f64::from(v)).collect())
            })
            .collect();
        Self { config, params }
    }

    fn p(&self, name: &str) -> &[f64] {
        self.params.get(name).unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// `x` rows of width `d_in` times burn-layout `[in, out]` weight, plus bias.
    fn linear(&self, x: &Rows, prefix: &str) -> Rows {
        let w = self.p(&format!("{prefix}.weight"));
        let b = self.p(&format!("{prefix}.bias"));
        let d_out = b.len();
        x.iter()
            .map(|row| {
                (0..d_out)
                    .map(|o| {
                        b[o] + row
                            .iter()
                            .enumerate()
                            .map(|(i, v)| v * w[i * d_out + o])
                            .sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }

    fn layer_norm(&self, x: &Rows, prefix: &str) -> Rows {
        let g = self.p(&format!("{prefix}.weight"));
        let b = self.p(&format!("{prefix}.bias"));
        x.iter()
            .map(|row| {
                let n = row.len() as f64;
                let mean = row.iter().sum::<f64>() / n;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                let inv = 1.0 / (var + self.config.layer_norm_eps).sqrt();
                row.iter().enumerate().map(|(i, v)| (v - mean) * inv * g[i] + b[i]).collect()
            })
            .collect()
    }

    fn act(&self, x: Rows) -> Rows {
        let f = |v: f64| match self.config.hidden_act {
            HiddenAct::GeluNew => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * v * (1.0 + (c * (v + 0.044715 * v.powi(3))).tanh())
            }
            HiddenAct::Gelu => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
            HiddenAct::Relu => v.max(0.0),
        };
        x.into_iter().map(|r| r.into_iter().map(f).collect()).collect()
    }

    fn add(a: &Rows, b: &Rows) -> Rows {
        a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect()).collect()
    }

    /// One sequence: returns (`[S][V]` prediction logits, `[2]` SOP logits).
    pub(crate) fn forward(&self, ids: &[i64], types: &[i64], mask: &[i64]) -> (Rows, Vec<f64>) {
        let c = self.config;
        let e = c.embedding_size;
        let row = |name: &str, i: usize| self.p(name)[i * e..(i + 1) * e].to_vec();
        let emb: Rows = (0..ids.len())
            .map(|s| {
                let w = row("albert.embeddings.word_embeddings.weight", ids[s] as usize);
                let t = row("albert.embeddings.token_type_embeddings.weight", types[s] as usize);
                let p = row("albert.embeddings.position_embeddings.weight", s);
                (0..e).map(|k| w[k] + t[k] + p[k]).collect()
            })
            .collect();
        let emb = self.layer_norm(&emb, "albert.embeddings.LayerNorm");
        let mut x = self.linear(&emb, "albert.encoder.embedding_hidden_mapping_in");
        for _ in 0..c.num_hidden_layers {
            x = self.layer(&x, mask);
        }
        let pooled = self.linear(&vec![x[0].clone()], "albert.pooler");
        let pooled: Rows = vec![pooled[0].iter().map(|v| v.tanh()).collect()];
        let sop = self.linear(&pooled, "sop_classifier.classifier").remove(0);
        (self.mlm_logits(&x), sop)
    }

    fn layer(&self, x: &Rows, mask: &[i64]) -> Rows {
        let a = format!("{SHARED_LAYER}.attention");
        let (q, k, v) = (
            self.linear(x, &format!("{a}.query")),
            self.linear(x, &format!("{a}.key")),
            self.linear(x, &format!("{a}.value")),
        );
        let heads = self.config.num_attention_heads;
        let dh = self.config.head_dim();
        let seq = x.len();
        let mut context = vec![vec![0.0; heads * dh]; seq];
        for h in 0..heads {
            let r = h * dh..(h + 1) * dh;
            for i in 0..seq {
                let scores: Vec<f64> = (0..seq)
                    .map(|j| {
                        let dot: f64 =
                            q[i][r.clone()].iter().zip(&k[j][r.clone()]).map(|(a, b)| a * b).sum();
                        dot / (dh as f64).sqrt()
                            + if mask[j] == 0 { f64::from(f32::MIN) } else { 0.0 }
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for (j, w) in exps.iter().enumerate() {
                    for d in 0..dh {
                        context[i][h * dh + d] += w / total * v[j][h * dh + d];
                    }
                }
            }
        }
        let projected = self.linear(&context, &format!("{a}.dense"));
        let attended = self.layer_norm(&Self::add(x, &projected), &format!("{a}.LayerNorm"));
        let inner = self.act(self.linear(&attended, &format!("{SHARED_LAYER}.ffn")));
        let out = self.linear(&inner, &format!("{SHARED_LAYER}.ffn_output"));
        self.layer_norm(
            &Self::add(&out, &attended),
            &format!("{SHARED_LAYER}.full_layer_layer_norm"),
        )
    }

    fn mlm_logits(&self, x: &Rows) -> Rows {
        let h = self.act(self.linear(x, "predictions.dense"));
        let h = self.layer_norm(&h, "predictions.LayerNorm");
        let word = self.p("albert.embeddings.word_embeddings.weight");
        let bias = self.p("predictions.bias");
        let e = self.config.embedding_size;
        h.iter()
            .map(|row| {
                (0..bias.len())
                    .map(|t| {
                        bias[t]
                            + row
                                .iter()
                                .zip(&word[t * e..(t + 1) * e])
                                .map(|(a, b)| a * b)
                                .sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }
}

/// Abramowitz–Stegun 7.1.26 is too coarse; use the series/continued fraction via libm-free erf
/// from the complementary error function's Chebyshev fit (Numerical Recipes `erfc`, |ε| < 1.2e-7).
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }
}
