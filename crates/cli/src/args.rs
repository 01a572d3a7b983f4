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
    Launch(albatross_launch::LaunchOptions),
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
    Train(albatross_bench::train::TrainBenchOptions),
    /// Ring all-reduce over gRPC on loopback: one process per rank; verifies the sum and prints
    /// median time, algbw and busbw (nccl-tests definitions) per size.
    Allreduce(albatross_bench::allreduce::AllreduceBenchOptions),
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
    Data(albatross_bench::data::DataBenchOptions),
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
