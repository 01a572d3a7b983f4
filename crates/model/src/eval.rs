//! `albatross model eval`: run a checkpoint in evaluation mode (no dropout) on JSON inputs and
//! write transformers' outputs (`prediction_logits`, `sop_logits`, `loss`) as safetensors.

use std::path::Path;

use serde::Deserialize;

use crate::albert::AlbertForPreTraining;
use crate::batch::{HostBatch, IGNORE_INDEX};
use crate::config::AlbertConfig;
use crate::error::{ModelError, Result};
use crate::fused::FusedOps;
use crate::hf::{HfTensor, import_hf, write_safetensors};

/// The inputs file: `[B, S]` integer arrays as transformers takes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalInputs {
    /// Token ids.
    pub input_ids: Vec<Vec<i64>>,
    /// Segment ids (zeros when absent, as transformers).
    #[serde(default)]
    pub token_type_ids: Option<Vec<Vec<i64>>>,
    /// 1 = attend, 0 = padding (ones when absent).
    #[serde(default)]
    pub attention_mask: Option<Vec<Vec<i64>>>,
    /// MLM labels, -100 where not masked.
    #[serde(default)]
    pub labels: Option<Vec<Vec<i64>>>,
    /// `[B]` SOP labels.
    #[serde(default)]
    pub sentence_order_label: Option<Vec<i64>>,
}

/// What transformers' `AlbertForPreTraining` returns for the inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOutput {
    /// B.
    pub batch: usize,
    /// S.
    pub seq: usize,
    /// V.
    pub vocab: usize,
    /// `[B, S, V]` row-major.
    pub prediction_logits: Vec<f32>,
    /// `[B, 2]` row-major.
    pub sop_logits: Vec<f32>,
    /// `masked_lm_loss + sentence_order_loss`, when both label sets were given (as transformers).
    pub loss: Option<f32>,
}

fn flatten_rows(what: &str, rows: &[Vec<i64>], batch: usize, seq: usize) -> Result<Vec<i64>> {
    if rows.len() != batch {
        return Err(ModelError::WrongSize {
            what: what.to_owned(),
            expected: format!("{batch} rows"),
            actual: format!("{} rows", rows.len()),
        });
    }
    if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != seq) {
        return Err(ModelError::WrongSize {
            what: format!("{what} row {i}"),
            expected: format!("{seq} tokens"),
            actual: format!("{} tokens", row.len()),
        });
    }
    Ok(rows.concat())
}

impl EvalInputs {
    /// Reads the inputs JSON file.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Io { path: path.into(), reason: e.to_string() })?;
        serde_json::from_str(&text).map_err(|e| ModelError::InvalidInput {
            what: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Checks the arrays are rectangular and builds a host batch (defaults filled in).
    pub fn to_host_batch(&self) -> Result<HostBatch> {
        let batch = self.input_ids.len();
        let seq = self.input_ids.first().map_or(0, Vec::len);
        let tokens = batch * seq;
        let input_ids = flatten_rows("input_ids", &self.input_ids, batch, seq)?;
        let optional = |what: &str, rows: &Option<Vec<Vec<i64>>>, fill: i64| match rows {
            Some(rows) => flatten_rows(what, rows, batch, seq),
            None => Ok(vec![fill; tokens]),
        };
        let sentence_order_label = match &self.sentence_order_label {
            Some(l) => l.clone(),
            None => vec![0; batch],
        };
        Ok(HostBatch {
            batch,
            seq,
            input_ids,
            token_type_ids: optional("token_type_ids", &self.token_type_ids, 0)?,
            attention_mask: optional("attention_mask", &self.attention_mask, 1)?,
            labels: optional("labels", &self.labels, IGNORE_INDEX)?,
            sentence_order_label,
        })
    }
}

/// Runs `model` (on a non-autodiff backend: no dropout) on `inputs`.
pub fn evaluate<B: FusedOps>(
    model: &AlbertForPreTraining<B>,
    config: &AlbertConfig,
    inputs: &EvalInputs,
    device: &B::Device,
) -> Result<EvalOutput> {
    let host = inputs.to_host_batch()?;
    let batch = host.to_device::<B>(config, device)?;
    let logits = model.forward(&batch.input);
    let read = |data: burn::tensor::TensorData, name: &str| {
        data.convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| ModelError::TensorData { name: name.to_owned(), reason: format!("{e:?}") })
    };
    let loss = if inputs.labels.is_some() && inputs.sentence_order_label.is_some() {
        Some(model.pretraining_loss(&batch).report().loss)
    } else {
        None
    };
    Ok(EvalOutput {
        batch: host.batch,
        seq: host.seq,
        vocab: config.vocab_size,
        prediction_logits: read(logits.prediction_logits.into_data(), "prediction_logits")?,
        sop_logits: read(logits.sop_logits.into_data(), "sop_logits")?,
        loss,
    })
}

impl EvalOutput {
    /// Writes `prediction_logits` `[B, S, V]`, `sop_logits` `[B, 2]` and, when present, `loss`
    /// (a 0-d tensor), all f32.
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let mut tensors = vec![
            HfTensor {
                name: "prediction_logits".into(),
                shape: vec![self.batch, self.seq, self.vocab],
                values: self.prediction_logits.clone(),
            },
            HfTensor {
                name: "sop_logits".into(),
                shape: vec![self.batch, 2],
                values: self.sop_logits.clone(),
            },
        ];
        if let Some(loss) = self.loss {
            tensors.push(HfTensor { name: "loss".into(), shape: vec![], values: vec![loss] });
        }
        write_safetensors(path, &tensors)
    }
}

/// What `albatross model eval --hf-dir DIR --inputs FILE.json --out FILE.safetensors
/// [--device D]` does.
pub fn eval_hf_dir(
    hf_dir: &Path,
    inputs: &Path,
    out: &Path,
    device: crate::device::Device,
) -> Result<EvalOutput> {
    let inputs = EvalInputs::from_json_file(inputs)?;
    let output = crate::run_on(device, EvalTask { hf_dir, inputs: &inputs })??;
    output.write_safetensors(out)?;
    tracing::info!(batch = output.batch, seq = output.seq, loss = ?output.loss, %device, "evaluation written");
    Ok(output)
}

/// An evaluation on whichever backend the device selects (no autodiff: its inner backend).
struct EvalTask<'a> {
    hf_dir: &'a Path,
    inputs: &'a EvalInputs,
}

impl crate::device::OnDevice for EvalTask<'_> {
    type Output = Result<EvalOutput>;

    fn run<B: crate::fused::TrainingBackend>(self, device: B::Device) -> Result<EvalOutput> {
        let (config, model) = import_hf::<B::InnerBackend>(self.hf_dir, &device)?;
        evaluate(&model, &config, self.inputs, &device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DefaultBackend as B;
    use crate::albert::tests::{Perturb, tiny, tiny_batch};
    use crate::hf::{export_hf, read_safetensors};
    use burn::module::Module;

    fn rows(v: &[i64]) -> Vec<Vec<i64>> {
        v.chunks(8).map(<[i64]>::to_vec).collect()
    }

    #[test]
    fn eval_of_an_exported_checkpoint_matches_the_model() {
        let dir = tempfile::tempdir().expect("tmp");
        let device = Default::default();
        let model = AlbertForPreTraining::<B>::init(&tiny(), 5, &device)
            .expect("init")
            .map(&mut Perturb::default());
        export_hf(&model, &tiny(), &dir.path().join("ckpt")).expect("export");
        let host = tiny_batch();
        let json = serde_json::json!({
            "input_ids": rows(&host.input_ids),
            "token_type_ids": rows(&host.token_type_ids),
            "attention_mask": rows(&host.attention_mask),
            "labels": rows(&host.labels),
            "sentence_order_label": host.sentence_order_label,
        });
        let inputs = dir.path().join("inputs.json");
        std::fs::write(&inputs, json.to_string()).expect("write");
        let out = dir.path().join("out.safetensors");
        let output =
            eval_hf_dir(&dir.path().join("ckpt"), &inputs, &out, crate::device::Device::Cpu)
                .expect("eval");

        let batch = host.to_device::<B>(&tiny(), &device).expect("batch");
        let expected = model.forward(&batch.input);
        let expected_logits = expected.prediction_logits.into_data().to_vec::<f32>().expect("f32");
        let written = read_safetensors(&out).expect("read");
        assert_eq!(written["prediction_logits"].0, [2, 8, 1000]);
        assert_eq!(written["prediction_logits"].1, expected_logits);
        assert_eq!(written["sop_logits"].0, [2, 2]);
        let expected_loss = model.pretraining_loss(&batch).report().loss;
        assert_eq!(written["loss"], (vec![], vec![expected_loss]));
        assert_eq!(output.loss, Some(expected_loss));
    }

    #[test]
    fn inputs_without_labels_give_no_loss_and_ragged_rows_are_rejected() {
        let model = AlbertForPreTraining::<B>::init(&tiny(), 5, &Default::default()).expect("init");
        let inputs = EvalInputs {
            input_ids: vec![vec![2, 7, 3], vec![2, 9, 3]],
            token_type_ids: None,
            attention_mask: None,
            labels: None,
            sentence_order_label: None,
        };
        let out = evaluate(&model, &tiny(), &inputs, &Default::default()).expect("eval");
        assert_eq!(out.loss, None);
        assert_eq!(out.prediction_logits.len(), 2 * 3 * 1000);
        let ragged = EvalInputs { input_ids: vec![vec![2, 7, 3], vec![2, 3]], ..inputs };
        let err = evaluate(&model, &tiny(), &ragged, &Default::default()).expect_err("ragged");
        assert!(err.to_string().contains("input_ids row 1"), "{err}");
    }
}
