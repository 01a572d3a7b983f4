//! `albatross model info` and `albatross bench step`.

use albatross_model::bench::StepBenchReport;
use albatross_model::bench::{StepBenchOptions, run_step_bench};
use albatross_model::{
    AlbertConfig, AlbertForPreTraining, DefaultBackend, ModelInfo, OnDevice, TrainingBackend,
    eval_hf_dir, export_hf, run_on,
};
use anyhow::Context;

use super::write_stdout;
use crate::args::{BenchCommand, ModelCommand, ModelSource};

fn load(source: &ModelSource) -> anyhow::Result<AlbertConfig> {
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

pub fn bench(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Allreduce(args) => super::allreduce::bench(&args),
        BenchCommand::Train(args) => crate::launch::bench_train(&args),
        BenchCommand::Data(args) => super::data_bench::run(&args),
        BenchCommand::Coordinator { workers, rounds, channels, json } => {
            super::coordinator::bench(workers, rounds, channels, json)
        }
        BenchCommand::Step { source, batch, seq, steps, warmup, seed, cancel_at, device, json } => {
            anyhow::ensure!(
                batch > 0 && seq > 0 && steps > 0,
                "--batch, --seq and --steps must be > 0"
            );
            if let Some(bad) = cancel_at.iter().find(|f| !(0.0..1.0).contains(*f)) {
                anyhow::bail!("--cancel-at {bad} is not a fraction of a pass in [0, 1)");
            }
            let options = StepBenchOptions {
                config: load(&source)?,
                batch,
                seq,
                steps,
                warmup_steps: warmup,
                seed,
                cancel_at,
            };
            tracing::info!(batch, seq, steps, %device, "benchmarking training steps");
            let report = run_on(device, StepBench(&options))??;
            if json {
                return write_stdout(&format!("{}\n", serde_json::to_string(&report)?));
            }
            let rss = report
                .peak_rss_bytes
                .map_or("n/a".to_owned(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
            let cpu = report.cpu_seconds_per_step.map_or("n/a".to_owned(), |s| format!("{s:.3}"));
            write_stdout(&format!(
                "{device}: batch {batch} x seq {seq}, median of {steps} steps\n\
                 s/step            {:.4}\ntokens/s          {:.1}\nCPU-s/step        {cpu}\n\
                 forward+backward  {:.4} s\nflatten+writeback {:.4} s\noptimizer         {:.4} s\n\
                 peak RSS          {rss}\nlast loss         {:.4}\n",
                report.seconds_per_step,
                report.tokens_per_second,
                report.forward_backward_seconds,
                report.flatten_seconds,
                report.optimizer_seconds,
                report.last_loss,
            ))?;
            for probe in &report.cancel {
                let stopped = if probe.cancelled {
                    format!("stopped {:.4} s after the cancel", probe.stop_seconds)
                } else {
                    "finished before the cancel".to_owned()
                };
                write_stdout(&format!(
                    "cancelled at {:>3.0} % of forward+backward: {stopped}\n",
                    probe.at_fraction * 100.0
                ))?;
            }
            Ok(())
        }
    }
}

/// `bench step` on whichever backend `--device` selects.
struct StepBench<'a>(&'a StepBenchOptions);

impl OnDevice for StepBench<'_> {
    type Output = albatross_model::Result<StepBenchReport>;

    fn run<B: TrainingBackend>(self, device: B::Device) -> Self::Output {
        run_step_bench::<B>(self.0, &device)
    }
}
