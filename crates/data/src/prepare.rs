//! `prepare-data`: read inputs, tokenise, build examples, write verified shards and the
//! manifest. Streaming: memory holds one batch of documents and one shard's examples at a time.
//! Parallel: each batch of documents is tokenised and cut into examples on a thread pool.
//! Deterministic: a document's examples depend only on its index in the input order, and
//! results are written in that order, so the output is byte-identical whatever the threads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::example::{Example, ExampleConfig, create_examples};
use crate::manifest::{
    ExampleSettings, MANIFEST_VERSION, Manifest, ShardInfo, SourceInfo, Stats, TOKENIZER_FILE,
    TokenizerInfo,
};
use crate::reader::{Format, ReaderOptions, read_documents, sniff_format};
use crate::segment::Document;
use crate::shard::ShardWriter;
use crate::tokenizer::AlbertTokenizer;

/// A batch of documents stops growing past this much text (bounds memory on long books).
const BATCH_TEXT_BYTES: usize = 8 << 20;

/// Settings of one preparation run.
#[derive(Debug, Clone)]
pub struct PrepareConfig {
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// Input format (`Auto` sniffs each input).
    pub format: Format,
    /// Reader settings.
    pub reader: ReaderOptions,
    /// Example settings.
    pub examples: ExampleConfig,
    /// Examples per shard.
    pub examples_per_shard: usize,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Documents read ahead and processed together (also capped at 8 MB of text).
    pub batch_documents: usize,
}

impl PrepareConfig {
    /// Defaults for `out_dir` and `max_seq_length`.
    pub fn new(out_dir: impl Into<PathBuf>, max_seq_length: usize) -> Self {
        Self {
            out_dir: out_dir.into(),
            format: Format::Auto,
            reader: ReaderOptions::default(),
            examples: ExampleConfig { max_seq_length, ..ExampleConfig::default() },
            examples_per_shard: 50_000,
            threads: 0,
            batch_documents: 256,
        }
    }
}

/// Progress, reported after each document.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The input being read.
    pub input: &'a Path,
    /// Documents so far (all inputs).
    pub documents: u64,
    /// Example tokens so far.
    pub tokens: u64,
    /// Sentence text bytes so far.
    pub text_bytes: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct PrepareSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// Wall time.
    pub elapsed: Duration,
}

impl PrepareSummary {
    /// Input bytes (as stored, compressed or not) per second, in MB/s.
    pub fn input_mb_per_s(&self) -> f64 {
        let bytes: u64 = self.manifest.sources.iter().map(|s| s.bytes).sum();
        bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Example tokens per second.
    pub fn tokens_per_s(&self) -> f64 {
        self.manifest.stats.tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Prepares `inputs` into `config.out_dir`, calling `progress` after every document.
pub fn prepare(
    inputs: &[PathBuf],
    tokenizer: &AlbertTokenizer,
    config: &PrepareConfig,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<PrepareSummary> {
    let started = Instant::now();
    if config.examples_per_shard == 0 {
        return Err(DataError::InvalidArgument("examples_per_shard must be positive".to_owned()));
    }
    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let token_width: u8 = if tokenizer.vocab_size() <= 1 << 16 { 2 } else { 4 };
    let mut run = Run {
        tokenizer,
        config,
        token_width,
        sink: ShardSink::new(out, token_width, config.examples_per_shard)?,
        pool: worker_pool(config.threads)?,
        stats: Stats::default(),
        sources: Vec::new(),
    };
    for input in inputs {
        run.read_input(input, progress)?;
    }
    let manifest = run.finish(inputs)?;
    copy_tokenizer(tokenizer, out)?;
    manifest.save(out)?;
    Ok(PrepareSummary { manifest, elapsed: started.elapsed() })
}

/// The thread pool that tokenises batches; a pool of its own so `threads` is honoured
/// whatever else in the process uses rayon's global pool.
fn worker_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DataError::InvalidArgument(format!("cannot start worker threads: {e}")))
}

/// The state of one run while inputs are read: what every input shares (tokenizer, settings,
/// thread pool) and what accumulates across them (the open shard, the counts).
struct Run<'a> {
    tokenizer: &'a AlbertTokenizer,
    config: &'a PrepareConfig,
    /// Bytes per stored token id, chosen from the vocabulary size.
    token_width: u8,
    sink: ShardSink<'a>,
    pool: rayon::ThreadPool,
    stats: Stats,
    /// One entry per input read, in input order.
    sources: Vec<SourceInfo>,
}

impl Run<'_> {
    /// Reads one input to the end, batch by batch, and records it for the manifest.
    fn read_input(&mut self, input: &Path, progress: &mut dyn FnMut(Progress<'_>)) -> Result<()> {
        let format = match self.config.format {
            Format::Auto => sniff_format(input)?,
            other => other,
        };
        let bytes = std::fs::metadata(input).map_err(|e| DataError::io(input, e))?.len();
        let mut documents = 0;
        let mut reader = read_documents(input, format, &self.config.reader)?.peekable();
        while reader.peek().is_some() {
            let batch = next_batch(&mut reader, self.config.batch_documents.max(1))?;
            let built = self.build_examples(&batch)?;
            for (doc, examples) in batch.iter().zip(&built) {
                self.record(doc, examples)?;
                documents += 1;
                progress(Progress {
                    input,
                    documents: self.stats.documents,
                    tokens: self.stats.tokens,
                    text_bytes: self.stats.text_bytes,
                });
            }
        }
        tracing::info!(input = %input.display(), format = format.name(), documents, "input read");
        self.sources.push(SourceInfo {
            path: input.display().to_string(),
            format: format.name().to_owned(),
            bytes,
            documents,
        });
        Ok(())
    }

    /// Tokenises a batch and cuts each document into examples on the pool. A document's
    /// examples are seeded by its index in the whole input order (not by the thread that ran
    /// it), and `collect` keeps batch order, so the output does not depend on the threads.
    fn build_examples(&self, batch: &[Document]) -> Result<Vec<Vec<Example>>> {
        let first_index = self.stats.documents;
        let (tokenizer, settings) = (self.tokenizer, &self.config.examples);
        self.pool.install(|| {
            batch
                .par_iter()
                .enumerate()
                .map(|(i, doc)| {
                    let tokens = doc
                        .sentences
                        .iter()
                        .map(|s| tokenizer.encode(s))
                        .collect::<Result<Vec<_>>>()?;
                    let index = first_index + i as u64;
                    create_examples(&tokens, index, settings, tokenizer.special())
                })
                .collect::<Result<_>>()
        })
    }

    /// Writes one document's examples (in order, on the calling thread) and counts them.
    fn record(&mut self, doc: &Document, examples: &[Example]) -> Result<()> {
        self.stats.documents += 1;
        self.stats.sentences += doc.sentences.len() as u64;
        self.stats.text_bytes += doc.text_bytes() as u64;
        for example in examples {
            self.sink.push(example)?;
            self.stats.examples += 1;
            self.stats.tokens += example.input_ids.len() as u64;
            self.stats.swapped += u64::from(example.sop_label);
        }
        Ok(())
    }

    /// Writes the last shard and describes the run. A corpus that yields no example is an
    /// error rather than an empty dataset, which could only fail later, at training time.
    fn finish(self, inputs: &[PathBuf]) -> Result<Manifest> {
        let shards = self.sink.finish()?;
        if self.stats.examples == 0 {
            return Err(DataError::EmptyCorpus {
                inputs: inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let examples = &self.config.examples;
        Ok(Manifest {
            format_version: MANIFEST_VERSION,
            tokenizer: TokenizerInfo {
                file: TOKENIZER_FILE.to_owned(),
                fingerprint: self.tokenizer.fingerprint().to_owned(),
                vocab_size: self.tokenizer.vocab_size() as u64,
                token_width: self.token_width,
            },
            examples: ExampleSettings {
                max_seq_length: examples.max_seq_length as u64,
                short_seq_prob: examples.short_seq_prob,
                swap_prob: examples.swap_prob,
                seed: examples.seed,
            },
            sources: self.sources,
            shards,
            stats: self.stats,
        })
    }
}

/// Reads the next batch: up to `batch_size` documents, fewer once they hold
/// `BATCH_TEXT_BYTES` of text, so one long book cannot make a batch hold gigabytes.
fn next_batch(
    reader: &mut impl Iterator<Item = Result<Document>>,
    batch_size: usize,
) -> Result<Vec<Document>> {
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    while batch.len() < batch_size && batch_bytes < BATCH_TEXT_BYTES {
        let Some(doc) = reader.next() else {
            break;
        };
        let doc = doc?;
        batch_bytes += doc.text_bytes();
        batch.push(doc);
    }
    Ok(batch)
}

/// The shards of a run: examples go into one open shard, which is written (and recorded for
/// the manifest) as soon as it holds `examples_per_shard`, so memory holds one shard at most.
struct ShardSink<'a> {
    out: &'a Path,
    writer: ShardWriter,
    examples_per_shard: usize,
    shards: Vec<ShardInfo>,
}

impl<'a> ShardSink<'a> {
    fn new(out: &'a Path, token_width: u8, examples_per_shard: usize) -> Result<Self> {
        Ok(Self {
            out,
            writer: ShardWriter::new(token_width)?,
            examples_per_shard,
            shards: Vec::new(),
        })
    }

    /// Adds one example, writing the shard when it is full.
    fn push(&mut self, example: &Example) -> Result<()> {
        self.writer.push(example)?;
        if self.writer.len() >= self.examples_per_shard {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the last, partly filled shard (if any) and returns every shard written.
    fn finish(mut self) -> Result<Vec<ShardInfo>> {
        if !self.writer.is_empty() {
            self.flush()?;
        }
        Ok(self.shards)
    }

    /// Writes the open shard under the next sequential name; names follow write order, which
    /// is input order, so reruns give the same files.
    fn flush(&mut self) -> Result<()> {
        let file = format!("shard-{:05}.bin", self.shards.len());
        let written = self.writer.write(&self.out.join(&file))?;
        let (examples, tokens) = (written.examples, written.tokens);
        tracing::info!(file = %file, examples, tokens, "shard written");
        self.shards.push(ShardInfo {
            file,
            examples: written.examples,
            tokens: written.tokens,
            bytes: written.bytes,
            sha256: written.sha256,
        });
        Ok(())
    }
}

/// Copies the tokenizer into the dataset directory so the dataset is self-contained (unless
/// it is already there, as when `train-tokenizer` wrote it into the same directory).
fn copy_tokenizer(tokenizer: &AlbertTokenizer, out: &Path) -> Result<()> {
    let target = out.join(TOKENIZER_FILE);
    let source = tokenizer.path();
    let same = match (source.canonicalize(), target.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        std::fs::copy(source, &target).map_err(|e| DataError::io(&target, e))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "prepare_test.rs"]
mod tests;
