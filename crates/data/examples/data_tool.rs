//! A small driver for measuring the pipeline until the `albatross` CLI wires it:
//!
//! ```text
//! cargo run -p albatross-data --example data_tool -- read INPUT...
//! cargo run -p albatross-data --example data_tool -- prepare TOKENIZER OUT_DIR MAX_SEQ_LEN INPUT...
//! cargo run -p albatross-data --example data_tool -- batches TOKENIZER DATASET_DIR BATCH_SIZE
//! ```
//! Results go to stderr.

use std::path::PathBuf;
use std::time::Instant;

use albatross_data::{
    AlbertTokenizer, Dataset, EpochSampler, Format, MaskingConfig, MaskingVocab, PrepareConfig,
    ReaderOptions, collate, expand_inputs, prepare, read_documents,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("read") => read(&args[1..]),
        Some("prepare") if args.len() >= 5 => {
            let tokenizer = AlbertTokenizer::from_file(args[1].as_ref())?;
            let config = PrepareConfig::new(&args[2], args[3].parse()?);
            let inputs = expand_inputs(&args[4..].iter().map(PathBuf::from).collect::<Vec<_>>())?;
            let summary = prepare(&inputs, &tokenizer, &config, &mut |_| {})?;
            let stats = &summary.manifest.stats;
            eprintln!(
                "prepared {} documents, {} sentences, {} examples, {} tokens, {} shards in {:.2?}: \
                 {:.2} MB/s of input, {:.0} tokens/s",
                stats.documents,
                stats.sentences,
                stats.examples,
                stats.tokens,
                summary.manifest.shards.len(),
                summary.elapsed,
                summary.input_mb_per_s(),
                summary.tokens_per_s()
            );
            Ok(())
        }
        Some("batches") if args.len() == 4 => batches(&args[1], &args[2], args[3].parse()?),
        _ => Err("usage: data_tool read INPUT... | prepare TOKENIZER OUT MAX_SEQ_LEN INPUT... \
                  | batches TOKENIZER DATASET BATCH_SIZE"
            .into()),
    }
}

fn read(inputs: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let inputs = expand_inputs(&inputs.iter().map(PathBuf::from).collect::<Vec<_>>())?;
    let started = Instant::now();
    let (mut docs, mut sentences, mut text, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for input in &inputs {
        bytes += std::fs::metadata(input)?.len();
        for doc in read_documents(input, Format::Auto, &ReaderOptions::default())? {
            let doc = doc?;
            docs += 1;
            sentences += doc.sentences.len() as u64;
            text += doc.text_bytes() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "read {docs} documents, {sentences} sentences, {:.1} MB of text from {:.1} MB of input \
         in {secs:.2} s: {:.2} MB/s of input, {:.2} MB/s of text",
        text as f64 / 1e6,
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        text as f64 / 1e6 / secs
    );
    Ok(())
}

/// Reads 20 global batches the way a worker does (sampler, masking on read, collation).
fn batches(tokenizer: &str, dir: &str, batch_size: u64) -> Result<(), Box<dyn std::error::Error>> {
    let opened = Instant::now();
    let data = Dataset::open(dir.as_ref())?;
    let open_time = opened.elapsed();
    let tok = AlbertTokenizer::from_file(tokenizer.as_ref())?;
    data.check_tokenizer(&tok)?;
    let seq_len = usize::try_from(data.manifest().examples.max_seq_length)?;
    let masking = MaskingConfig::for_seq_len(seq_len, 1);
    let vocab = MaskingVocab { special: tok.special(), word_starts: tok.word_starts() };
    let sampler = EpochSampler::new(data.len(), 1)?;
    let started = Instant::now();
    let rounds = 20;
    for round in 0..rounds {
        // Consecutive batches of positions, wrapping into the next epoch.
        let mut samples = Vec::new();
        for i in 0..batch_size {
            let at = u64::from(round) * batch_size + i;
            let (epoch, position) = (at / data.len(), at % data.len());
            let id = sampler.sample_at(epoch, position)?;
            samples.push(data.sample(id, epoch, &masking, &vocab)?);
        }
        collate(&samples, seq_len, tok.special().pad)?;
    }
    let per_batch = started.elapsed() / rounds;
    eprintln!(
        "opened and verified {} samples in {open_time:.2?}; \
         one batch of {batch_size}: {per_batch:.2?}",
        data.len()
    );
    Ok(())
}
