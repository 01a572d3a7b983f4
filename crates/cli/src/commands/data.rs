//! `albatross prepare-data` and `albatross train-tokenizer`.

use std::time::Duration;

use albatross_data::{
    AlbertTokenizer, Dataset, Format, MaskingConfig, MaskingVocab, PrepareConfig, ReaderOptions,
    TrainTokenizerConfig, expand_inputs, prepare, render_sample, train_tokenizer,
};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::output::write_stdout;
use crate::args::{DataCommand, InputArgs, PrepareDataArgs, TrainTokenizerArgs};

fn reader_options(input: &InputArgs) -> ReaderOptions {
    let mut options = ReaderOptions::default();
    options.json.text.clone_from(&input.text_field);
    options
}

fn format(input: &InputArgs) -> anyhow::Result<Format> {
    input.format.parse().with_context(|| format!("invalid --format {:?}", input.format))
}

pub fn train(args: TrainTokenizerArgs) -> anyhow::Result<()> {
    let inputs = expand_inputs(&args.input.input)?;
    let mut config = TrainTokenizerConfig::new(args.vocab_size, &args.out);
    config.format = format(&args.input)?;
    config.reader = reader_options(&args.input);
    let tokenizer = train_tokenizer(&inputs, &config)?;
    write_stdout(&format!("wrote {} (vocabulary {})\n", args.out.display(), tokenizer.vocab_size()))
}

pub fn prepare_data(args: PrepareDataArgs) -> anyhow::Result<()> {
    let inputs = expand_inputs(&args.input.input)?;
    let tokenizer = match (&args.tokenizer, args.vocab_size) {
        (Some(path), _) => AlbertTokenizer::from_file(path)?,
        (None, Some(vocab_size)) => {
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("cannot create {}", args.out.display()))?;
            let mut config =
                TrainTokenizerConfig::new(vocab_size, args.out.join("trained-tokenizer.json"));
            config.format = format(&args.input)?;
            config.reader = reader_options(&args.input);
            tracing::info!(vocab_size, "training a tokenizer on the inputs first");
            train_tokenizer(&inputs, &config)?
        }
        (None, None) => anyhow::bail!("give --tokenizer FILE or --vocab-size N"),
    };
    let mut config = PrepareConfig::new(&args.out, args.max_seq_length);
    config.format = format(&args.input)?;
    config.reader = reader_options(&args.input);
    config.threads = args.threads;
    config.examples.seed = args.seed;

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .context("invariant: the progress template is valid")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let summary = prepare(&inputs, &tokenizer, &config, &mut |p| {
        bar.set_message(format!(
            "{} documents, {:.1} MB of text, {} tokens ({})",
            p.documents,
            p.text_bytes as f64 / 1e6,
            p.tokens,
            p.input.display()
        ));
    })?;
    bar.finish_and_clear();
    let stats = &summary.manifest.stats;
    write_stdout(&format!(
        "prepared {} samples ({} tokens, {} documents, {} sentences) in {} shard(s) into {}\n\
         {:.1} s, {:.2} MB/s of input, {:.0} tokens/s\n",
        stats.examples,
        stats.tokens,
        stats.documents,
        stats.sentences,
        summary.manifest.shards.len(),
        args.out.display(),
        summary.elapsed.as_secs_f64(),
        summary.input_mb_per_s(),
        summary.tokens_per_s(),
    ))
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Inspect { dir, verify: _, decode, seed, json } => {
            let dataset = Dataset::open(&dir)?;
            let manifest = dataset.manifest();
            if json {
                return write_stdout(&format!("{}\n", serde_json::to_string_pretty(manifest)?));
            }
            let stats = &manifest.stats;
            let mut text = format!(
                "{}: {} samples in {} shard(s), all checksums verified\n\
                 {} documents, {} sentences, {} tokens, {} swapped (SOP label 1)\n\
                 tokenizer {} (vocabulary {}), max_seq_length {}\n",
                dir.display(),
                dataset.len(),
                manifest.shards.len(),
                stats.documents,
                stats.sentences,
                stats.tokens,
                stats.swapped,
                manifest.tokenizer.fingerprint,
                manifest.tokenizer.vocab_size,
                manifest.examples.max_seq_length,
            );
            if decode > 0 {
                let tokenizer = dataset.load_tokenizer()?;
                let seq_len = usize::try_from(manifest.examples.max_seq_length)?;
                let masking = MaskingConfig::for_seq_len(seq_len, seed);
                let vocab = MaskingVocab {
                    special: tokenizer.special(),
                    word_starts: tokenizer.word_starts(),
                };
                for id in 0..decode.min(dataset.len()) {
                    let sample = dataset.sample(id, 0, &masking, &vocab)?;
                    text.push_str(&format!("\n#{id}: {}\n", render_sample(&tokenizer, &sample)));
                }
            }
            write_stdout(&text)
        }
    }
}
