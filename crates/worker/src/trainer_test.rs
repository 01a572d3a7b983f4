use std::path::{Path, PathBuf};
use std::sync::Arc;

use albatross_data::{AlbertTokenizer, Dataset, Format, PrepareConfig, prepare};
use albatross_model::DefaultAutodiffBackend;
use albatross_proto::domain::{DataCursor, SampleRange};
use albatross_proto::job::JobSpec;
use tempfile::TempDir;

use super::*;
use albatross_model::CancelFlag;

type B = DefaultAutodiffBackend;

const SEED: u64 = 7;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures").join(name)
}

/// A small prepared dataset: the first ~40 KB of the `persuasion.txt` fixture (cut at a
/// paragraph break), tokenised with the fixture tokenizer into 64-token examples.
fn dataset() -> (TempDir, Arc<Dataset>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read(fixture("persuasion.txt")).expect("fixture");
    let cut = text[..40_000].windows(2).rposition(|w| w == b"\n\n").expect("a paragraph break");
    let input = dir.path().join("persuasion-slice.txt");
    std::fs::write(&input, &text[..cut]).expect("write slice");
    let tokenizer =
        AlbertTokenizer::from_file(&fixture("albert-8k-tokenizer.json")).expect("tokenizer");
    let out = dir.path().join("data");
    let config = PrepareConfig {
        format: Format::Book,
        examples_per_shard: 64,
        threads: 1,
        ..PrepareConfig::new(&out, 64)
    };
    prepare(&[input], &tokenizer, &config, &mut |_| {}).expect("prepare");
    let dataset = Dataset::open(&out).expect("open");
    assert!(dataset.len() >= 64, "only {} samples", dataset.len());
    (dir, Arc::new(dataset))
}

/// The tiny preset with the tokenizer's vocabulary, 8-sample steps.
fn job(dataset: &Dataset, micro_batch_size: u32) -> JobSpec {
    let text = format!(
        "seed = {SEED}\n\
         [model]\npreset = \"tiny\"\nvocab_size = {}\n\
         [data]\ndir = \"unused-here\"\nmax_seq_length = 64\n\
         [optimizer]\nlearning_rate = 0.05\nwarmup_steps = 0\ntotal_steps = 1000\n\
         [batch]\nglobal_batch_size = 8\nmicro_batch_size = {micro_batch_size}\n\
         [fault_tolerance]\nmin_workers = 1\nmax_workers = 4\n",
        dataset.manifest().tokenizer.vocab_size
    );
    JobSpec::from_toml_str(&text, "test").expect("valid job")
}

fn trainer(dataset: &Arc<Dataset>, micro_batch_size: u32) -> Trainer<B> {
    Trainer::new(&job(dataset, micro_batch_size), Arc::clone(dataset), Default::default())
        .expect("trainer")
}

/// The global batch of `size` samples starting at `cursor`, and the cursor after it.
fn global_batch(
    dataset: &Dataset,
    cursor: DataCursor,
    size: u64,
) -> (Vec<SampleRange>, DataCursor) {
    (cursor.ranges(size, dataset.len()), cursor.advance(size, dataset.len()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, f32::max)
}

fn parameters(trainer: &Trainer<B>) -> Vec<f32> {
    trainer.layout().read_params(trainer.model().expect("model")).expect("params")
}

#[test]
fn micro_batch_accumulation_matches_one_big_micro_batch() {
    let (_dir, data) = dataset();
    let (batch, _) = global_batch(&data, DataCursor::default(), 8);
    let ranges = batch;
    let whole = trainer(&data, 8).compute(&ranges).expect("one micro-batch");
    assert!(!whole.non_finite);
    assert_eq!(whole.stats.samples, 8);
    let scale = max_abs(whole.floats());
    assert!(scale > 0.0, "a real gradient");
    // 3 + 3 + 2 and 1 × 8: the same sum up to f32 summation order (and padding lengths).
    for micro in [3, 1] {
        let accumulated = trainer(&data, micro).compute(&ranges).expect("accumulated");
        let diff = max_abs_diff(whole.floats(), accumulated.floats());
        assert!(diff <= 1e-5 * scale, "micro {micro}: max diff {diff} vs max |g| {scale}");
        let (a, b) = (whole.stats, accumulated.stats);
        assert_eq!((a.samples, a.tokens, a.masked_tokens), (b.samples, b.tokens, b.masked_tokens));
        assert_eq!((a.mlm_correct, a.sop_correct), (b.mlm_correct, b.sop_correct));
        let (la, lb) = (a.mean_loss().expect("loss"), b.mean_loss().expect("loss"));
        assert!((la - lb).abs() <= 1e-5 * la, "micro {micro}: loss {la} vs {lb}");
    }
}

#[test]
fn two_ranks_agree_bit_for_bit_and_match_one_process_on_the_whole_batch() {
    let (_dir, data) = dataset();
    let mut ranks = [trainer(&data, 3), trainer(&data, 3)];
    let mut single = trainer(&data, 8);
    let mut cursor = DataCursor::default();
    for step in 0..3 {
        let slices = cursor.split(8, 2, data.len(), 1);
        let (batch, next) = global_batch(&data, cursor, 8);
        cursor = next;
        let mut sum = vec![0.0f32; single.layout().len()];
        let mut stats = ComputeStats::default();
        for (slice, trainer) in slices.iter().zip(ranks.iter_mut()) {
            let g = trainer.compute(slice).expect("compute");
            assert!(!g.non_finite);
            sum.iter_mut().zip(g.floats()).for_each(|(s, x)| *s += *x);
            stats.merge(&g.stats);
        }
        // Every rank receives the same reduced bytes, as the ring all-reduce guarantees.
        let reports: Vec<ApplyReport> =
            ranks.iter_mut().map(|t| t.apply(&mut sum.clone(), 8, step).expect("apply")).collect();
        assert_eq!(reports[0], reports[1]);
        let hashes: Vec<_> = ranks.iter().map(|t| t.state_hash()).collect();
        assert_eq!(hashes[0], hashes[1], "step {step}: replicas diverged");

        let mut whole = single.compute(&batch).expect("compute whole");
        let report = single.apply(whole.floats_mut(), 8, step).expect("apply whole");
        assert_eq!(stats.samples, whole.stats.samples);
        assert_eq!(stats.masked_tokens, whole.stats.masked_tokens);
        let (split, one) =
            (stats.mean_loss().expect("loss"), whole.stats.mean_loss().expect("loss"));
        assert!((split - one).abs() <= 1e-5 * one, "step {step}: loss {split} vs {one}");
        assert!((reports[0].grad_norm - report.grad_norm).abs() <= 1e-5 * report.grad_norm);
        let diff = max_abs_diff(&parameters(&ranks[0]), &parameters(&single));
        assert!(diff <= 1e-5, "step {step}: parameters differ by {diff}");
    }
}

#[test]
fn same_job_same_bytes_run_to_run_and_on_retry() {
    let (_dir, data) = dataset();
    let mut a = trainer(&data, 3);
    let mut b = trainer(&data, 3);
    assert_eq!(a.parameter_hash().expect("hash"), b.parameter_hash().expect("hash"));
    assert_eq!(a.state_hash(), b.state_hash());
    let (batch, _) = global_batch(&data, DataCursor::default(), 8);
    let ranges = batch;
    let first = a.compute(&ranges).expect("compute");
    // An aborted step retried: identical inputs, identical bytes, nothing applied meanwhile.
    let before = a.state_hash();
    a.discard();
    assert_eq!(a.state_hash(), before, "discard leaves state untouched");
    let retry = a.compute(&ranges).expect("retry");
    assert_eq!(first, retry);
    let other = b.compute(&ranges).expect("compute");
    assert_eq!(first, other, "another trainer from the same job computes the same bytes");
    a.apply(&mut retry.floats().clone(), 8, 0).expect("apply");
    b.apply(&mut other.floats().clone(), 8, 0).expect("apply");
    assert_eq!(a.state_hash(), b.state_hash());
    assert_ne!(a.state_hash(), before, "the step changed the state");
    assert_eq!(a.applied_steps(), 1);
}

#[test]
fn loss_falls_over_twenty_steps() {
    let (_dir, data) = dataset();
    let mut t = trainer(&data, 4);
    let mut cursor = DataCursor::default();
    let mut losses = Vec::new();
    for step in 0..20 {
        let (batch, next) = global_batch(&data, cursor, 8);
        cursor = next;
        let mut g = t.compute(&batch).expect("compute");
        losses.push(g.stats.mean_loss().expect("loss"));
        let samples = g.stats.samples;
        t.apply(g.floats_mut(), samples, step).expect("apply");
    }
    let head = losses[..3].iter().sum::<f64>() / 3.0;
    let tail = losses[17..].iter().sum::<f64>() / 3.0;
    assert!(tail < head - 0.5, "loss {head:.3} → {tail:.3}: {losses:?}");
}

#[test]
fn non_finite_gradients_are_flagged_and_never_applied() {
    let (_dir, data) = dataset();
    let mut t = trainer(&data, 4);
    let (batch, _) = global_batch(&data, DataCursor::default(), 8);
    let ranges = batch;
    let before = t.state_hash();
    t.inject_non_finite_once();
    let mut bad = t.compute(&ranges).expect("compute");
    assert!(bad.non_finite, "the injected NaN is flagged");
    let err = t.apply(bad.floats_mut(), 8, 0).expect_err("a NaN must not be applied");
    assert!(matches!(err, WorkerError::NonFinite { count: 1, first: 0 }), "{err}");
    assert_eq!(t.state_hash(), before);
    t.discard();
    let err = t.apply(bad.floats_mut(), 8, 0).expect_err("nothing pending after discard");
    assert!(matches!(err, WorkerError::InvalidStep(_)), "{err}");
    // The hook fires once; the retry is clean.
    let good = t.compute(&ranges).expect("compute");
    assert!(!good.non_finite);
    let err = t.apply(&mut good.floats().clone(), 3, 0).expect_err("fewer samples than computed");
    assert!(matches!(err, WorkerError::InvalidStep(_)), "{err}");
    let err = t.apply(&mut [0.0; 3], 8, 0).expect_err("wrong length");
    assert!(err.to_string().contains("reduced gradient buffer"), "{err}");
}

#[test]
fn an_empty_slice_gives_a_zero_buffer_and_a_model_too_small_for_the_data_is_refused() {
    let (_dir, data) = dataset();
    let mut t = trainer(&data, 4);
    let g = t.compute(&[]).expect("empty slice");
    assert_eq!(g.stats.samples, 0);
    assert!(g.floats().iter().all(|&x| x == 0.0) && !g.non_finite);

    let mut spec = job(&data, 4);
    spec.model.vocab_size = None; // tiny's 1000 ids < the tokenizer's 8000
    let err = Trainer::<B>::new(&spec, Arc::clone(&data), Default::default())
        .expect_err("vocabulary too small");
    assert!(err.to_string().contains("model.vocab_size"), "{err}");
}

#[test]
fn for_one_sample_the_objective_is_the_model_crates_pretraining_loss() {
    // With one sample, "mean over its masked tokens + its SOP loss" is exactly transformers'
    // loss, so the model crate's `pretraining_loss` is a reference for loss and gradient.
    let (_dir, data) = dataset();
    let mut t = trainer(&data, 4);
    let (batch, _) = global_batch(&data, DataCursor::default(), 8);
    let one = SampleRange { epoch: batch[0].epoch, start: 5, end: 6 };
    let ours = t.compute(&[one]).expect("compute");

    let reader = SampleReader::new(Arc::clone(&data), SEED, 64).expect("reader");
    let samples = reader.read(&[one]).expect("read");
    let host = micro_batch(&samples, reader.pad_id()).expect("micro-batch").host;
    let model = t.model().expect("model");
    let device = Default::default();
    let out = model.pretraining_loss(&host.to_device::<B>(t.config(), &device).expect("upload"));
    let reference = out.report().loss;
    let mut grads = burn::optim::GradientsParams::from_grads(out.loss.backward(), model);
    let expected =
        t.layout().flatten::<<B as AutodiffBackend>::InnerBackend>(&mut grads).expect("flatten");

    let loss = ours.stats.mean_loss().expect("loss");
    assert!((loss - f64::from(reference)).abs() <= 1e-5 * loss, "{loss} vs {reference}");
    let diff = max_abs_diff(ours.floats(), &expected);
    assert!(diff <= 1e-6 * max_abs(&expected), "max diff {diff}");
}

#[test]
fn exported_state_loads_into_a_fresh_trainer_and_trains_on_identically() {
    let (_dir, data) = dataset();
    let mut source = trainer(&data, 4);
    let mut cursor = DataCursor::default();
    let fresh = trainer(&data, 4);
    assert!(fresh.export_state().optimizer.is_empty(), "no moments before a step");
    for step in 0..2 {
        let (batch, next) = global_batch(&data, cursor, 8);
        cursor = next;
        let mut g = source.compute(&batch).expect("compute");
        source.apply(g.floats_mut(), 8, step).expect("apply");
    }
    let state = source.export_state();
    assert_eq!(state.optimizer.len(), 2 * state.parameters.len());
    assert_eq!(
        parameters(&source),
        state.parameters,
        "the model's tensors hold the state's parameters"
    );
    let mut healed = trainer(&data, 4);
    assert_ne!(healed.state_hash(), source.state_hash());
    healed.load_state((*state).clone()).expect("load");
    assert_eq!(healed.state_hash(), source.state_hash());
    assert_eq!(*healed.export_state(), *state, "export ∘ load is the identity");
    // The next step is bit-identical on both: the moments came across, not just the weights.
    let (batch, _) = global_batch(&data, cursor, 8);
    for t in [&mut source, &mut healed] {
        let mut g = t.compute(&batch).expect("compute");
        t.apply(g.floats_mut(), 8, 2).expect("apply");
    }
    assert_eq!(healed.state_hash(), source.state_hash());
    // A state of the wrong size is refused and leaves the trainer as it was.
    let before = healed.state_hash();
    let mut short = (*state).clone();
    short.parameters.pop();
    let err = healed.load_state(short).expect_err("short parameter section");
    assert!(err.to_string().contains("parameter section"), "{err}");
    assert_eq!(healed.state_hash(), before);
}

/// A cancelled computation stops at once, leaves the trainer as it was, and the next one
/// computes the same bytes; a reset goes back to the seed's initial state.
#[test]
fn a_cancelled_computation_stops_promptly_and_changes_nothing() {
    let (_dir, data) = dataset();
    let mut t = trainer(&data, 2);
    let initial = t.state_hash();
    let (batch, _) = global_batch(&data, DataCursor::default(), 8);
    let ranges = batch;
    let reference = t.compute(&ranges).expect("compute");
    t.discard();
    // A 10 s computation (test hook) cancelled from another thread after 100 ms.
    t.slow_down_compute(std::time::Duration::from_secs(10));
    let flag = CancelFlag::new();
    let canceller = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            flag.cancel();
        })
    };
    let started = std::time::Instant::now();
    let cancelled = t.compute_cancellable(&ranges, &flag);
    let took = started.elapsed();
    canceller.join().expect("canceller");
    assert!(matches!(cancelled, Err(WorkerError::Cancelled)), "{cancelled:?}");
    assert!(took < std::time::Duration::from_secs(5), "stopped after {took:?}");
    // Nothing is pending: an apply now is refused.
    let err = t.apply(&mut reference.floats().clone(), 8, 0).expect_err("nothing to apply");
    assert!(err.to_string().contains("without a computed step"), "{err}");
    t.slow_down_compute(std::time::Duration::ZERO);
    let again = t.compute_cancellable(&ranges, &CancelFlag::new()).expect("compute");
    assert_eq!(again, reference);
    t.apply(&mut again.floats().clone(), 8, 0).expect("apply");
    assert_ne!(t.state_hash(), initial);
    t.reset_to_initial().expect("reset");
    assert_eq!(t.state_hash(), initial, "back at the seed's initial state");
}

#[cfg(feature = "wgpu")]
#[path = "../../../tests/src/software_vulkan.rs"]
mod software_vulkan;

/// A trainer on burn-wgpu (Mesa's software adapter) beside one on the CPU: the same initial
/// bits, gradients summed over micro-batches on the device that match the CPU's, and, given the
/// same reduced bytes, the same update to the bit (LAMB runs on the host), over three steps.
#[cfg(feature = "wgpu")]
#[test]
fn a_wgpu_trainer_matches_the_cpu_and_applies_the_same_update_bit_for_bit() {
    type G = burn::backend::Autodiff<burn::backend::Wgpu>;
    software_vulkan::ensure();
    let (_dir, data) = dataset();
    let mut cpu = trainer(&data, 3);
    let mut gpu =
        Trainer::<G>::new(&job(&data, 3), Arc::clone(&data), burn::backend::wgpu::WgpuDevice::Cpu)
            .expect("wgpu trainer");
    assert_eq!(cpu.state_hash(), gpu.state_hash(), "initialisation is the same on every backend");
    let mut cursor = DataCursor::default();
    for step in 0..3 {
        let (batch, next) = global_batch(&data, cursor, 8);
        cursor = next;
        // 3 + 3 + 2 samples: three micro-batches summed on the device, read once.
        let (on_cpu, on_gpu) =
            (cpu.compute(&batch).expect("cpu"), gpu.compute(&batch).expect("gpu"));
        let scale = max_abs(on_cpu.floats());
        let diff = max_abs_diff(on_cpu.floats(), on_gpu.floats());
        assert!(diff <= 1e-4 * scale, "step {step}: max diff {diff} vs max |g| {scale}");
        assert_eq!(on_cpu.stats.masked_tokens, on_gpu.stats.masked_tokens);
        let reduced = on_cpu.floats().clone();
        let a = cpu.apply(&mut reduced.clone(), 8, step).expect("cpu apply");
        let b = gpu.apply(&mut reduced.clone(), 8, step).expect("gpu apply");
        assert_eq!(a, b);
        assert_eq!(cpu.state_hash(), gpu.state_hash(), "step {step}: the replicas diverged");
        assert_eq!(cpu.parameter_hash().expect("cpu"), gpu.parameter_hash().expect("gpu"));
    }
}

/// Normal mode's f32 sum of computed gradients (these tests run in normal mode).
trait Floats {
    fn floats(&self) -> &Vec<f32>;
    fn floats_mut(&mut self) -> &mut Vec<f32>;
}

impl Floats for StepGradients {
    fn floats(&self) -> &Vec<f32> {
        match &self.sum {
            GradientSum::Float(values) => values,
            GradientSum::Fixed { .. } => panic!("a fixed-point sum in a normal-mode test"),
        }
    }

    fn floats_mut(&mut self) -> &mut Vec<f32> {
        match &mut self.sum {
            GradientSum::Float(values) => values,
            GradientSum::Fixed { .. } => panic!("a fixed-point sum in a normal-mode test"),
        }
    }
}

/// `job` in exact mode, with extra model settings (`[model]` lines).
fn exact_job(dataset: &Dataset, micro_batch_size: u32, model: &str) -> JobSpec {
    let text = job(dataset, micro_batch_size).to_canonical_toml();
    let text = text.replacen("[model]\n", &format!("[model]\n{model}"), 1);
    JobSpec::from_toml_str(&format!("{text}\n[determinism]\nexact = true\n"), "test")
        .expect("valid exact job")
}

fn exact_trainer(dataset: &Arc<Dataset>, job: &JobSpec) -> Trainer<B> {
    Trainer::new(job, Arc::clone(dataset), Default::default()).expect("trainer")
}

/// What must be the same bits after a step in exact mode, whatever the split.
#[derive(Debug, PartialEq)]
struct StepBits {
    reduced: Vec<u32>,
    state: albatross_proto::domain::StateHash,
    grad_norm: u32,
    losses: [u64; 3],
}

/// `world` ranks train `steps` exact-mode steps of 8 samples in micro-batches of 3 (3 + 3 + 2,
/// split as the coordinator splits them), summing their fixed-point sums as the i64 ring does.
fn exact_run(data: &Arc<Dataset>, world: usize, steps: u64) -> Vec<StepBits> {
    let job = exact_job(data, 3, "");
    let mut ranks: Vec<Trainer<B>> = (0..world).map(|_| exact_trainer(data, &job)).collect();
    let mut cursor = DataCursor::default();
    let mut history = Vec::new();
    for step in 0..steps {
        let slices = cursor.split(8, world, data.len(), 3);
        cursor = cursor.advance(8, data.len());
        let mut total = vec![0i64; ranks[0].layout().len()];
        let mut format = None;
        let mut stats = ComputeStats::default();
        // The last rank first: the order of the ranks' sums does not matter either.
        for (slice, trainer) in slices.iter().zip(ranks.iter_mut()).rev() {
            let g = trainer.compute(slice).expect("compute");
            assert!(!g.non_finite);
            let GradientSum::Fixed { sums, format: f } = g.sum else { panic!("exact mode") };
            total.iter_mut().zip(&sums).for_each(|(t, s)| *t = t.wrapping_add(*s));
            format = Some(f);
            stats.merge(&g.stats);
        }
        let format = format.expect("at least one rank");
        let reduced = GradientSum::Fixed { sums: total, format }.into_f32();
        let reports: Vec<ApplyReport> = ranks
            .iter_mut()
            .map(|t| t.apply(&mut reduced.clone(), 8, step).expect("apply"))
            .collect();
        assert!(reports.iter().all(|r| r == &reports[0]));
        let state = ranks[0].state_hash();
        assert!(ranks.iter().all(|t| t.state_hash() == state), "replicas diverged");
        history.push(StepBits {
            reduced: reduced.iter().map(|x| x.to_bits()).collect(),
            state,
            grad_norm: reports[0].grad_norm.to_bits(),
            losses: [stats.mlm_loss_sum, stats.mlm_token_loss_sum, stats.sop_loss_sum]
                .map(f64::to_bits),
        });
    }
    history
}

#[test]
fn exact_mode_gives_the_same_bits_for_one_two_and_three_ranks() {
    let (_dir, data) = dataset();
    let one = exact_run(&data, 1, 3);
    // Three micro-batches over two ranks (2 + 1) and over three (1 + 1 + 1).
    assert_eq!(exact_run(&data, 2, 3), one, "2 ranks");
    assert_eq!(exact_run(&data, 3, 3), one, "3 ranks");
    // More ranks than micro-batches: the fourth computes nothing and adds zeros.
    assert_eq!(exact_run(&data, 4, 1), one[..1], "4 ranks");
}

#[test]
fn exact_mode_gradients_do_not_depend_on_the_thread_count() {
    // Wide enough that the GEMM splits its tiles between threads (and the decoder's matmul
    // over the 8k vocabulary is split too).
    let (_dir, data) = dataset();
    let job = exact_job(
        &data,
        8,
        "hidden_size = 256\nintermediate_size = 1024\nnum_attention_heads = 4\nembedding_size = 128\n",
    );
    let (batch, _) = global_batch(&data, DataCursor::default(), 8);
    let sums: Vec<Vec<i64>> = [1, 3]
        .into_iter()
        .map(|threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| {
                let mut trainer = exact_trainer(&data, &job);
                let g = trainer.compute(&batch).expect("compute");
                match g.sum {
                    GradientSum::Fixed { sums, .. } => sums,
                    GradientSum::Float(_) => panic!("exact mode"),
                }
            })
        })
        .collect();
    assert!(sums[0].iter().any(|&s| s != 0), "a real gradient");
    assert!(sums[0] == sums[1], "gradients differ between 1 and 3 threads");
}

#[test]
fn a_gradient_outside_the_exact_range_makes_the_step_unusable() {
    let (_dir, data) = dataset();
    // A range of ±2: the tiny model's first 8-sample gradient has an element of about 2.2.
    let job = exact_job(&data, 8, "");
    let text = job.to_canonical_toml().replace("range_bits = 20", "range_bits = 1");
    let job = JobSpec::from_toml_str(&text, "test").expect("valid");
    let (batch, _) = global_batch(&data, DataCursor::default(), 8);
    let mut t = exact_trainer(&data, &job);
    let g = t.compute(&batch).expect("compute");
    assert!(g.non_finite, "a step outside the range must be voted down, never applied");
    // Within range, the same step is usable.
    let g = exact_trainer(&data, &exact_job(&data, 8, "")).compute(&batch).expect("compute");
    assert!(!g.non_finite);
}
