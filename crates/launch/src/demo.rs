//! The demo `albatross launch` runs with no arguments: the `tiny` preset on a sample corpus
//! bundled into the binary (Jane Austen's *Persuasion* and a slice of English Wikipedia, with
//! the project's generated 8k ALBERT tokenizer; provenance and licences in
//! `crates/data/tests/fixtures/README.md`), prepared on first use into a cache directory.

use std::path::{Path, PathBuf};

use albatross_data::{AlbertTokenizer, Format, Manifest, PrepareConfig, prepare};
use anyhow::Context;
use sha2::{Digest, Sha256};

const PERSUASION: &[u8] = include_bytes!("../../data/tests/fixtures/persuasion.txt");
const ENWIKI: &[u8] = include_bytes!("../../data/tests/fixtures/enwiki-sample.wikiextractor.jsonl");
pub const TOKENIZER: &[u8] = include_bytes!("../../data/tests/fixtures/albert-8k-tokenizer.json");

/// Tokens per example of the demo.
pub const DEMO_SEQ_LEN: usize = 128;

/// A job on the bundled corpus.
#[derive(Debug, Clone, Copy)]
pub struct DemoJob<'a> {
    pub preset: &'a str,
    /// At least the bundled tokenizer's 8000 ids.
    pub vocab: usize,
    pub seq_len: usize,
    pub steps: u64,
    pub global_batch: u32,
    pub workers: usize,
    pub checkpoint_every: u64,
}

/// The job text: `preset` with `vocab` ids, LAMB with a short warm-up, a 2 s join grace,
/// micro-batches of at most 8. `data` and `checkpoints` are filled in by the launcher.
///
/// The micro-batch size does not depend on the worker count: in exact mode it is part of the
/// arithmetic (each micro-batch's gradient is computed whole), so runs with any number of
/// workers must cut the global batch alike to end with the same bits.
pub fn job_toml(j: &DemoJob<'_>) -> String {
    let workers = u32::try_from(j.workers.max(1)).unwrap_or(1);
    let micro = j.global_batch.clamp(1, 8);
    format!(
        "name = \"albatross-demo\"\n\
         seed = 42\n\
         [model]\n\
         preset = \"{preset}\"\n\
         vocab_size = {vocab}\n\
         max_position_embeddings = {seq}\n\
         [data]\n\
         dir = \"data\"\n\
         max_seq_length = {seq}\n\
         [optimizer]\n\
         learning_rate = 0.01\n\
         warmup_steps = {warmup}\n\
         total_steps = {steps}\n\
         [batch]\n\
         global_batch_size = {batch}\n\
         micro_batch_size = {micro}\n\
         [fault_tolerance]\n\
         min_workers = 1\n\
         max_workers = {workers}\n\
         heartbeat_interval = \"1s\"\n\
         heartbeat_timeout = \"5s\"\n\
         join_grace = \"2s\"\n\
         step_deadline = \"5m\"\n\
         [checkpoint]\n\
         dir = \"checkpoints\"\n\
         every_steps = {every}\n\
         keep = 3\n",
        preset = j.preset,
        vocab = j.vocab,
        seq = j.seq_len,
        steps = j.steps,
        batch = j.global_batch,
        every = j.checkpoint_every,
        warmup = (j.steps / 10).max(1),
    )
}

/// Where prepared sample data is cached: `$ALBATROSS_CACHE_DIR`, else `$XDG_CACHE_HOME/albatross`,
/// else `$HOME/.cache/albatross`, else `fallback`.
pub fn cache_root(fallback: &Path) -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("ALBATROSS_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("albatross")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("albatross")))
        .unwrap_or_else(|| fallback.to_path_buf())
}

/// The bundled corpus prepared as `seq_len`-token samples, under `cache`: reused when a
/// previous run prepared it (the data set verifies its shard checksums when opened), prepared
/// otherwise.
pub fn prepared_sample(cache: &Path, seq_len: usize) -> anyhow::Result<PathBuf> {
    let digest = Sha256::new()
        .chain_update(PERSUASION)
        .chain_update(ENWIKI)
        .chain_update(TOKENIZER)
        .chain_update(seq_len.to_le_bytes())
        .finalize();
    let dir = cache.join(format!("sample-{}", &hex::encode(digest)[..12]));
    if Manifest::load(&dir).is_ok() {
        return Ok(dir);
    }
    let tmp = cache.join(format!(".tmp-sample-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let inputs = tmp.join("inputs");
    std::fs::create_dir_all(&inputs)
        .with_context(|| format!("cannot create the cache directory {}", inputs.display()))?;
    let book = inputs.join("persuasion.txt");
    let wiki = inputs.join("enwiki-sample.jsonl");
    let tokenizer_path = inputs.join("tokenizer.json");
    for (path, bytes) in [(&book, PERSUASION), (&wiki, ENWIKI), (&tokenizer_path, TOKENIZER)] {
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let tokenizer = AlbertTokenizer::from_file(&tokenizer_path)?;
    let out = tmp.join("data");
    tracing::info!(cache = %dir.display(), "preparing the bundled sample corpus (first run only)");
    // Auto-detection reads the book as wrapped prose and the JSON Lines as WikiExtractor output.
    let config = PrepareConfig {
        format: Format::Auto,
        examples_per_shard: 512,
        ..PrepareConfig::new(&out, seq_len)
    };
    prepare(&[book, wiki], &tokenizer, &config, &mut |_| {})?;
    std::fs::rename(&out, &dir)
        .or_else(|e| if Manifest::load(&dir).is_ok() { Ok(()) } else { Err(e) })
        .with_context(|| format!("cannot move the prepared sample into {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(dir)
}
