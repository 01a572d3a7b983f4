//! The command line, declared with clap derive.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Fault-tolerant, multi-node pretraining of ALBERT.
#[derive(Debug, Parser)]
#[command(name = "albatross", version, propagate_version = true)]
pub struct Args {
    /// Log format on stderr; `json` is one object per line, for log collectors. Levels and
    /// targets come from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "ALBATROSS_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with job spec files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect ALBERT model configurations.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Train on this machine: a coordinator and N worker processes on loopback, with a progress
    /// bar; writes summary.json, metrics.jsonl, loss.png and checkpoints to --out. With no
    /// arguments: the tiny preset on the bundled sample corpus.
    Launch(LaunchArgs),
    /// Run a worker: join the coordinator, train, serve state to peers, write checkpoints.
    Worker(WorkerArgs),
    /// Run the coordinator of a job (the control plane; one per job).
    Coordinator(CoordinatorArgs),
    /// Show a running job's status, asked from its coordinator.
    Status(StatusArgs),
    /// Read corpora, tokenise them and write verified shards for training.
    PrepareData(PrepareDataArgs),
    /// Train an ALBERT-style SentencePiece-Unigram tokenizer and write `tokenizer.json`.
    TrainTokenizer(TrainTokenizerArgs),
    /// Inspect prepared data.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Statistics of a prepared data set (every shard checksum is verified on open) and, with
    /// `--decode N`, its first N samples as the model sees them: `[MASK]{original}`, `|` between
    /// the segments.
    Inspect {
        /// The prepared data directory.
        dir: PathBuf,
        /// Kept for scripts: checksums are always verified when a data set is opened.
        #[arg(long)]
        verify: bool,
        /// Decode the first N samples (masked as in epoch 0).
        #[arg(long, default_value_t = 0)]
        decode: u64,
        /// Masking seed used for `--decode`.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The job spec (TOML).
    #[arg(long)]
    pub job: PathBuf,
    /// gRPC address workers connect to.
    #[arg(long, default_value = "0.0.0.0:7070")]
    pub listen: SocketAddr,
    /// Status page (`/`), `/status` JSON and Prometheus `/metrics`.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Durable state (generation, committed step, data cursor, latest checkpoint).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// File holding the join token every worker must present.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Samples per epoch; read from the prepared data's manifest (`data.dir`) when absent.
    #[arg(long)]
    pub epoch_size: Option<u64>,
    /// Append one JSON object per line for every committed or skipped step (loss, accuracies,
    /// throughput figures, cursor, counters) to FILE; a restarted coordinator keeps appending.
    #[arg(long, value_name = "FILE")]
    pub metrics_log: Option<PathBuf>,
    /// Append one JSON object per line for every decision of the coordinator (join, leave,
    /// eviction, generation change, quorum, commit, skip, abort, checkpoint, rollback) and one
    /// `started` line per start to FILE; a restarted coordinator keeps appending.
    #[arg(long, value_name = "FILE")]
    pub events_log: Option<PathBuf>,
    /// Once listening, write `{"grpc", "http", "health", "pid", "instance"}` as JSON to FILE
    /// (atomically) with the actually bound addresses, so a launcher that passed port 0 learns
    /// the ports.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Also serve the gRPC health service, alone and in cleartext, here: for Kubernetes gRPC
    /// probes, which cannot present a client certificate when --tls-* is on.
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,
}

/// TLS for gRPC: mutual by default (every process needs all three files); with
/// `--tls-client-auth none`, servers accept clients without a certificate.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate of the job's CA; with --tls-cert and --tls-key every gRPC connection
    /// (coordinator and worker-to-worker) uses TLS. A client (`status`) against servers run with
    /// `--tls-client-auth none` needs only this one.
    #[arg(long, env = "ALBATROSS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate of this process; its subject alternative names must include the host
    /// others dial it by.
    #[arg(long, requires_all = ["tls_ca", "tls_key"], env = "ALBATROSS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of this process.
    #[arg(long, requires_all = ["tls_ca", "tls_cert"], env = "ALBATROSS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Whether servers require a client certificate from the CA (`required`: mutual TLS) or
    /// accept clients without one (`none`: encryption and server authentication only; set a
    /// join token to keep strangers out).
    #[arg(long, value_enum, default_value_t = ClientAuthArg::Required, env = "ALBATROSS_TLS_CLIENT_AUTH")]
    pub tls_client_auth: ClientAuthArg,
}

/// `--tls-client-auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuthArg {
    #[default]
    Required,
    None,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The coordinator's gRPC URL.
    #[arg(long, default_value = "http://127.0.0.1:7070", env = "ALBATROSS_COORDINATOR")]
    pub coordinator: String,
    /// Where to serve peers (all-reduce pieces, state transfer); port 0 picks a free one.
    #[arg(long, default_value = "0.0.0.0:7071")]
    pub listen: SocketAddr,
    /// host:port peers use to reach this worker (default: the bound address; 127.0.0.1 for an
    /// unspecified IP). On Kubernetes: the pod's stable DNS name.
    #[arg(long, env = "ALBATROSS_ADVERTISE")]
    pub advertise: Option<String>,
    /// Also serve the gRPC health service, alone and in cleartext, here: for Kubernetes gRPC
    /// probes, which cannot present a client certificate when --tls-* is on.
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,
    /// Stable name of this worker (a restarted process with the same name replaces the old
    /// one); default: $HOSTNAME, else worker-<pid>.
    #[arg(long)]
    pub id: Option<String>,
    /// Prepared data directory (default: the job's data.dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Checkpoint root (default: the job's checkpoint.dir).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// File holding the join token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The job this worker expects; joining a coordinator with another job fails.
    #[arg(long)]
    pub job: Option<PathBuf>,
    /// Compute threads (0: every core). One worker per core with 1 thread each is fastest.
    #[arg(long, default_value_t = 0, env = "ALBATROSS_THREADS")]
    pub threads: usize,
    /// Where the model runs (default: the kind the job pins, else cpu): cpu, wgpu (the best adapter), wgpu:N (the N-th discrete GPU),
    /// wgpu:cpu (a software adapter), cuda or cuda:N. GPU backends need a binary built with
    /// `--features wgpu` or `--features cuda`.
    #[arg(long, env = "ALBATROSS_DEVICE")]
    pub device: Option<albatross_model::Device>,
    /// Write a JSON summary (final step, state and parameter hashes) here on exit.
    #[arg(long)]
    pub report_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Job spec; default: the built-in demo job (tiny preset, bundled corpus).
    #[arg(long)]
    pub job: Option<PathBuf>,
    /// Prepared data; default: the job's data.dir, or for the demo job the bundled sample
    /// corpus, prepared on first use into a cache directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output directory (summary.json, metrics.jsonl, loss.png, checkpoints, logs).
    #[arg(long, default_value = "albatross-run")]
    pub out: PathBuf,
    /// Compute threads per worker (default: cores / workers, at least 1).
    #[arg(long)]
    pub threads_per_worker: Option<usize>,
    /// Every worker's device (see `albatross worker --device`); default: the job's pinned
    /// kind, else cpu.
    #[arg(long, conflicts_with = "devices")]
    pub device: Option<albatross_model::Device>,
    /// One device per worker, in worker order, e.g. `cuda:0,cuda:1` (as many as --workers).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<albatross_model::Device>,
    /// Model preset of the demo job (ignored with --job).
    #[arg(long)]
    pub preset: Option<String>,
    /// Steps to train (overrides the job's optimizer.total_steps).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Samples per step over all workers (overrides the job's batch.global_batch_size).
    #[arg(long)]
    pub global_batch: Option<u32>,
    /// Start over: remove the previous run's coordinator state and checkpoints in --out.
    #[arg(long)]
    pub fresh: bool,
    /// Inject faults on a schedule and write chaos-report.json: e.g.
    /// `kill:worker-1@step=30,pause:worker-0@step=50+5s,term:worker-1@step=60,kill:coordinator@step=80`
    /// or `random:rate=5,seed=1` (faults per 100 steps, reproducible from the seed).
    #[arg(long)]
    pub chaos: Option<String>,
    /// Stop and fail if training has not finished within this time (e.g. `20m`): a soak run
    /// or CI job that hangs fails instead of running forever.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub time_limit: Option<std::time::Duration>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The coordinator's gRPC URL.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub coordinator: String,
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which reader to use; `auto` sniffs each input.
#[derive(Debug, clap::Args)]
pub struct InputArgs {
    /// Input files, directories or globs (`*`, `?`); `.bz2` is read transparently.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// auto, text, book, jsonl, wikiextractor-json, wikiextractor, wiki-xml or parquet.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// JSON Lines field or parquet column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
}

#[derive(Debug, clap::Args)]
pub struct PrepareDataArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output directory for shards, `manifest.json` and a copy of the tokenizer.
    #[arg(long)]
    pub out: PathBuf,
    /// A Hugging Face `tokenizer.json`.
    #[arg(long, required_unless_present = "vocab_size", conflicts_with = "vocab_size")]
    pub tokenizer: Option<PathBuf>,
    /// Train a tokenizer of this vocabulary size on the inputs first.
    #[arg(long)]
    pub vocab_size: Option<u32>,
    /// Tokens per example, `[CLS] A [SEP] B [SEP]` included.
    #[arg(long = "max-seq-len", visible_alias = "max-seq-length", default_value_t = 512)]
    pub max_seq_length: usize,
    /// Seed of example building (segment choice, SOP swaps).
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// Worker threads; 0 uses every core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Debug, clap::Args)]
pub struct TrainTokenizerArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Vocabulary size, the five special tokens included.
    #[arg(long)]
    pub vocab_size: u32,
    /// Where to write `tokenizer.json`.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a job spec; print its effective form (every default filled in) and fingerprint.
    Check {
        /// The job file, or `-` for standard input.
        file: PathBuf,
    },
    /// Print a commented example job spec.
    Example,
}

/// Where a model configuration comes from.
#[derive(Debug, clap::Args)]
pub struct ModelSource {
    /// A named preset: tiny, base, large, xlarge or xxlarge.
    #[arg(long, default_value = "base", conflicts_with = "config")]
    pub preset: String,
    /// A Hugging Face ALBERT `config.json` instead of a preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Parameter counts, gradient bytes per step and the saving against BERT of the same size.
    Info {
        #[command(flatten)]
        source: ModelSource,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a Hugging Face ALBERT checkpoint in evaluation mode (no dropout) on inputs from JSON
    /// and write `prediction_logits`, `sop_logits` (and `loss` when labels are given).
    Eval {
        /// Directory with `config.json` and `model.safetensors` (transformers' names).
        #[arg(long)]
        hf_dir: PathBuf,
        /// JSON with `input_ids`, `token_type_ids`, `attention_mask` (B x S), optional `labels`
        /// (B x S, -100 where not masked) and `sentence_order_label` (B).
        #[arg(long)]
        inputs: PathBuf,
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
        /// Where the model runs: cpu, wgpu (the best adapter), wgpu:N (the N-th discrete GPU),
        /// wgpu:cpu (a software adapter), cuda or cuda:N. GPU backends need a binary built with
        /// `--features wgpu` or `--features cuda`.
        #[arg(long, default_value = "cpu")]
        device: albatross_model::Device,
    },
    /// Write a model that `AlbertForPreTraining.from_pretrained(DIR)` loads: the model of a
    /// training checkpoint (`--checkpoint`, verified against its manifest), or a freshly
    /// initialised one.
    ExportHf {
        /// A training checkpoint directory (`.../checkpoints/step-00001000`).
        #[arg(long, conflicts_with_all = ["preset", "config"])]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        source: ModelSource,
        /// Initialisation seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory (`config.json`, `model.safetensors`).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// A training cluster on loopback (coordinator + N worker processes) on the bundled corpus:
    /// prints cluster tokens/s, step time and the all-reduce share. Build with `--release`.
    Train(BenchTrainArgs),
    /// Ring all-reduce over gRPC on loopback: one process per rank; verifies the sum and prints
    /// median time, algbw and busbw (nccl-tests definitions) per size.
    Allreduce(AllreduceBenchArgs),
    /// Coordinator scale: N simulated workers join, form quorums, vote and commit over real
    /// gRPC on loopback; prints quorum and commit latency percentiles.
    Coordinator {
        /// Simulated workers.
        #[arg(long, default_value_t = 100)]
        workers: u32,
        /// Steps (quorum + commit rounds) to time.
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        /// HTTP/2 connections the simulated workers share.
        #[arg(long, default_value_t = 16)]
        channels: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Corpus preparation end to end (read, clean, segment, tokenise, build examples, write
    /// shards) on the bundled Wikipedia XML sample or your inputs: MB/s (per thread and per
    /// CPU-second), tokens/s, peak RSS; then the cost of reading one training batch against an
    /// albert-base step on the same batch. Build with `--release`.
    Data(DataBenchArgs),
    /// Time full training steps (forward, backward, gradient flatten, clip, LAMB) on synthetic
    /// data. Build with `--release` for meaningful figures.
    Step {
        #[command(flatten)]
        source: ModelSource,
        /// Sequences per step.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// Timed steps (the median is reported).
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Then cancel one forward + backward pass at each of these fractions of it (e.g.
        /// `0.1,0.5,0.9`) and report how long it took to stop (what an aborted step costs).
        #[arg(long, value_delimiter = ',')]
        cancel_at: Vec<f64>,
        /// Where the model runs: cpu, wgpu (the best adapter), wgpu:N (the N-th discrete GPU),
        /// wgpu:cpu (a software adapter), cuda or cuda:N. GPU backends need a binary built with
        /// `--features wgpu` or `--features cuda`.
        #[arg(long, default_value = "cpu")]
        device: albatross_model::Device,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct BenchTrainArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Compute threads per worker (default: cores / workers, at least 1).
    #[arg(long)]
    pub threads_per_worker: Option<usize>,
    /// Every worker's device (see `albatross worker --device`).
    #[arg(long, conflicts_with = "devices")]
    pub device: Option<albatross_model::Device>,
    /// One device per worker, in worker order, e.g. `cuda:0,cuda:0` (two workers sharing a GPU).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<albatross_model::Device>,
    /// Model preset (its vocabulary, at least the bundled tokenizer's 8000 ids).
    #[arg(long, default_value = "base")]
    pub preset: String,
    /// Samples per step over all workers.
    #[arg(long, default_value_t = 8)]
    pub batch: u32,
    /// Tokens per sample.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: u64,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Keep the run (logs, metrics) in this directory instead of a temporary one.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DataBenchArgs {
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

#[derive(Debug, clap::Args)]
pub struct AllreduceBenchArgs {
    /// Ranks (processes).
    #[arg(long, default_value_t = 2)]
    pub ranks: usize,
    /// Buffer sizes in MiB, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "16,48")]
    pub size_mib: Vec<f64>,
    /// Timed iterations per size (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Pipelined piece size in KiB (HTTP/2 windows grow to hold two pieces, never shrink).
    #[arg(long, default_value_t = 1024)]
    pub piece_kib: usize,
    /// Send bf16 on the wire (f32 accumulation): half the bytes.
    #[arg(long)]
    pub bf16: bool,
    /// Run every rank in this process instead of one process per rank.
    #[arg(long)]
    pub in_process: bool,
    /// Print one JSON object per size.
    #[arg(long)]
    pub json: bool,
    /// Internal: run as this rank of a launched benchmark.
    #[arg(long, hide = true)]
    pub rank: Option<usize>,
}
