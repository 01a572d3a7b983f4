//! `albatross bench coordinator`: N simulated workers (real gRPC clients sharing a few HTTP/2
//! channels, all in this process) join, then run rounds of quorum and commit against a real
//! coordinator on 127.0.0.1. Workers beyond `max_workers` (1024) join and heartbeat as spares.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use albatross_coordinator::{CoordinatorError, CoordinatorOptions, Listeners};
use albatross_proto::channel::{ChannelOptions, endpoint};
use albatross_proto::domain::{
    BuildInfo, Generation, Heartbeat, JoinRequest, QuorumRequest, StepStats, StepTag, Vote,
    VoteOutcome, WorkerId, WorkerPhase, WorkerRef,
};
use albatross_proto::job::JobSpec;
use albatross_proto::wire::v1 as wire;
use albatross_proto::wire::v1::coordinator_service_client::CoordinatorServiceClient;
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::measure::peak_rss_bytes;

/// The largest quorum a job may have (job spec validation).
const MAX_QUORUM: u32 = 1024;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub workers: u32,
    pub rounds: u32,
    /// HTTP/2 connections the simulated workers share.
    pub channels: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self { workers: 100, rounds: 20, channels: 16 }
    }
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workers: u32,
    pub quorum_size: u32,
    pub rounds: u32,
    /// Joining the quorum's workers, start to end (spares join after the first round).
    pub join_seconds: f64,
    /// Per round: from the last quorum request sent to the last quorum received.
    pub quorum_p50_ms: f64,
    pub quorum_p99_ms: f64,
    /// Per round: from the last vote sent to the last decision received.
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub rounds_per_second: f64,
    /// Peak resident memory of this process (coordinator and simulated clients), if known.
    pub peak_rss_bytes: Option<u64>,
}

type Client = CoordinatorServiceClient<Channel>;

fn bench_err(what: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Transport(format!("benchmark: {what}"))
}

fn job(workers: u32) -> Result<JobSpec, CoordinatorError> {
    let quorum = workers.clamp(1, MAX_QUORUM);
    let text = format!(
        "name = \"bench\"\n[model]\npreset = \"tiny\"\n[data]\ndir = \"data\"\nmax_seq_length = 64\n\
         [batch]\nglobal_batch_size = {}\nmicro_batch_size = 1\n[fault_tolerance]\n\
         min_workers = {quorum}\nmax_workers = {quorum}\nheartbeat_interval = \"10s\"\n\
         heartbeat_timeout = \"60s\"\njoin_grace = \"30s\"\nstep_deadline = \"60s\"\n",
        quorum * 4
    );
    JobSpec::from_toml_str(&text, "<bench>").map_err(bench_err)
}

fn worker(i: u32) -> Result<WorkerRef, CoordinatorError> {
    Ok(WorkerRef { id: WorkerId::new(format!("w-{i}")).map_err(bench_err)?, incarnation: 1 })
}

/// Run the benchmark.
///
/// # Errors
/// When the coordinator cannot start or a call fails.
pub async fn bench_coordinator(opts: BenchOptions) -> Result<BenchReport, CoordinatorError> {
    let workers = opts.workers.max(1);
    let quorum = workers.min(MAX_QUORUM);
    let state_dir = std::env::temp_dir().join(format!("albatross-bench-{}", std::process::id()));
    // A fresh job every time: never resume an earlier run's state.
    remove(&state_dir);
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(bench_err)?;
    let addr = grpc.local_addr().map_err(bench_err)?;
    let options = CoordinatorOptions {
        job: job(workers)?,
        epoch_size: 1_000_000,
        listen: addr,
        http: None,
        state_dir: state_dir.clone(),
        token: None,
        data_fingerprint: None,
        metrics_log: None,
        events_log: None,
        tls: None,
        ready_file: None,
        health_listen: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(albatross_coordinator::serve(
        options,
        Listeners { grpc, http: None, health: None },
        async {
            let _ = stopped.await;
        },
    ));
    let result = drive(addr, workers, quorum, &opts).await;
    let _ = stop.send(());
    let served = server.await.map_err(bench_err)?;
    remove(&state_dir);
    served?;
    result
}

fn remove(dir: &PathBuf) {
    let _ = std::fs::remove_dir_all(dir);
}

async fn drive(
    addr: std::net::SocketAddr,
    workers: u32,
    quorum: u32,
    opts: &BenchOptions,
) -> Result<BenchReport, CoordinatorError> {
    let mut clients = Vec::new();
    for _ in 0..opts.channels.max(1) {
        let options =
            ChannelOptions { connect_timeout: Duration::from_secs(5), ..Default::default() };
        let channel = endpoint(&addr.to_string(), &options)
            .map_err(bench_err)?
            .connect()
            .await
            .map_err(bench_err)?;
        clients.push(CoordinatorServiceClient::new(channel));
    }
    let client = |i: u32| clients[i as usize % clients.len()].clone();
    let started = Instant::now();
    join_range(&client, 0..quorum).await?;
    let join_seconds = started.elapsed().as_secs_f64();
    let (mut quorum_ms, mut commit_ms) = (Vec::new(), Vec::new());
    let rounds_started = Instant::now();
    let mut known = Generation(0);
    for step in 1..=u64::from(opts.rounds.max(1)) {
        // Quorum: every member asks; the round's latency runs from the last ask to the last answer.
        let mut set = JoinSet::new();
        for i in 0..quorum {
            let (c, me) = (client(i), worker(i)?);
            set.spawn(ask_until_ready(c, me, step, known));
        }
        let (last_sent, last_done, tag) = timings(&mut set).await?;
        // Like a real worker, ask with the generation whose member list it holds.
        known = tag.generation;
        quorum_ms.push(last_done.saturating_duration_since(last_sent).as_secs_f64() * 1e3);
        let mut set = JoinSet::new();
        for i in 0..quorum {
            let (mut c, me) = (client(i), worker(i)?);
            set.spawn(async move {
                let vote = Vote {
                    worker: me,
                    tag,
                    outcome: VoteOutcome::Ok,
                    non_finite: false,
                    state_hash: None,
                    stats: StepStats::default(),
                };
                let sent = Instant::now();
                let mut request = tonic::Request::new(wire::VoteRequest::from(vote));
                request.set_timeout(Duration::from_secs(30));
                c.vote(request).await.map(|_| (sent, Instant::now(), tag))
            });
        }
        let (last_sent, last_done, _) = timings(&mut set).await?;
        commit_ms.push(last_done.saturating_duration_since(last_sent).as_secs_f64() * 1e3);
        // Spares join once the first quorum stands, so it forms without waiting the join grace.
        if step == 1 {
            join_range(&client, quorum..workers).await?;
        }
        // Spares show they are alive.
        let mut set = JoinSet::new();
        for i in quorum..workers {
            let (mut c, me) = (client(i), worker(i)?);
            let hb = Heartbeat { worker: me, tag, phase: WorkerPhase::Idle };
            set.spawn(async move { c.heartbeat(wire::HeartbeatRequest::from(hb)).await.map(drop) });
        }
        finish(&mut set).await?;
    }
    let elapsed = rounds_started.elapsed().as_secs_f64();
    Ok(BenchReport {
        workers,
        quorum_size: quorum,
        rounds: opts.rounds.max(1),
        join_seconds,
        quorum_p50_ms: percentile(&mut quorum_ms, 0.50),
        quorum_p99_ms: percentile(&mut quorum_ms, 0.99),
        commit_p50_ms: percentile(&mut commit_ms, 0.50),
        commit_p99_ms: percentile(&mut commit_ms, 0.99),
        rounds_per_second: f64::from(opts.rounds.max(1)) / elapsed.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

async fn join_range(
    client: &impl Fn(u32) -> Client,
    range: std::ops::Range<u32>,
) -> Result<(), CoordinatorError> {
    let mut set = JoinSet::new();
    for i in range {
        let (mut c, me) = (client(i), worker(i)?);
        set.spawn(async move {
            let req = JoinRequest {
                worker: me,
                advertise_address: format!("10.0.0.1:{}", 1000 + i),
                build: BuildInfo::current(),
                expected_job_fingerprint: None,
                data_fingerprint: None,
                applied_step: None,
                kernel_set: None,
            };
            c.join(wire::JoinRequest::from(req)).await.map(drop)
        });
    }
    finish(&mut set).await
}

type Timed = Result<(Instant, Instant, StepTag), tonic::Status>;

async fn ask_until_ready(mut c: Client, me: WorkerRef, step: u64, known: Generation) -> Timed {
    loop {
        let req = QuorumRequest {
            worker: me.clone(),
            step,
            applied_step: step - 1,
            state_hash: None,
            known_members_generation: known,
        };
        let mut request = tonic::Request::new(wire::AwaitQuorumRequest::from(req));
        request.set_timeout(Duration::from_secs(30));
        let sent = Instant::now();
        let reply = c.await_quorum(request).await?.into_inner();
        // Only the outcome's kind and tag matter here; the full domain conversion (which
        // validates every member) is the client's cost, not the coordinator's.
        use wire::await_quorum_response::Outcome;
        match reply.outcome {
            Some(Outcome::Quorum(q)) => {
                let tag = q.tag.map_or(StepTag { generation: Generation(0), step }, |t| StepTag {
                    generation: Generation(t.generation),
                    step: t.step,
                });
                return Ok((sent, Instant::now(), tag));
            }
            Some(Outcome::NotYet(_)) => {}
            Some(Outcome::Finished(_)) | None => {
                return Err(tonic::Status::out_of_range("job finished or empty answer"));
            }
            Some(Outcome::Rewind(r)) => {
                return Err(tonic::Status::failed_precondition(format!(
                    "told to rewind to step {}: {}",
                    r.committed_step, r.reason
                )));
            }
        }
    }
}

async fn finish(set: &mut JoinSet<Result<(), tonic::Status>>) -> Result<(), CoordinatorError> {
    while let Some(done) = set.join_next().await {
        done.map_err(bench_err)?.map_err(bench_err)?;
    }
    Ok(())
}

async fn timings(
    set: &mut JoinSet<Timed>,
) -> Result<(Instant, Instant, StepTag), CoordinatorError> {
    let now = Instant::now();
    let (mut last_sent, mut last_done) = (now, now);
    let mut tag = StepTag { generation: Generation(0), step: 0 };
    let mut first = true;
    while let Some(done) = set.join_next().await {
        let (sent, received, t) = done.map_err(bench_err)?.map_err(bench_err)?;
        if first {
            (last_sent, last_done, first) = (sent, received, false);
        }
        last_sent = last_sent.max(sent);
        last_done = last_done.max(received);
        tag = t;
    }
    Ok((last_sent, last_done, tag))
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i.min(values.len() - 1)]
}

/// `albatross bench coordinator`: the figures as text (pretty JSON, or one JSON line).
///
/// # Errors
/// Bad options, or a coordinator or call that fails.
pub fn run(options: BenchOptions, json: bool) -> anyhow::Result<String> {
    let BenchOptions { workers, rounds, channels } = options;
    anyhow::ensure!(
        workers > 0 && rounds > 0 && channels > 0,
        "--workers, --rounds and --channels must be > 0"
    );
    let report = albatross_launch::runtime()?.block_on(bench_coordinator(options))?;
    if json {
        return Ok(format!("{}\n", serde_json::to_string(&report)?));
    }
    Ok(format!("{}\n", serde_json::to_string_pretty(&report)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_cluster_runs_its_rounds() {
        let report = bench_coordinator(BenchOptions { workers: 6, rounds: 3, channels: 2 })
            .await
            .expect("benchmark runs");
        assert_eq!((report.workers, report.quorum_size, report.rounds), (6, 6, 3));
        assert!(report.rounds_per_second > 0.0 && report.quorum_p99_ms >= report.quorum_p50_ms);
        assert!(report.peak_rss_bytes.is_some_and(|b| b > 0));
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!((percentile(&mut v, 0.5), percentile(&mut v, 0.99)), (3.0, 5.0));
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }
}
