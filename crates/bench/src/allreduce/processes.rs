//! Ranks as separate processes: [`launch`] spawns `n` copies of a command, each of which calls
//! [`rank_process`], and wires them together over their stdin and stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use albatross_collective::{Collective, CollectiveError, default_deadline};
use tokio_util::sync::CancellationToken;

use super::figures::{BenchOptions, BenchResult};
use super::ring::{members, run_rank, serve};

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
    let events = spawn_ranks(options.ranks, command, children)?;
    let ranks = Rendezvous { events, deadline };
    let addrs = ranks.listening(options.ranks)?;
    let members_line = format!("members {}\n", addrs.join(" "));
    for (rank, child) in children.iter_mut().enumerate() {
        let stdin = child.stdin.as_mut().ok_or_else(|| fail("no stdin".to_owned()))?;
        stdin
            .write_all(members_line.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| fail(format!("rank {rank}: {e}")))?;
    }
    let results = ranks.results(options.ranks)?;
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

fn fail(m: String) -> CollectiveError {
    CollectiveError::InvalidArgument(format!("bench launcher: {m}"))
}

/// A line of a rank's stdout, `None` at its end.
type RankEvent = (usize, Option<String>);

/// Starts the ranks; one reader thread per child turns its stdout into [`RankEvent`]s.
fn spawn_ranks(
    ranks: usize,
    command: &impl Fn(usize) -> Command,
    children: &mut Vec<Child>,
) -> Result<std::sync::mpsc::Receiver<RankEvent>, CollectiveError> {
    let (events_tx, events) = std::sync::mpsc::channel::<RankEvent>();
    for rank in 0..ranks {
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
    Ok(events)
}

/// The ranks' stdout lines, read until the run's deadline.
struct Rendezvous {
    events: std::sync::mpsc::Receiver<RankEvent>,
    deadline: std::time::Instant,
}

impl Rendezvous {
    fn next(&self) -> Result<RankEvent, CollectiveError> {
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        self.events.recv_timeout(left).map_err(|_| fail("ranks did not finish in time".to_owned()))
    }

    /// Every rank's `listening <addr>`, in rank order.
    fn listening(&self, ranks: usize) -> Result<Vec<String>, CollectiveError> {
        let mut addrs: Vec<Option<String>> = vec![None; ranks];
        while addrs.iter().any(Option::is_none) {
            match self.next()? {
                // Found anywhere in the line: a harness may not end its own line first.
                (rank, Some(line)) => {
                    if let Some((_, addr)) = line.split_once("listening ") {
                        addrs[rank] = Some(addr.trim().to_owned());
                    }
                }
                (rank, None) => return Err(fail(format!("rank {rank} exited before listening"))),
            }
        }
        Ok(addrs.into_iter().flatten().collect())
    }

    /// Rank 0's `result {json}` lines, once every rank said `done`.
    fn results(&self, ranks: usize) -> Result<Vec<BenchResult>, CollectiveError> {
        let mut results = Vec::new();
        let mut done = vec![false; ranks];
        while done.iter().any(|d| !d) {
            match self.next()? {
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
                (rank, None) => {
                    return Err(fail(format!("rank {rank} exited before it was done")));
                }
            }
        }
        Ok(results)
    }
}
