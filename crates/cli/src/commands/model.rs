//! `albatross model …`: configurations, evaluation and Hugging Face export.

use albatross_model::{
    AlbertConfig, AlbertForPreTraining, DefaultBackend, ModelInfo, eval_hf_dir, export_hf,
};
use anyhow::Context;

use super::output::write_stdout;
use crate::args::{ModelCommand, ModelSource};

pub(super) fn load(source: &ModelSource) -> anyhow::Result<AlbertConfig> {
    match &source.config {
        Some(path) => AlbertConfig::from_json_file(path)
            .with_context(|| format!("cannot use model config {}", path.display())),
        None => AlbertConfig::preset(&source.preset).context("unknown model preset"),
    }
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Info { source, json } => {
            let info = ModelInfo::new(&load(&source)?);
            if json {
                return write_stdout(&format!("{}\n", info.to_json()));
            }
            let mut text = format!(
                "parameters          {}\ntensors             {}\ngradient bytes/step {}\n\
                 layout fingerprint  {}\n",
                info.parameters, info.tensors, info.gradient_bytes, info.layout_fingerprint
            );
            for module in &info.modules {
                text.push_str(&format!("  {:<18}{}\n", module.module, module.parameters));
            }
            text.push_str(&format!(
                "BERT of the same size: {} parameters, {} gradient bytes/step ({:.1}x more)\n",
                info.bert_equivalent_parameters,
                info.bert_equivalent_gradient_bytes,
                info.communication_saving
            ));
            write_stdout(&text)
        }
        ModelCommand::Eval { hf_dir, inputs, out, device } => {
            let output = eval_hf_dir(&hf_dir, &inputs, &out, device)?;
            let loss = output.loss.map_or("n/a (no labels)".to_owned(), |l| format!("{l:.6}"));
            write_stdout(&format!(
                "wrote {} (batch {}, seq {}, loss {loss})\n",
                out.display(),
                output.batch,
                output.seq
            ))
        }
        ModelCommand::ExportHf { checkpoint: Some(dir), out, .. } => {
            let meta = albatross_worker::checkpoint::verify(&dir)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            for file in [albatross_model::CONFIG_FILE, albatross_model::WEIGHTS_FILE] {
                let (from, to) = (dir.join(file), out.join(file));
                std::fs::copy(&from, &to).with_context(|| {
                    format!("cannot copy {} to {}", from.display(), to.display())
                })?;
            }
            write_stdout(&format!(
                "wrote {} (config.json, model.safetensors) from the checkpoint of step {} of job {}\n",
                out.display(),
                meta.step,
                meta.job_name
            ))
        }
        ModelCommand::ExportHf { checkpoint: None, source, seed, out } => {
            let config = load(&source)?;
            let model =
                AlbertForPreTraining::<DefaultBackend>::init(&config, seed, &Default::default())?;
            export_hf(&model, &config, &out)?;
            write_stdout(&format!("wrote {} (config.json, model.safetensors)\n", out.display()))
        }
    }
}
