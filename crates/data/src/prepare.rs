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
    let mut stats = Stats::default();
    let mut sources = Vec::new();
    let mut shards = Vec::new();
    let mut writer = ShardWriter::new(token_width)?;
    let flush = |writer: &mut ShardWriter, shards: &mut Vec<ShardInfo>| -> Result<()> {
        let file = format!("shard-{:05}.bin", shards.len());
        let written = writer.write(&out.join(&file))?;
        let (examples, tokens) = (written.examples, written.tokens);
        tracing::info!(file = %file, examples, tokens, "shard written");
        shards.push(ShardInfo {
            file,
            examples: written.examples,
            tokens: written.tokens,
            bytes: written.bytes,
            sha256: written.sha256,
        });
        Ok(())
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| DataError::InvalidArgument(format!("cannot start worker threads: {e}")))?;
    let batch_size = config.batch_documents.max(1);
    for input in inputs {
        let format = match config.format {
            Format::Auto => sniff_format(input)?,
            other => other,
        };
        let bytes = std::fs::metadata(input).map_err(|e| DataError::io(input, e))?.len();
        let mut documents = 0;
        let mut reader = read_documents(input, format, &config.reader)?.peekable();
        while reader.peek().is_some() {
            let mut batch: Vec<Document> = Vec::new();
            let mut batch_bytes = 0;
            while batch.len() < batch_size && batch_bytes < BATCH_TEXT_BYTES {
                let Some(doc) = reader.next() else {
                    break;
                };
                let doc = doc?;
                batch_bytes += doc.text_bytes();
                batch.push(doc);
            }
            let first_index = stats.documents;
            let built: Vec<Vec<Example>> = pool.install(|| {
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
                        create_examples(&tokens, index, &config.examples, tokenizer.special())
                    })
                    .collect::<Result<_>>()
            })?;
            for (doc, examples) in batch.iter().zip(&built) {
                documents += 1;
                stats.documents += 1;
                stats.sentences += doc.sentences.len() as u64;
                stats.text_bytes += doc.text_bytes() as u64;
                for example in examples {
                    writer.push(example)?;
                    stats.examples += 1;
                    stats.tokens += example.input_ids.len() as u64;
                    stats.swapped += u64::from(example.sop_label);
                    if writer.len() >= config.examples_per_shard {
                        flush(&mut writer, &mut shards)?;
                    }
                }
                progress(Progress {
                    input,
                    documents: stats.documents,
                    tokens: stats.tokens,
                    text_bytes: stats.text_bytes,
                });
            }
        }
        tracing::info!(input = %input.display(), format = format.name(), documents, "input read");
        sources.push(SourceInfo {
            path: input.display().to_string(),
            format: format.name().to_owned(),
            bytes,
            documents,
        });
    }
    if !writer.is_empty() {
        flush(&mut writer, &mut shards)?;
    }
    if stats.examples == 0 {
        return Err(DataError::EmptyCorpus {
            inputs: inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        });
    }
    copy_tokenizer(tokenizer, out)?;
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        tokenizer: TokenizerInfo {
            file: TOKENIZER_FILE.to_owned(),
            fingerprint: tokenizer.fingerprint().to_owned(),
            vocab_size: tokenizer.vocab_size() as u64,
            token_width,
        },
        examples: ExampleSettings {
            max_seq_length: config.examples.max_seq_length as u64,
            short_seq_prob: config.examples.short_seq_prob,
            swap_prob: config.examples.swap_prob,
            seed: config.examples.seed,
        },
        sources,
        shards,
        stats,
    };
    manifest.save(out)?;
    Ok(PrepareSummary { manifest, elapsed: started.elapsed() })
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
