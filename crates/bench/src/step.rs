//! `albatross bench step`: time full training steps (forward, backward, gradient flatten and
//! clip, LAMB on the flat state, parameters written back into the model) on synthetic data, as
//! a worker runs them. A benchmark, not a test.

use std::time::{Duration, Instant};

use burn::optim::GradientsParams;
use serde::Serialize;

use albatross_model::batch::{HostBatch, IGNORE_INDEX, PretrainingBatch};
use albatross_model::lamb::{FlatState, FlatStateMut, Lamb, LambConfig, clip_by_global_norm};
use albatross_model::{
    AlbertConfig, AlbertForPreTraining, CancelFlag, Device, GradLayout, OnDevice, Result,
    TrainingBackend, run_cancellable, run_on,
};
use albatross_rng::SplitMix64;

use crate::measure::{median, peak_rss_bytes, process_cpu_seconds};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBenchOptions {
    /// Model configuration.
    pub config: AlbertConfig,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup_steps: usize,
    /// Seed of the weights and of the synthetic data.
    pub seed: u64,
    /// After the timed steps, one cancelled forward + backward pass per entry, cancelled this
    /// fraction (0..1) of the median forward + backward time into it (see [`albatross_model::cancel`]).
    pub cancel_at: Vec<f64>,
}

/// How quickly one cancelled pass stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelProbe {
    /// When the flag was set, as a fraction of the median forward + backward time.
    pub at_fraction: f64,
    /// Seconds from setting the flag to the pass returning (what an aborted step still costs).
    pub stop_seconds: f64,
    /// False when the pass finished before the flag was set (nothing was cancelled).
    pub cancelled: bool,
}

/// Measured figures (medians over the timed steps).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepBenchReport {
    /// Median wall seconds per step.
    pub seconds_per_step: f64,
    /// `batch * seq / seconds_per_step`.
    pub tokens_per_second: f64,
    /// Process CPU seconds (user + system) per timed step, when `/proc` is readable.
    pub cpu_seconds_per_step: Option<f64>,
    /// Peak resident set size in bytes (`VmHWM`), when `/proc` is readable.
    pub peak_rss_bytes: Option<u64>,
    /// Median seconds of the forward + backward part.
    pub forward_backward_seconds: f64,
    /// Median seconds of gradient flatten + clipping.
    pub flatten_seconds: f64,
    /// Median seconds of the optimizer step (LAMB, then the parameters written back).
    pub optimizer_seconds: f64,
    /// Loss of the last step.
    pub last_loss: f32,
    /// Gradient bytes one step exchanges.
    pub gradient_bytes: usize,
    /// Batch, sequence length and steps measured.
    pub batch: usize,
    /// Sequence length.
    pub seq: usize,
    /// Timed steps.
    pub steps: usize,
    /// The cancelled passes asked for with `cancel_at`.
    pub cancel: Vec<CancelProbe>,
}

/// A synthetic batch: random tokens, 15% masked positions (never `[CLS]`), SOP labels 0/1.
pub fn synthetic_batch(config: &AlbertConfig, batch: usize, seq: usize, seed: u64) -> HostBatch {
    let mut rng = SplitMix64::new(seed ^ 0x00A1_BE27);
    let tokens = batch * seq;
    let vocab = config.vocab_size as u64;
    let input_ids: Vec<i64> = (0..tokens).map(|_| (rng.next_u64() % vocab) as i64).collect();
    let labels = input_ids
        .iter()
        .enumerate()
        .map(|(i, &t)| if i % seq != 0 && rng.next_f64() < 0.15 { t } else { IGNORE_INDEX })
        .collect();
    HostBatch {
        batch,
        seq,
        token_type_ids: (0..tokens).map(|i| i64::from(i % seq >= seq / 2)).collect(),
        attention_mask: vec![1; tokens],
        input_ids,
        labels,
        sentence_order_label: (0..batch).map(|b| (b % 2) as i64).collect(),
    }
}

/// Runs the benchmark on backend `B` (an autodiff backend).
pub fn run_step_bench<B: TrainingBackend>(
    options: &StepBenchOptions,
    device: &B::Device,
) -> Result<StepBenchReport> {
    let config = &options.config;
    let mut model = AlbertForPreTraining::<B>::init(config, options.seed, device)?;
    let layout = GradLayout::from_module(&model)?;
    let lamb = Lamb::new(LambConfig::default());
    let mut parameters = layout.read_params(&model)?;
    let mut moments: Vec<f32> = Vec::new();
    let (mut next_parameters, mut next_moments) =
        (vec![0.0f32; layout.len()], vec![0.0f32; 2 * layout.len()]);
    let host = synthetic_batch(config, options.batch, options.seq, options.seed);
    let batch = host.to_device::<B>(config, device)?;
    let mut buffer = vec![0.0f32; layout.len()];
    let (mut total, mut fb, mut flat, mut opt) = (vec![], vec![], vec![], vec![]);
    let mut last_loss = 0.0;
    let mut cpu_start = None;
    for step in 0..options.warmup_steps + options.steps {
        if step == options.warmup_steps {
            cpu_start = process_cpu_seconds();
        }
        let t0 = Instant::now();
        let out = model.pretraining_loss(&batch);
        let loss = out.loss.clone();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        last_loss = out.report().loss;
        let t1 = Instant::now();
        layout.flatten_into::<B::InnerBackend>(&mut grads, &mut buffer)?;
        clip_by_global_norm(&mut buffer, 1.0);
        let t2 = Instant::now();
        let old = FlatState { parameters: &parameters, moments: &moments };
        let new = FlatStateMut { parameters: &mut next_parameters, moments: &mut next_moments };
        lamb.step(1e-4, &layout, &buffer, old, new)?;
        std::mem::swap(&mut parameters, &mut next_parameters);
        if moments.is_empty() {
            moments = vec![0.0; 2 * layout.len()];
        }
        std::mem::swap(&mut moments, &mut next_moments);
        model = layout.write_params(model, &parameters, device)?;
        let t3 = Instant::now();
        if step >= options.warmup_steps {
            total.push((t3 - t0).as_secs_f64());
            fb.push((t1 - t0).as_secs_f64());
            flat.push((t2 - t1).as_secs_f64());
            opt.push((t3 - t2).as_secs_f64());
        }
        tracing::debug!(step, loss = last_loss, "bench step");
    }
    let fb_median = median(fb.clone());
    let mut cancel = Vec::with_capacity(options.cancel_at.len());
    for &at_fraction in &options.cancel_at {
        cancel.push(cancelled_pass(&model, &batch, fb_median * at_fraction, at_fraction));
    }
    let cpu = match (cpu_start, process_cpu_seconds()) {
        (Some(a), Some(b)) if options.steps > 0 => Some((b - a) / options.steps as f64),
        _ => None,
    };
    let seconds = median(total);
    Ok(StepBenchReport {
        seconds_per_step: seconds,
        tokens_per_second: (options.batch * options.seq) as f64 / seconds.max(f64::MIN_POSITIVE),
        cpu_seconds_per_step: cpu,
        peak_rss_bytes: peak_rss_bytes(),
        forward_backward_seconds: median(fb),
        flatten_seconds: median(flat),
        optimizer_seconds: median(opt),
        last_loss,
        gradient_bytes: layout.byte_len(),
        batch: options.batch,
        seq: options.seq,
        steps: options.steps,
        cancel,
    })
}

/// One forward + backward pass whose cancel flag is set `after_seconds` into it.
fn cancelled_pass<B: TrainingBackend>(
    model: &AlbertForPreTraining<B>,
    batch: &PretrainingBatch<B>,
    after_seconds: f64,
    at_fraction: f64,
) -> CancelProbe {
    let flag = CancelFlag::new();
    let setter = {
        let flag = flag.clone();
        let after = Duration::from_secs_f64(after_seconds.max(0.0));
        std::thread::spawn(move || {
            std::thread::sleep(after);
            flag.cancel();
            Instant::now()
        })
    };
    let result = run_cancellable(&flag, || {
        let out = model.pretraining_loss(batch);
        drop(GradientsParams::from_grads(out.loss.backward(), model));
    });
    let returned = Instant::now();
    let set = setter.join().unwrap_or(returned);
    CancelProbe {
        at_fraction,
        stop_seconds: returned.saturating_duration_since(set).as_secs_f64(),
        cancelled: result.is_err(),
    }
}

/// `albatross bench step` on `device`: the figures as text (a table, or one JSON line).
///
/// # Errors
/// Bad options, a device this binary cannot open, or a failed step.
pub fn run(options: &StepBenchOptions, device: Device, json: bool) -> anyhow::Result<String> {
    let StepBenchOptions { batch, seq, steps, .. } = *options;
    anyhow::ensure!(batch > 0 && seq > 0 && steps > 0, "--batch, --seq and --steps must be > 0");
    if let Some(bad) = options.cancel_at.iter().find(|f| !(0.0..1.0).contains(*f)) {
        anyhow::bail!("--cancel-at {bad} is not a fraction of a pass in [0, 1)");
    }
    tracing::info!(batch, seq, steps, %device, "benchmarking training steps");
    let report = run_on(device, StepBench(options))??;
    if json {
        return Ok(format!("{}\n", serde_json::to_string(&report)?));
    }
    let rss = report
        .peak_rss_bytes
        .map_or("n/a".to_owned(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
    let cpu = report.cpu_seconds_per_step.map_or("n/a".to_owned(), |s| format!("{s:.3}"));
    let mut text = format!(
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
    );
    for probe in &report.cancel {
        let stopped = if probe.cancelled {
            format!("stopped {:.4} s after the cancel", probe.stop_seconds)
        } else {
            "finished before the cancel".to_owned()
        };
        text.push_str(&format!(
            "cancelled at {:>3.0} % of forward+backward: {stopped}\n",
            probe.at_fraction * 100.0
        ));
    }
    Ok(text)
}

/// The benchmark on whichever backend `--device` selects.
struct StepBench<'a>(&'a StepBenchOptions);

impl OnDevice for StepBench<'_> {
    type Output = Result<StepBenchReport>;

    fn run<B: TrainingBackend>(self, device: B::Device) -> Self::Output {
        run_step_bench::<B>(self.0, &device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use albatross_model::DefaultAutodiffBackend;

    #[test]
    fn synthetic_batch_is_valid_and_deterministic() {
        let config = AlbertConfig::preset("tiny").expect("preset");
        let a = synthetic_batch(&config, 4, 32, 1);
        a.validate(&config).expect("valid");
        assert_eq!(a, synthetic_batch(&config, 4, 32, 1));
        let masked = a.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        assert!((5..=40).contains(&masked), "{masked} of 128 masked");
        assert!(a.labels.iter().step_by(32).all(|&l| l == IGNORE_INDEX), "[CLS] never masked");
    }

    #[test]
    fn tiny_bench_runs_and_reports_consistent_figures() {
        let options = StepBenchOptions {
            config: AlbertConfig::preset("tiny").expect("preset"),
            batch: 2,
            seq: 16,
            steps: 2,
            warmup_steps: 1,
            seed: 3,
            cancel_at: vec![0.5],
        };
        let report =
            run_step_bench::<DefaultAutodiffBackend>(&options, &Default::default()).expect("bench");
        assert!(report.seconds_per_step > 0.0);
        let tokens = report.tokens_per_second * report.seconds_per_step;
        assert!((tokens - 32.0).abs() < 1e-6);
        assert!(report.last_loss.is_finite() && report.last_loss > 0.0);
        assert_eq!(report.gradient_bytes, 366_120);
        assert!(report.peak_rss_bytes.is_some_and(|b| b > 0));
        assert_eq!(report.cancel.len(), 1);
        assert_eq!(report.cancel[0].at_fraction, 0.5);
    }
}
