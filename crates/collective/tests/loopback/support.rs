//! Ranks served on 127.0.0.1:0 in this process, each with its own `Collective`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use albatross_collective::{Collective, CollectiveConfig, OpContext};
use albatross_proto::domain::{Generation, Member, OpTag, WorkerId, WorkerRef};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Rank {
    pub collective: Collective,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Rank {
    /// Stop serving: refuse new connections and streams.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
        let _ = self.task.await;
    }
}

pub struct Ring {
    pub ranks: Vec<Rank>,
    pub members: Arc<[Member]>,
}

pub fn worker(i: usize) -> WorkerRef {
    WorkerRef { id: WorkerId::new(format!("w{i}")).expect("valid id"), incarnation: 1 }
}

pub fn tag(generation: u64, op_seq: u64) -> OpTag {
    OpTag { generation: Generation(generation), step: 7, op_seq }
}

pub async fn start(n: usize, config: CollectiveConfig) -> Ring {
    let mut ranks = Vec::new();
    let mut members = Vec::new();
    for i in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let collective = Collective::new(config.clone()).expect("config");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            config
                .server
                .server_builder()
                .add_service(collective.peer_server().into_service())
                .serve_with_incoming_shutdown(
                    albatross_proto::services::incoming(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        members.push(Member { worker: worker(i), address: addr.to_string(), rank: i as u32 });
        ranks.push(Rank { collective, addr, stop: Some(stop), task });
    }
    Ring { ranks, members: members.into() }
}

impl Ring {
    pub fn ctx(&self, rank: usize, tag: OpTag, timeout: Duration) -> OpContext {
        OpContext {
            tag,
            members: Arc::clone(&self.members),
            rank: rank as u32,
            deadline: Instant::now() + timeout,
            cancel: CancellationToken::new(),
        }
    }

    /// Run `all_reduce_sum` on every rank concurrently; returns each rank's buffer.
    pub async fn all_reduce(&self, inputs: Vec<Vec<f32>>, tag: OpTag) -> Vec<Vec<f32>> {
        self.on_every_rank(inputs, tag, |collective, ctx, mut buf| async move {
            collective.all_reduce_sum(&ctx, &mut buf).await.map(|()| buf)
        })
        .await
    }

    /// Run `all_reduce_sum_i64` on every rank concurrently; returns each rank's buffer.
    pub async fn all_reduce_i64(&self, inputs: Vec<Vec<i64>>, tag: OpTag) -> Vec<Vec<i64>> {
        self.on_every_rank(inputs, tag, |collective, ctx, mut buf| async move {
            collective.all_reduce_sum_i64(&ctx, &mut buf).await.map(|()| buf)
        })
        .await
    }

    /// Runs `op` on every rank's input concurrently (20 s deadline); each rank's result.
    async fn on_every_rank<T, F, Fut>(&self, inputs: Vec<Vec<T>>, tag: OpTag, op: F) -> Vec<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(Collective, OpContext, Vec<T>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, albatross_collective::CollectiveError>>
            + Send
            + 'static,
    {
        let mut tasks = Vec::new();
        for (rank, buf) in inputs.into_iter().enumerate() {
            let ctx = self.ctx(rank, tag, Duration::from_secs(20));
            tasks.push(tokio::spawn(op(self.ranks[rank].collective.clone(), ctx, buf)));
        }
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("join").expect("all-reduce succeeds"));
        }
        out
    }
}

pub use albatross_collective::testing::inputs;

pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A small piece size so that every test pipelines many pieces.
pub fn small_pieces() -> CollectiveConfig {
    CollectiveConfig { piece_bytes: 16 << 10, ..CollectiveConfig::default() }
}
