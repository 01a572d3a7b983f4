//! `albatross bench data`: corpus preparation end to end and the cost of reading a training
//! batch, against an albert-base step measured in the same run.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use albatross_data::{AlbertTokenizer, Dataset, PrepareConfig, ReaderOptions, expand_inputs};
use albatross_model::{AlbertConfig, DefaultAutodiffBackend, DefaultBackend};
use albatross_proto::domain::SampleRange;
use albatross_worker::{SampleReader, micro_batch};
use anyhow::Context;
use serde::Serialize;

use crate::measure::{median, peak_rss_bytes, process_cpu_seconds};
use crate::step::{StepBenchOptions, run_step_bench};

/// The real English Wikipedia dump sample (provenance and licence in
/// `crates/data/tests/fixtures/README.md`).
const ENWIKI_XML_BZ2: &[u8] = include_bytes!("../../data/tests/fixtures/enwiki-sample.xml.bz2");

/// Batches read for the median.
const BATCH_READS: u64 = 25;

/// What one run measured.
#[derive(Debug, Serialize)]
struct DataBenchReport {
    input_bytes: u64,
    documents: u64,
    examples: u64,
    tokens: u64,
    threads: usize,
    seconds: f64,
    mb_per_s: f64,
    /// `mb_per_s / threads`: the per-core rate when each thread has a core.
    mb_per_s_per_thread: f64,
    /// Input MB per CPU-second of the process (user + system), robust to a busy machine.
    mb_per_cpu_s: Option<f64>,
    tokens_per_s: f64,
    peak_rss_bytes: Option<u64>,
    batch: u32,
    seq: usize,
    /// Median seconds to read, mask, collate and upload one batch as a worker does.
    batch_read_s: f64,
    /// Median seconds of one albert-base training step on the same batch shape.
    base_step_s: Option<f64>,
    /// `batch_read_s / base_step_s`.
    batch_read_share: Option<f64>,
}

#[derive(Debug, clap::Args)]
pub struct DataBenchOptions {
    /// Inputs to prepare (files, directories, globs); default: the bundled Wikipedia XML sample
    /// (6.1 MB uncompressed), written out as plain XML.
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// auto, text, book, jsonl, wikiextractor-json, wikiextractor, wiki-xml or parquet.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// JSON Lines field or parquet column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Repeat the bundled sample's pages this many times into one dump (e.g. 170 for ~1 GB).
    #[arg(long, default_value_t = 1, conflicts_with = "input")]
    pub repeat: u32,
    /// A Hugging Face `tokenizer.json`; default: the bundled 8k ALBERT tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per example.
    #[arg(long = "max-seq-len", default_value_t = 512)]
    pub max_seq_length: usize,
    /// Preparation threads (the MB/s per thread is the per-core figure).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Samples per training batch read.
    #[arg(long, default_value_t = 8)]
    pub batch: u32,
    /// Tokens per sample of the batch read and of the reference step.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Skip the albert-base reference step (it takes a few seconds).
    #[arg(long)]
    pub no_step: bool,
    /// Keep the prepared shards in this directory instead of a temporary one.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `albatross bench data`: the figures as text (a table, or one JSON line with `--json`).
pub fn run(args: &DataBenchOptions) -> anyhow::Result<String> {
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(args.batch > 0 && args.seq > 1, "--batch and --seq must be positive");
    anyhow::ensure!(args.repeat > 0, "--repeat must be at least 1");
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let inputs = if args.input.is_empty() {
        let path = scratch.path().join("enwiki-sample.xml");
        write_repeated_sample(&path, args.repeat)?;
        vec![path]
    } else {
        expand_inputs(&args.input)?
    };
    let tokenizer = match &args.tokenizer {
        Some(path) => AlbertTokenizer::from_file(path)?,
        None => {
            let path = scratch.path().join("tokenizer.json");
            std::fs::write(&path, albatross_launch::demo::TOKENIZER)
                .with_context(|| format!("cannot write {}", path.display()))?;
            AlbertTokenizer::from_file(&path)?
        }
    };
    let out = args.out.clone().unwrap_or_else(|| scratch.path().join("prepared"));
    let mut config = PrepareConfig::new(&out, args.max_seq_length);
    config.format =
        args.format.parse().with_context(|| format!("invalid --format {:?}", args.format))?;
    config.reader = ReaderOptions::default();
    config.reader.json.text.clone_from(&args.text_field);
    config.threads = args.threads;

    tracing::info!(inputs = inputs.len(), threads = args.threads, "preparing");
    let cpu_before = process_cpu_seconds();
    let summary = albatross_data::prepare(&inputs, &tokenizer, &config, &mut |_| {})?;
    let cpu = process_cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
    let input_bytes: u64 = summary.manifest.sources.iter().map(|s| s.bytes).sum();
    let stats = &summary.manifest.stats;
    let mb = input_bytes as f64 / 1e6;
    let mb_per_s = summary.input_mb_per_s();
    let peak_rss_bytes = peak_rss_bytes();

    tracing::info!(batch = args.batch, seq = args.seq, "timing batch reads");
    let batch_read_s = time_batch_reads(&out, args.batch, args.seq)?;
    let base_step_s = if args.no_step {
        None
    } else {
        tracing::info!("timing an albert-base step on the same batch shape");
        Some(time_base_step(args.batch, args.seq)?)
    };
    let report = DataBenchReport {
        input_bytes,
        documents: stats.documents,
        examples: stats.examples,
        tokens: stats.tokens,
        threads: args.threads,
        seconds: summary.elapsed.as_secs_f64(),
        mb_per_s,
        mb_per_s_per_thread: mb_per_s / args.threads as f64,
        mb_per_cpu_s: cpu.filter(|s| *s > 0.0).map(|s| mb / s),
        tokens_per_s: summary.tokens_per_s(),
        peak_rss_bytes,
        batch: args.batch,
        seq: args.seq,
        batch_read_s,
        base_step_s,
        batch_read_share: base_step_s.map(|step| batch_read_s / step),
    };
    if args.json {
        return Ok(format!("{}\n", serde_json::to_string(&report)?));
    }
    Ok(render(&report))
}

fn render(r: &DataBenchReport) -> String {
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".to_owned(), f);
    format!(
        "input              {:.1} MB, {} documents -> {} examples, {} tokens\n\
         threads            {}\n\
         time               {:.2} s\n\
         MB/s               {:.2} ({:.2} per thread, {} per CPU-second)\n\
         tokens/s           {:.0}\n\
         peak RSS           {}\n\
         batch read         {:.2} ms ({} x {} tokens: read, mask, collate, upload)\n\
         albert-base step   {}\n\
         batch read share   {}\n",
        r.input_bytes as f64 / 1e6,
        r.documents,
        r.examples,
        r.tokens,
        r.threads,
        r.seconds,
        r.mb_per_s,
        r.mb_per_s_per_thread,
        opt(r.mb_per_cpu_s, &|v| format!("{v:.2}")),
        r.tokens_per_s,
        r.peak_rss_bytes.map_or("n/a".to_owned(), |b| format!("{:.0} MiB", b as f64 / 1048576.0)),
        r.batch_read_s * 1e3,
        r.batch,
        r.seq,
        opt(r.base_step_s, &|v| format!("{v:.3} s")),
        opt(r.batch_read_share, &|v| format!("{:.3} %", v * 100.0)),
    )
}

/// Writes the bundled dump sample as plain XML, its pages repeated `times` times inside one
/// `<mediawiki>` root (a bigger input with the sample's exact mix of markup).
fn write_repeated_sample(path: &Path, times: u32) -> anyhow::Result<()> {
    let compressed = path.with_extension("xml.bz2");
    std::fs::write(&compressed, ENWIKI_XML_BZ2)
        .with_context(|| format!("cannot write {}", compressed.display()))?;
    let mut xml = String::new();
    albatross_data::input::open(&compressed)?
        .read_to_string(&mut xml)
        .context("cannot decompress the bundled sample")?;
    std::fs::remove_file(&compressed).ok();
    let first_page = xml.find("<page>").context("invariant: the bundled sample has pages")?;
    let pages_end =
        xml.rfind("</page>").context("invariant: the bundled sample has pages")? + "</page>".len();
    let (head, pages, tail) = (&xml[..first_page], &xml[first_page..pages_end], &xml[pages_end..]);
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    out.write_all(head.as_bytes())?;
    for _ in 0..times {
        out.write_all(pages.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.write_all(tail.as_bytes())?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Median seconds to read a batch as a worker does: sample ids through the epoch permutation,
/// masking on read, collation, upload to the backend.
fn time_batch_reads(dir: &Path, batch: u32, seq: usize) -> anyhow::Result<f64> {
    let dataset = Arc::new(Dataset::open(dir)?);
    let prepared =
        usize::try_from(dataset.manifest().examples.max_seq_length).unwrap_or(usize::MAX);
    let seq_len = seq.max(prepared);
    let reader = SampleReader::new(Arc::clone(&dataset), 42, seq_len)?;
    let mut config = AlbertConfig::preset("base")?;
    // The manifest records the vocabulary; the reader already loaded and checked the tokenizer.
    let vocab = usize::try_from(dataset.manifest().tokenizer.vocab_size).unwrap_or(usize::MAX);
    config.vocab_size = config.vocab_size.max(vocab);
    config.max_position_embeddings = config.max_position_embeddings.max(seq_len);
    let device = Default::default();
    let len = dataset.len();
    let mut times = Vec::new();
    for i in 0..BATCH_READS {
        let start = (i * u64::from(batch)) % len;
        let end = (start + u64::from(batch)).min(len);
        let range = SampleRange::new(0, start, end).context("invariant: end >= start")?;
        let t0 = Instant::now();
        let samples = reader.read(&[range])?;
        let micro = micro_batch(&samples, reader.pad_id())?;
        let uploaded = micro.host.to_device::<DefaultBackend>(&config, &device)?;
        drop(uploaded);
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// One albert-base training step (forward, backward, clip, LAMB) on a batch of this shape,
/// after one untimed warm-up step.
fn time_base_step(batch: u32, seq: usize) -> anyhow::Result<f64> {
    let mut config = AlbertConfig::preset("base")?;
    config.max_position_embeddings = config.max_position_embeddings.max(seq);
    let options = StepBenchOptions {
        config,
        batch: batch as usize,
        seq,
        steps: 1,
        warmup_steps: 1,
        seed: 1,
        cancel_at: Vec::new(),
    };
    Ok(run_step_bench::<DefaultAutodiffBackend>(&options, &Default::default())?.seconds_per_step)
}
