//! The coordinator as a real server on 127.0.0.1:0: the ready file names the bound ports, every
//! decided step (commit or skip) reaches the metrics log through the actor, and the start and
//! the core's decisions reach the events log.

use std::path::Path;
use std::time::Duration;

use albatross_proto::domain::{
    BuildInfo, Decision, JoinAccepted, JoinRequest, Quorum, QuorumOutcome, QuorumRequest,
    StateHash, StepStats, Vote, VoteDecision, VoteOutcome,
};
use albatross_proto::wire::v1 as wire;
use albatross_proto::wire::v1::coordinator_service_client::CoordinatorServiceClient;
use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use super::*;
use crate::core_test::{EPOCH, job, w};
use crate::ready_file::ReadyInfo;

type Client = CoordinatorServiceClient<Channel>;

/// Wait until the coordinator has written its ready file, as a launcher does. It appears whole
/// (renamed into place), so any content read is complete.
async fn ready_info(path: &Path) -> anyhow::Result<ReadyInfo> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).with_context(|| format!("ready file {text:?}"));
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no ready file after 20s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn join(c: &mut Client, id: &str) -> anyhow::Result<JoinAccepted> {
    let req = JoinRequest {
        worker: w(id, 1),
        advertise_address: format!("{id}:7000"),
        build: BuildInfo::current(),
        expected_job_fingerprint: None,
        data_fingerprint: None,
        applied_step: None,
        kernel_set: None,
    };
    let reply = c.join(wire::JoinRequest::from(req)).await.context("join")?;
    Ok(JoinAccepted::try_from(reply.into_inner())?)
}

async fn quorum(mut c: Client, id: &str, step: u64) -> anyhow::Result<Quorum> {
    let req = QuorumRequest {
        worker: w(id, 1),
        step,
        applied_step: step - 1,
        state_hash: None,
        known_members_generation: albatross_proto::domain::Generation(0),
    };
    let reply = c.await_quorum(wire::AwaitQuorumRequest::from(req)).await.context("quorum")?;
    match QuorumOutcome::try_from(reply.into_inner())? {
        QuorumOutcome::Ready(q) => Ok(q),
        other => anyhow::bail!("{id} got no quorum for step {step}: {other:?}"),
    }
}

async fn vote(
    mut c: Client,
    id: &str,
    q: &Quorum,
    non_finite: bool,
) -> anyhow::Result<VoteDecision> {
    let stats = StepStats {
        mlm_loss_sum: 12.0,
        sop_loss_sum: 3.0,
        masked_tokens: 20,
        mlm_correct: 5,
        sop_correct: 4,
        samples: 6,
        tokens: 384,
        grad_norm: 2.0,
        compute_ms: 50,
        reduce_ms: 5,
    };
    let vote = Vote {
        worker: w(id, 1),
        tag: q.tag,
        outcome: VoteOutcome::Ok,
        non_finite,
        state_hash: Some(StateHash([5; 32])),
        stats,
    };
    let reply = c.vote(wire::VoteRequest::from(vote)).await.context("vote")?;
    Ok(VoteDecision::try_from(reply.into_inner())?)
}

/// Both members run one step; `a` reports non-finite values when `skip`.
async fn step(c: &Client, n: u64, skip: bool) -> anyhow::Result<Decision> {
    let (qa, qb) = tokio::join!(quorum(c.clone(), "a", n), quorum(c.clone(), "b", n));
    let (qa, qb) = (qa?, qb?);
    let (da, db) = tokio::join!(vote(c.clone(), "a", &qa, skip), vote(c.clone(), "b", &qb, false));
    let (da, db) = (da?, db?);
    anyhow::ensure!(da.decision == db.decision, "members told apart: {da:?} vs {db:?}");
    Ok(da.decision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_file_names_the_bound_ports_and_decided_steps_are_logged() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ready = tmp.path().join("ready.json");
    let metrics = tmp.path().join("metrics.jsonl");
    let events = tmp.path().join("events.jsonl");
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
    let options = CoordinatorOptions {
        job: job(),
        epoch_size: EPOCH,
        // The listeners passed to `serve` are what count; the ready file must name those.
        listen: "127.0.0.1:0".parse()?,
        http: None,
        state_dir: tmp.path().join("state"),
        token: None,
        data_fingerprint: None,
        metrics_log: Some(metrics.clone()),
        events_log: Some(events.clone()),
        tls: None,
        ready_file: Some(ready.clone()),
        health_listen: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(serve(options, Listeners { grpc, http: Some(http), health: None }, async {
            let _ = stopped.await;
        }));

    let info = ready_info(&ready).await?;
    assert_eq!((info.grpc, info.http, info.pid), (grpc_addr, Some(http_addr), std::process::id()));
    let mut client = Client::connect(format!("http://{}", info.grpc)).await?;
    let accepted = join(&mut client, "a").await?;
    assert_eq!(accepted.coordinator_instance, info.instance);
    join(&mut client, "b").await?;
    assert_eq!(step(&client, 1, false).await?, Decision::Commit);
    assert_eq!(step(&client, 2, true).await?, Decision::Skip);
    let status = client.get_status(wire::GetStatusRequest {}).await?.into_inner();
    assert_eq!((status.committed_step, status.skipped_steps), (2, 1));
    let _ = stop.send(());
    server.await??;

    let text = std::fs::read_to_string(&metrics)?;
    let lines: Vec<serde_json::Value> =
        text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{text}");
    let (commit, skip) = (&lines[0], &lines[1]);
    assert_eq!((commit["step"].as_u64(), commit["decision"].as_str()), (Some(1), Some("commit")));
    // Two members' figures summed: 30 loss over 12 samples, 10 of 40 masked tokens right.
    assert_eq!((commit["loss"].as_f64(), commit["mlm_accuracy"].as_f64()), (Some(2.5), Some(0.25)));
    assert_eq!((commit["members"].as_u64(), commit["samples"].as_u64()), (Some(2), Some(12)));
    assert_eq!(commit["cursor"], serde_json::json!({ "epoch": 0, "next_sample": 12 }));
    assert_eq!((skip["step"].as_u64(), skip["decision"].as_str()), (Some(2), Some("skip")));
    assert_eq!(skip["generation"], commit["generation"], "a skip keeps the generation");
    assert_eq!(
        (skip["skipped_steps"].as_u64(), skip["aborted_steps"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(skip["cursor"], serde_json::json!({ "epoch": 1, "next_sample": 4 }));

    let text = std::fs::read_to_string(&events)?;
    let events: Vec<serde_json::Value> =
        text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["event"] == kind).collect()
    };
    let started = &events[0];
    assert_eq!(started["event"], "started", "{text}");
    assert_eq!(started["instance"].as_str(), Some(info.instance.as_str()));
    assert_eq!(started["committed_step"].as_u64(), Some(0));
    let joined: Vec<_> = of("joined").iter().map(|e| e["worker"].clone()).collect();
    assert_eq!(joined, [serde_json::json!("a#1"), serde_json::json!("b#1")], "{text}");
    let quorums = of("quorum_formed");
    let steps: Vec<_> = quorums.iter().map(|e| e["tag"]["step"].as_u64()).collect();
    assert_eq!(steps, [Some(1), Some(2)], "{text}");
    assert_eq!(quorums[0]["members"], serde_json::json!(["a#1", "b#1"]));
    let committed = of("committed");
    assert_eq!(committed.len(), 1, "{text}");
    assert_eq!(committed[0]["tag"]["step"].as_u64(), Some(1));
    assert_eq!(committed[0]["tag"]["generation"], commit["generation"]);
    assert_eq!(committed[0]["cursor"], serde_json::json!({ "epoch": 0, "next_sample": 12 }));
    let skipped = of("skipped");
    assert_eq!(skipped.len(), 1, "{text}");
    assert_eq!(skipped[0]["tag"]["step"].as_u64(), Some(2));
    for event in &events {
        assert!(event["unix_ms"].as_u64().is_some_and(|ms| ms > 0), "{event}");
        assert!(event["generation"].as_u64().is_some_and(|g| g > 0), "{event}");
    }
    Ok(())
}
