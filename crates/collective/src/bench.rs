//! The all-reduce benchmark behind `albatross bench allreduce`: `n` ranks on loopback sum a
//! buffer per size, verify the sum exactly, and report the median time with algbw and busbw as
//! nccl-tests defines them (`algbw = S / t`, `busbw = algbw · 2 (n - 1) / n`).
//!
//! Ranks run either as tasks of one process ([`run_in_process`]) or as separate processes:
//! [`launch`] spawns `n` copies of a command, each of which calls [`rank_process`]; they
//! rendezvous over stdin/stdout (each rank prints `listening <addr>`, the launcher answers
//! `members <addr0> <addr1> …`; rank 0 prints one `result <json>` line per size; every rank
//! prints `done`, and once all have, the launcher answers `exit`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use albatross_proto::domain::{Generation, Member, OpTag, WorkerId, WorkerRef};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::collective::{Collective, CollectiveConfig};
use crate::compress::WireFormat;
use crate::error::CollectiveError;
use crate::op::{OpContext, default_deadline};

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    pub ranks: usize,
    /// Buffer sizes in bytes (f32, so multiples of 4).
    pub sizes: Vec<usize>,
    /// Timed iterations per size (the median is reported).
    pub iters: usize,
    /// Untimed iterations per size before timing.
    pub warmup: usize,
    pub config: CollectiveConfig,
}

impl BenchOptions {
    /// Sizes from MiB values (e.g. `--size-mib 16,48`).
    pub fn sizes_from_mib(mib: &[f64]) -> Vec<usize> {
        mib.iter().map(|m| ((m * 1048576.0) as usize / 4) * 4).collect()
    }

    fn validate(&self) -> Result<(), CollectiveError> {
        let invalid = |m: String| Err(CollectiveError::InvalidArgument(m));
        if self.ranks == 0 {
            return invalid("bench needs at least one rank".to_owned());
        }
        if self.iters == 0 {
            return invalid("bench needs at least one timed iteration".to_owned());
        }
        if self.sizes.is_empty() || self.sizes.iter().any(|&s| s < 4) {
            return invalid(format!("bench sizes must be at least 4 bytes, got {:?}", self.sizes));
        }
        self.config.validate()
    }
}

/// One measured size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    pub ranks: usize,
    pub bytes: usize,
    pub wire: WireFormat,
    pub iters: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub algbw_gbps: f64,
    pub busbw_gbps: f64,
}

impl BenchResult {
    fn new(ranks: usize, bytes: usize, wire: WireFormat, mut times: Vec<f64>) -> Self {
        times.sort_by(f64::total_cmp);
        let median_s = if times.is_empty() {
            f64::NAN
        } else if times.len() % 2 == 1 {
            times[times.len() / 2]
        } else {
            (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
        };
        let algbw_gbps = bytes as f64 / median_s / 1e9;
        let factor = if ranks > 1 { 2.0 * (ranks - 1) as f64 / ranks as f64 } else { 0.0 };
        Self {
            ranks,
            bytes,
            wire,
            iters: times.len(),
            median_s,
            min_s: times.first().copied().unwrap_or(f64::NAN),
            algbw_gbps,
            busbw_gbps: algbw_gbps * factor,
        }
    }

    /// One JSON object (the `--json` output).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("invariant: a BenchResult always serialises")
    }

    /// One human-readable line.
    pub fn to_line(&self) -> String {
        format!(
            "ranks {:>2}  size {:>9.2} MiB  wire {:>4}  median {:>9.3} ms  algbw {:>6.3} GB/s  busbw {:>6.3} GB/s",
            self.ranks,
            self.bytes as f64 / 1048576.0,
            wire_name(self.wire),
            self.median_s * 1e3,
            self.algbw_gbps,
            self.busbw_gbps
        )
    }

    /// Parse [`Self::to_json`] output (used by the launcher to read rank 0's results).
    pub fn from_json(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

fn wire_name(wire: WireFormat) -> &'static str {
    match wire {
        WireFormat::F32 => "f32",
        WireFormat::Bf16 => "bf16",
    }
}

/// Rank `rank`'s input, element `i` being `i % 7 + rank`: small integers, so the sum is exact in
/// f32 and in bf16. Written a period at a time, so a fill
/// costs about a memcpy (as gloo's baseline `(idx + rank).to(float32)` does): an element-wise
/// modulo took ~50 ms per 48 MiB, and with more ranks than cores the rank that finished an
/// all-reduce first ate into its peers' time with it.
fn fill(buf: &mut [f32], rank: usize) {
    const PERIOD: usize = 7 * 64;
    let pattern: Vec<f32> = (0..PERIOD).map(|i| ((i % 7) + rank) as f32).collect();
    for piece in buf.chunks_mut(PERIOD) {
        piece.copy_from_slice(&pattern[..piece.len()]);
    }
}

fn verify(buf: &[f32], ranks: usize) -> Result<(), CollectiveError> {
    let base = (ranks * (ranks - 1) / 2) as f32;
    for (i, v) in buf.iter().enumerate() {
        let want = (ranks * (i % 7)) as f32 + base;
        if *v != want {
            return Err(CollectiveError::InvalidArgument(format!(
                "bench verification failed: element {i} is {v}, expected {want}"
            )));
        }
    }
    Ok(())
}

fn bench_worker(rank: usize) -> Result<WorkerRef, CollectiveError> {
    let id = WorkerId::new(format!("bench-{rank}"))
        .map_err(|e| CollectiveError::InvalidArgument(e.to_string()))?;
    Ok(WorkerRef { id, incarnation: 1 })
}

/// Members for ranks serving at `addrs` (in rank order).
fn members(addrs: &[String]) -> Result<Arc<[Member]>, CollectiveError> {
    addrs
        .iter()
        .enumerate()
        .map(|(rank, address)| {
            Ok(Member { worker: bench_worker(rank)?, address: address.clone(), rank: rank as u32 })
        })
        .collect()
}

/// Everything one rank measures: per size, the timed iterations in seconds.
async fn run_rank(
    collective: &Collective,
    members: Arc<[Member]>,
    rank: usize,
    options: &BenchOptions,
) -> Result<Vec<BenchResult>, CollectiveError> {
    let n = members.len();
    let mut op_seq = 0u64;
    let mut next_ctx = |bytes: usize| {
        op_seq += 1;
        OpContext {
            tag: OpTag { generation: Generation(1), step: 0, op_seq },
            members: Arc::clone(&members),
            rank: rank as u32,
            deadline: Instant::now() + default_deadline(bytes, n) * 4,
            cancel: CancellationToken::new(),
        }
    };
    let mut results = Vec::new();
    for &bytes in &options.sizes {
        let mut buf = vec![0f32; bytes / 4];
        let mut times = Vec::with_capacity(options.iters);
        for iter in 0..options.warmup + options.iters {
            fill(&mut buf, rank);
            // A scalar sum lines the ranks up so each timed iteration starts together.
            collective.scalar_sum(&next_ctx(8), &mut [0.0]).await?;
            let ctx = next_ctx(bytes);
            let started = Instant::now();
            collective.all_reduce_sum(&ctx, &mut buf).await?;
            let elapsed = started.elapsed().as_secs_f64();
            if iter == 0 || iter + 1 == options.warmup + options.iters {
                verify(&buf, n)?;
            }
            if iter >= options.warmup {
                times.push(elapsed);
            }
        }
        results.push(BenchResult::new(n, bytes, options.config.wire, times));
    }
    Ok(results)
}

async fn serve(
    collective: &Collective,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), CollectiveError> {
    let transport = |e: std::io::Error| CollectiveError::InvalidArgument(format!("bind: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(transport)?;
    let addr = listener.local_addr().map_err(transport)?;
    let server = collective
        .config()
        .server
        .server_builder()
        .add_service(collective.peer_server().into_service())
        .serve_with_incoming_shutdown(albatross_proto::services::incoming(listener), async move {
            shutdown.cancelled().await;
        });
    let task = tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::warn!(error = %err, "bench peer server failed");
        }
    });
    Ok((addr, task))
}

/// All ranks as tasks of this process (each with its own server and connections).
///
/// # Errors
/// Bad options, or a failed or wrong all-reduce.
pub async fn run_in_process(options: &BenchOptions) -> Result<Vec<BenchResult>, CollectiveError> {
    options.validate()?;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let mut collectives = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..options.ranks {
        let collective = Collective::new(options.config.clone())?;
        let (addr, _task) = serve(&collective, shutdown.clone()).await?;
        addrs.push(addr.to_string());
        collectives.push(collective);
    }
    let members = members(&addrs)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (rank, collective) in collectives.into_iter().enumerate() {
        let (members, options) = (Arc::clone(&members), options.clone());
        tasks.spawn(async move {
            run_rank(&collective, members, rank, &options).await.map(|r| (rank, r))
        });
    }
    let mut rank0 = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (rank, results) = joined.map_err(|e| {
            CollectiveError::InvalidArgument(format!("bench rank task failed: {e}"))
        })??;
        if rank == 0 {
            rank0 = results;
        }
    }
    Ok(rank0)
}

/// The body of one rank process: serve, print `listening <addr>`, read `members …` from
/// `input`, run, and (rank 0) print one `result <json>` line per size; every rank then prints
/// `done` and keeps serving until `input` says `exit` (or ends). The launcher says `exit`
/// only once every rank is done: a rank that finished its last operation may still owe its
/// predecessor the answer to that operation's stream, and leaving earlier would break it.
///
/// `input` is read on a thread of its own, so waiting for a line never stops this runtime
/// (a single-threaded one must keep serving peers meanwhile).
///
/// # Errors
/// Bad options, a broken rendezvous, or a failed or wrong all-reduce.
pub async fn rank_process(
    options: &BenchOptions,
    rank: usize,
    input: impl BufRead + Send + 'static,
    output: &mut (dyn Write + Send),
) -> Result<(), CollectiveError> {
    options.validate()?;
    let io = |e: std::io::Error| CollectiveError::InvalidArgument(format!("bench rendezvous: {e}"));
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let collective = Collective::new(options.config.clone())?;
    let (addr, _task) = serve(&collective, shutdown.clone()).await?;
    let mut lines = forward_lines(input);
    writeln!(output, "listening {addr}").map_err(io)?;
    output.flush().map_err(io)?;
    let line = lines.recv().await.unwrap_or_default();
    let addrs: Vec<String> = match line.trim().strip_prefix("members ") {
        Some(list) => list.split_whitespace().map(str::to_owned).collect(),
        None => {
            return Err(CollectiveError::InvalidArgument(format!(
                "bench rendezvous: expected `members …`, got {line:?}"
            )));
        }
    };
    if addrs.len() != options.ranks || rank >= addrs.len() {
        return Err(CollectiveError::InvalidArgument(format!(
            "bench rendezvous: {} members for {} ranks (this is rank {rank})",
            addrs.len(),
            options.ranks
        )));
    }
    let results = run_rank(&collective, members(&addrs)?, rank, options).await?;
    if rank == 0 {
        for result in &results {
            writeln!(output, "result {}", result.to_json()).map_err(io)?;
        }
    }
    writeln!(output, "done").map_err(io)?;
    output.flush().map_err(io)?;
    // Serve on until every rank is done; the end of `input` (a launcher gone) also ends it.
    while let Some(line) = lines.recv().await {
        if line.trim() == "exit" {
            break;
        }
    }
    Ok(())
}

/// The lines of `input`, read on a plain thread and handed over through a channel (which
/// closes when `input` ends or fails).
fn forward_lines(
    input: impl BufRead + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in input.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// An upper bound for a whole run: what the ranks' own operation deadlines allow, plus start-up.
fn run_deadline(options: &BenchOptions) -> Duration {
    let per_size = |bytes: usize| {
        // Each iteration is a barrier (scalar sum) and one all-reduce, each with its deadline.
        let iteration =
            default_deadline(8, options.ranks) + default_deadline(bytes, options.ranks) * 4;
        iteration * (options.warmup + options.iters) as u32
    };
    Duration::from_secs(30) + options.sizes.iter().map(|&b| per_size(b)).sum::<Duration>()
}

/// Spawn `options.ranks` processes made by `command(rank)` (each must end up calling
/// [`rank_process`] for that rank), wire them together and return rank 0's results.
/// Blocking: call it from a plain thread or `spawn_blocking`. Children still running when the
/// run's deadline passes, or when any of them fails, are killed.
///
/// # Errors
/// A child that cannot be started, breaks the rendezvous, exits unsuccessfully, or does not
/// finish in time.
pub fn launch(
    options: &BenchOptions,
    command: impl Fn(usize) -> Command,
) -> Result<Vec<BenchResult>, CollectiveError> {
    options.validate()?;
    let deadline = std::time::Instant::now() + run_deadline(options);
    let mut children = Vec::new();
    let result = drive_children(options, &command, deadline, &mut children);
    for child in &mut children {
        if result.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    result
}

fn drive_children(
    options: &BenchOptions,
    command: &impl Fn(usize) -> Command,
    deadline: std::time::Instant,
    children: &mut Vec<Child>,
) -> Result<Vec<BenchResult>, CollectiveError> {
    let fail = |m: String| CollectiveError::InvalidArgument(format!("bench launcher: {m}"));
    // One reader thread per child turns its stdout into (rank, line) events; `None` is EOF.
    let (events_tx, events) = std::sync::mpsc::channel::<(usize, Option<String>)>();
    for rank in 0..options.ranks {
        let mut child = command(rank)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start rank {rank}: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| fail("no stdout".to_owned()))?;
        children.push(child);
        let events_tx = events_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if events_tx.send((rank, Some(line))).is_err() {
                    return;
                }
            }
            let _ = events_tx.send((rank, None));
        });
    }
    drop(events_tx);
    let next = || {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        events.recv_timeout(left).map_err(|_| fail("ranks did not finish in time".to_owned()))
    };
    let mut addrs: Vec<Option<String>> = vec![None; options.ranks];
    while addrs.iter().any(Option::is_none) {
        match next()? {
            // Found anywhere in the line: a harness may not end its own line first.
            (rank, Some(line)) => {
                if let Some((_, addr)) = line.split_once("listening ") {
                    addrs[rank] = Some(addr.trim().to_owned());
                }
            }
            (rank, None) => return Err(fail(format!("rank {rank} exited before listening"))),
        }
    }
    let members_line =
        format!("members {}\n", addrs.into_iter().flatten().collect::<Vec<_>>().join(" "));
    for (rank, child) in children.iter_mut().enumerate() {
        let stdin = child.stdin.as_mut().ok_or_else(|| fail("no stdin".to_owned()))?;
        stdin
            .write_all(members_line.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| fail(format!("rank {rank}: {e}")))?;
    }
    let mut results = Vec::new();
    let mut done = vec![false; options.ranks];
    while done.iter().any(|d| !d) {
        match next()? {
            (rank, Some(line)) if line.trim_end().ends_with("done") => done[rank] = true,
            (0, Some(line)) => {
                if let Some((_, json)) = line.split_once("result {") {
                    let json = format!("{{{json}");
                    let result = BenchResult::from_json(&json)
                        .ok_or_else(|| fail(format!("rank 0: bad result {json:?}")))?;
                    results.push(result);
                }
            }
            (_, Some(_)) => {}
            (rank, None) => return Err(fail(format!("rank {rank} exited before it was done"))),
        }
    }
    // Every rank has finished every operation: none still needs a peer's server.
    for child in children.iter_mut() {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"exit\n").and_then(|()| stdin.flush());
        }
    }
    for (rank, child) in children.iter_mut().enumerate() {
        let status = child.wait().map_err(|e| fail(format!("rank {rank}: {e}")))?;
        if !status.success() {
            return Err(fail(format!("rank {rank} exited with {status}")));
        }
    }
    if results.len() != options.sizes.len() {
        return Err(fail(format!(
            "rank 0 reported {} of {} sizes",
            results.len(),
            options.sizes.len()
        )));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_follow_nccl_tests() {
        let r = BenchResult::new(4, 1_000_000_000, WireFormat::F32, vec![2.0, 1.0, 4.0]);
        assert_eq!(r.median_s, 2.0);
        assert_eq!(r.min_s, 1.0);
        assert!((r.algbw_gbps - 0.5).abs() < 1e-12);
        assert!((r.busbw_gbps - 0.75).abs() < 1e-12);
        assert_eq!(BenchResult::from_json(&r.to_json()), Some(r));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_process_bench_verifies_the_sum() {
        let options = BenchOptions {
            ranks: 3,
            sizes: vec![4, 1 << 20],
            iters: 3,
            warmup: 1,
            config: CollectiveConfig { piece_bytes: 64 << 10, ..CollectiveConfig::default() },
        };
        let results = run_in_process(&options).await.expect("bench runs");
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].bytes, 1 << 20);
        assert!(results.iter().all(|r| r.iters == 3 && r.busbw_gbps > 0.0), "{results:?}");
    }

    #[test]
    fn verification_catches_a_wrong_sum() {
        let mut buf = vec![0f32; 10];
        fill(&mut buf, 0);
        assert!(verify(&buf, 1).is_ok());
        buf[3] += 1.0;
        assert!(verify(&buf, 1).is_err_and(|e| e.to_string().contains("element 3")));
    }
}
