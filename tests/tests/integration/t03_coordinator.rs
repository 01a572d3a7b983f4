//! The coordinator as a real gRPC server on 127.0.0.1:0: workers join, form a quorum, vote and
//! commit; a worker that stops heartbeating is evicted and the next quorum forms without it; the
//! join token is enforced; a restarted coordinator resumes from its state directory under a
//! higher generation.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use albatross_coordinator::{
    CoordinatorError, CoordinatorOptions, Listeners, fetch_status, status_table,
};
use albatross_proto::domain::{
    BuildInfo, Decision, Heartbeat, HeartbeatAction, HeartbeatReply, JoinAccepted, JoinRequest,
    QuorumOutcome, QuorumRequest, Sha256Digest, StateHash, StepStats, StepTag, Vote, VoteDecision,
    VoteOutcome, WorkerId, WorkerPhase, WorkerRef,
};
use albatross_proto::job::JobSpec;
use albatross_proto::wire::v1 as wire;
use albatross_proto::wire::v1::coordinator_service_client::CoordinatorServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

const TOKEN: &str = "integration-token";

const JOB: &str = r#"
name = "t03"
[model]
preset = "tiny"
[data]
dir = "data"
max_seq_length = 64
[optimizer]
total_steps = 10
warmup_steps = 1
[batch]
global_batch_size = 8
micro_batch_size = 2
[fault_tolerance]
min_workers = 2
max_workers = 4
heartbeat_interval = "100ms"
heartbeat_timeout = "500ms"
step_deadline = "20s"
join_grace = "200ms"
[checkpoint]
every_steps = 5
"#;

struct Running {
    addr: SocketAddr,
    http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), CoordinatorError>>,
}

async fn start(state_dir: &Path) -> Running {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let (addr, http_addr) = (grpc.local_addr().expect("addr"), http.local_addr().expect("addr"));
    let options = CoordinatorOptions {
        job: JobSpec::from_toml_str(JOB, "t03").expect("job"),
        epoch_size: 20,
        listen: addr,
        http: Some(http_addr),
        state_dir: state_dir.to_owned(),
        token: Some(TOKEN.to_owned()),
        data_fingerprint: Some(Sha256Digest::of("t03 data")),
        metrics_log: None,
        events_log: None,
        tls: None,
        ready_file: None,
        health_listen: None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = Listeners { grpc, http: Some(http), health: None };
    let task = tokio::spawn(albatross_coordinator::serve(options, listeners, async {
        let _ = stopped.await;
    }));
    Running { addr, http: http_addr, stop, task }
}

/// A plain HTTP/1.1 GET; returns the whole response (head and body).
async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect http");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response));
    read.await.expect("answered within 5 s").expect("read");
    response
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        result.expect("stops within 5 s").expect("task").expect("serve ended cleanly");
    }
}

type Client = CoordinatorServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
    >,
>;

fn bearer(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let value = format!("Bearer {TOKEN}").parse().map_err(|_| tonic::Status::internal("token"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

async fn client(addr: SocketAddr) -> Client {
    let f: fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> = bearer;
    CoordinatorServiceClient::with_interceptor(channel(addr).await, f)
}

fn worker(id: &str) -> WorkerRef {
    WorkerRef { id: WorkerId::new(id).expect("id"), incarnation: 1 }
}

fn timed<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

async fn join(c: &mut Client, id: &str) -> JoinAccepted {
    let req = JoinRequest {
        worker: worker(id),
        advertise_address: format!("127.0.0.1:{}", 7000 + id.len()),
        build: BuildInfo::current(),
        expected_job_fingerprint: Some(
            JobSpec::from_toml_str(JOB, "t03").expect("job").fingerprint(),
        ),
        data_fingerprint: Some(Sha256Digest::of("t03 data")),
        applied_step: None,
        kernel_set: None,
    };
    let reply =
        c.join(timed(wire::JoinRequest::from(req), Duration::from_secs(5))).await.expect("join");
    JoinAccepted::try_from(reply.into_inner()).expect("valid join response")
}

async fn ask(mut c: Client, id: &str, step: u64, applied: u64, timeout: Duration) -> QuorumOutcome {
    let req = QuorumRequest {
        worker: worker(id),
        step,
        applied_step: applied,
        state_hash: None,
        known_members_generation: albatross_proto::domain::Generation(0),
    };
    let reply = c
        .await_quorum(timed(wire::AwaitQuorumRequest::from(req), timeout))
        .await
        .expect("await quorum");
    QuorumOutcome::try_from(reply.into_inner()).expect("valid outcome")
}

async fn vote(mut c: Client, id: &str, tag: StepTag) -> Result<VoteDecision, tonic::Status> {
    let vote = Vote {
        worker: worker(id),
        tag,
        outcome: VoteOutcome::Ok,
        non_finite: false,
        state_hash: Some(StateHash([0x5a; 32])),
        stats: StepStats { samples: 4, ..StepStats::default() },
    };
    let reply = c.vote(timed(wire::VoteRequest::from(vote), Duration::from_secs(5))).await?;
    Ok(VoteDecision::try_from(reply.into_inner()).expect("valid decision"))
}

async fn beat(c: &mut Client, id: &str, tag: StepTag) -> HeartbeatReply {
    let hb = Heartbeat { worker: worker(id), tag, phase: WorkerPhase::AwaitingQuorum };
    let reply = c
        .heartbeat(timed(wire::HeartbeatRequest::from(hb), Duration::from_secs(2)))
        .await
        .expect("heartbeat");
    HeartbeatReply::try_from(reply.into_inner()).expect("valid heartbeat reply")
}

fn ready(outcome: QuorumOutcome) -> albatross_proto::domain::Quorum {
    match outcome {
        QuorumOutcome::Ready(q) => q,
        other => panic!("expected a quorum, got {other:?}"),
    }
}

#[tokio::test]
async fn workers_join_commit_and_a_silent_worker_is_evicted() {
    let state = tempfile::tempdir().expect("tempdir");
    let server = start(state.path()).await;

    // Without the token nothing gets through.
    let mut anonymous = CoordinatorServiceClient::new(channel(server.addr).await);
    let denied = anonymous.get_status(wire::GetStatusRequest {}).await.expect_err("no token");
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);

    let mut a = client(server.addr).await;
    let mut b = client(server.addr).await;
    let accepted = join(&mut a, "worker-a").await;
    assert_eq!(
        (accepted.generation.0, accepted.committed_step, accepted.resume_from),
        (1, 0, None)
    );
    join(&mut b, "worker-b").await;

    // Both long polls are answered with the same quorum once both asked.
    let timeout = Duration::from_secs(5);
    let (qa, qb) = tokio::join!(
        ask(a.clone(), "worker-a", 1, 0, timeout),
        ask(b.clone(), "worker-b", 1, 0, timeout)
    );
    let (qa, qb) = (ready(qa), ready(qb));
    assert_eq!((qa.tag, qa.rank, qb.rank), (qb.tag, 0, 1));
    assert_eq!(qa.samples.iter().chain(&qb.samples).map(|r| r.len()).sum::<u64>(), 8);

    let (da, db) =
        tokio::join!(vote(a.clone(), "worker-a", qa.tag), vote(b.clone(), "worker-b", qa.tag));
    let (da, db) = (da.expect("vote a"), db.expect("vote b"));
    assert_eq!((da.decision, db.decision), (Decision::Commit, Decision::Commit));
    // A vote for a stale generation is refused with FAILED_PRECONDITION.
    let stale = StepTag { generation: albatross_proto::domain::Generation(0), step: 2 };
    let err = vote(a.clone(), "worker-a", stale).await.expect_err("stale generation");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    // worker-a keeps heartbeating; worker-b goes silent. With min_workers = 2, a's long poll
    // answers NotYet before its deadline, and by then b has been evicted.
    let mut hb = a.clone();
    let tag = qa.tag;
    let heartbeats = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            beat(&mut hb, "worker-a", tag).await;
        }
    });
    let started = tokio::time::Instant::now();
    let outcome = ask(a.clone(), "worker-a", 2, 1, Duration::from_millis(1500)).await;
    assert!(started.elapsed() < Duration::from_millis(1500), "answered before the deadline");
    match outcome {
        QuorumOutcome::NotYet(n) => {
            assert_eq!((n.live_workers, n.min_workers), (1, 2), "{n:?}");
            assert_eq!(n.reason, "1 of 1 live workers are ready; min_workers is 2");
        }
        other => panic!("expected NotYet, got {other:?}"),
    }
    assert_eq!(beat(&mut b, "worker-b", tag).await.action, HeartbeatAction::Rejoin);

    // A newcomer forms the next quorum with worker-a and heals from it first.
    let mut c = client(server.addr).await;
    join(&mut c, "worker-c").await;
    let (qa2, qc) = tokio::join!(
        ask(a.clone(), "worker-a", 2, 1, timeout),
        ask(c.clone(), "worker-c", 1, 0, timeout)
    );
    let (qa2, qc) = (ready(qa2), ready(qc));
    assert_eq!((qa2.tag.step, qa2.tag.generation.0), (2, 2));
    let heal = qc.heal.expect("worker-c must heal");
    assert_eq!((heal.source.worker, heal.target_step), (worker("worker-a"), 1));

    let status = a.get_status(wire::GetStatusRequest {}).await.expect("status").into_inner();
    let ids: Vec<String> = status
        .members
        .iter()
        .filter_map(|m| m.member.as_ref()?.worker.as_ref().map(|w| w.worker_id.clone()))
        .collect();
    assert_eq!(ids, ["worker-a", "worker-c"]);
    assert_eq!((status.generation, status.committed_step, status.job_name.as_str()), (2, 1, "t03"));
    heartbeats.abort();

    // The HTTP side: Prometheus text, status JSON and the self-contained page.
    let metrics = http_get(server.http, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in ["albatross_committed_step 1", "albatross_generation 2", "albatross_members 2"] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }
    assert!(metrics.contains("albatross_failure_detection_seconds"), "{metrics}");
    let json = http_get(server.http, "/status").await;
    assert!(
        json.contains(r#""committed_step":1"#) && json.contains(r#""worker_id":"worker-c""#),
        "{json}"
    );
    assert!(json.contains("worker-b#1 evicted: no heartbeat for"), "{json}");
    // `albatross status` goes through gRPC with the token.
    let url = format!("http://{}", server.addr);
    let status = fetch_status(&url, Some(TOKEN), Duration::from_secs(5)).await.expect("status");
    let table = status_table(&status);
    assert!(table.contains("generation 2 · step 1/10"), "{table}");
    assert!(table.contains("worker-c#1"), "{table}");
    let denied = fetch_status(&url, None, Duration::from_secs(5)).await.expect_err("no token");
    assert!(denied.to_string().contains("Unauthenticated"), "{denied}");
    let page = http_get(server.http, "/").await;
    assert!(
        page.contains("<canvas") && !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    server.stop().await;

    // A restarted coordinator resumes the committed step under a higher generation.
    let server = start(state.path()).await;
    let mut a = client(server.addr).await;
    let status = a.get_status(wire::GetStatusRequest {}).await.expect("status").into_inner();
    assert_eq!((status.generation, status.committed_step), (3, 1));
    assert_eq!(status.cursor.map(|c| (c.epoch, c.next_sample)), Some((0, 8)));
    assert_eq!(beat(&mut a, "worker-a", tag).await.action, HeartbeatAction::Rejoin);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_precise_status_codes_and_polls_answer_before_the_deadline() {
    let state = tempfile::tempdir().expect("tempdir");
    let server = start(state.path()).await;
    let mut a = client(server.addr).await;
    let mut b = client(server.addr).await;

    // Malformed, unknown and oversize requests.
    let bad_id = wire::JoinRequest {
        worker: Some(wire::WorkerRef { worker_id: "Bad_Id".into(), incarnation: 1 }),
        ..wire::JoinRequest::default()
    };
    let err = a.join(bad_id).await.expect_err("invalid");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let unknown = QuorumRequest {
        worker: worker("nobody"),
        step: 1,
        applied_step: 0,
        state_hash: None,
        known_members_generation: albatross_proto::domain::Generation(0),
    };
    let err = a.await_quorum(wire::AwaitQuorumRequest::from(unknown)).await.expect_err("unknown");
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::NotFound, "worker nobody is not registered: join first")
    );
    let huge =
        wire::LeaveRequest { worker: Some(worker("worker-a").into()), reason: "x".repeat(1 << 20) };
    let err = a.leave(huge).await.expect_err("oversize");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");

    join(&mut a, "worker-a").await;
    join(&mut b, "worker-b").await;
    let timeout = Duration::from_secs(5);
    let (qa, qb) = tokio::join!(
        ask(a.clone(), "worker-a", 1, 0, timeout),
        ask(b.clone(), "worker-b", 1, 0, timeout)
    );
    let (qa, _) = (ready(qa), ready(qb));

    // A vote waits for the others, but answers before the caller's deadline.
    let lone = Vote {
        worker: worker("worker-a"),
        tag: qa.tag,
        outcome: VoteOutcome::Ok,
        non_finite: false,
        state_hash: Some(StateHash([0xa; 32])),
        stats: StepStats::default(),
    };
    let started = tokio::time::Instant::now();
    let err = a
        .vote(timed(wire::VoteRequest::from(lone), Duration::from_millis(500)))
        .await
        .expect_err("pending");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        (err.code(), err.message()),
        (
            tonic::Code::DeadlineExceeded,
            "no decision yet: 1 of 2 members voted; vote again to keep waiting"
        )
    );

    // b's state differs: the step aborts and names b, whichever member asks.
    let mut divergent = Vote {
        worker: worker("worker-b"),
        tag: qa.tag,
        outcome: VoteOutcome::Ok,
        non_finite: false,
        state_hash: Some(StateHash([0xb; 32])),
        stats: StepStats::default(),
    };
    let reply =
        b.vote(timed(wire::VoteRequest::from(divergent.clone()), timeout)).await.expect("vote b");
    let decision = VoteDecision::try_from(reply.into_inner()).expect("decision");
    assert_eq!(decision.decision, Decision::Abort);
    // With two members the tie goes to rank 0, so worker-b is the divergent one.
    assert_eq!(decision.divergent, vec![worker("worker-b")]);
    // Voting again under the aborted generation gets the same answer; a different step is refused.
    divergent.tag.step = 2;
    let err =
        b.vote(timed(wire::VoteRequest::from(divergent), timeout)).await.expect_err("wrong step");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    server.stop().await;
}
