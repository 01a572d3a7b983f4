//! The ring of one benchmark run: fill, all-reduce, verify and time, per rank; every rank as a
//! task of this process ([`run_in_process`]).

use std::net::SocketAddr;
use std::sync::Arc;

use albatross_collective::{Collective, CollectiveError, OpContext, default_deadline};
use albatross_proto::domain::{Generation, Member, OpTag, WorkerId, WorkerRef};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::figures::{BenchOptions, BenchResult, BenchWire};

/// Rank `rank`'s input, element `i` being `i % 7 + rank`: small integers, so the sum is exact in
/// f32, in bf16 and in i64. Written a period at a time, so a fill costs about a memcpy (as
/// gloo's baseline `(idx + rank).to(float32)` does): an element-wise modulo took ~50 ms per
/// 48 MiB, and with more ranks than cores the rank that finished an all-reduce first ate into
/// its peers' time with it.
fn fill<T: Copy + From<u8>>(buf: &mut [T], rank: usize) {
    const PERIOD: usize = 7 * 64;
    let pattern: Vec<T> =
        (0..PERIOD).map(|i| T::from(u8::try_from((i % 7) + rank).unwrap_or(u8::MAX))).collect();
    for piece in buf.chunks_mut(PERIOD) {
        piece.copy_from_slice(&pattern[..piece.len()]);
    }
}

fn verify<T: Copy + PartialEq + std::fmt::Display + From<u8>>(
    buf: &[T],
    ranks: usize,
) -> Result<(), CollectiveError> {
    for (i, v) in buf.iter().enumerate() {
        let want = u8::try_from(ranks * (i % 7) + ranks * (ranks - 1) / 2).map(T::from);
        if want.as_ref().ok() != Some(v) {
            return Err(CollectiveError::InvalidArgument(format!(
                "bench verification failed: element {i} is {v}, expected {}",
                ranks * (i % 7) + ranks * (ranks - 1) / 2
            )));
        }
    }
    Ok(())
}

/// A buffer the benchmark can sum: f32 (the configured wire) or i64 (exact mode).
trait BenchBuffer: Copy + PartialEq + std::fmt::Display + From<u8> + Default {
    async fn all_reduce(
        collective: &Collective,
        ctx: &OpContext,
        buf: &mut [Self],
    ) -> Result<(), CollectiveError>;
}

impl BenchBuffer for f32 {
    async fn all_reduce(
        collective: &Collective,
        ctx: &OpContext,
        buf: &mut [f32],
    ) -> Result<(), CollectiveError> {
        collective.all_reduce_sum(ctx, buf).await
    }
}

impl BenchBuffer for i64 {
    async fn all_reduce(
        collective: &Collective,
        ctx: &OpContext,
        buf: &mut [i64],
    ) -> Result<(), CollectiveError> {
        collective.all_reduce_sum_i64(ctx, buf).await
    }
}

fn bench_worker(rank: usize) -> Result<WorkerRef, CollectiveError> {
    let id = WorkerId::new(format!("bench-{rank}"))
        .map_err(|e| CollectiveError::InvalidArgument(e.to_string()))?;
    Ok(WorkerRef { id, incarnation: 1 })
}

/// Members for ranks serving at `addrs` (in rank order).
pub(super) fn members(addrs: &[String]) -> Result<Arc<[Member]>, CollectiveError> {
    addrs
        .iter()
        .enumerate()
        .map(|(rank, address)| {
            Ok(Member { worker: bench_worker(rank)?, address: address.clone(), rank: rank as u32 })
        })
        .collect()
}

/// Everything one rank measures: per size, the timed iterations in seconds.
pub(super) async fn run_rank(
    collective: &Collective,
    members: Arc<[Member]>,
    rank: usize,
    options: &BenchOptions,
) -> Result<Vec<BenchResult>, CollectiveError> {
    if options.exact {
        run_sizes::<i64>(collective, members, rank, options).await
    } else {
        run_sizes::<f32>(collective, members, rank, options).await
    }
}

/// [`run_rank`] with buffers of `T`: each size's buffer holds `bytes / 4` elements (the element
/// count of the f32 buffer of that size).
async fn run_sizes<T: BenchBuffer>(
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
        let mut buf = vec![T::default(); bytes / 4];
        let wire_bytes = std::mem::size_of_val(buf.as_slice());
        let mut times = Vec::with_capacity(options.iters);
        for iter in 0..options.warmup + options.iters {
            fill(&mut buf, rank);
            // A scalar sum lines the ranks up so each timed iteration starts together.
            collective.scalar_sum(&next_ctx(8), &mut [0.0]).await?;
            let ctx = next_ctx(wire_bytes);
            let started = Instant::now();
            T::all_reduce(collective, &ctx, &mut buf).await?;
            let elapsed = started.elapsed().as_secs_f64();
            if iter == 0 || iter + 1 == options.warmup + options.iters {
                verify(&buf, n)?;
            }
            if iter >= options.warmup {
                times.push(elapsed);
            }
        }
        results.push(BenchResult::new(n, buf.len(), BenchWire::of(options), times));
    }
    Ok(results)
}

pub(super) async fn serve(
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

#[cfg(test)]
mod tests {
    use albatross_collective::CollectiveConfig;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_process_bench_verifies_the_sum() {
        let options = BenchOptions {
            ranks: 3,
            sizes: vec![4, 1 << 20],
            iters: 3,
            warmup: 1,
            config: CollectiveConfig { piece_bytes: 64 << 10, ..CollectiveConfig::default() },
            exact: false,
        };
        let results = run_in_process(&options).await.expect("bench runs");
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].bytes, 1 << 20);
        assert!(results.iter().all(|r| r.iters == 3 && r.busbw_gbps > 0.0), "{results:?}");
        let exact = run_in_process(&BenchOptions { exact: true, ..options }).await.expect("i64");
        assert_eq!((exact[1].elements, exact[1].bytes), (1 << 18, 2 << 20));
        assert_eq!(exact[1].wire, BenchWire::I64);
    }

    #[test]
    fn verification_catches_a_wrong_sum() {
        let mut buf = vec![0f32; 10];
        fill(&mut buf, 0);
        assert!(verify(&buf, 1).is_ok());
        buf[3] += 1.0;
        assert!(verify(&buf, 1).is_err_and(|e| e.to_string().contains("element 3")));
        let mut exact = vec![0i64; 10];
        fill(&mut exact, 2);
        assert_eq!(&exact[..3], &[2, 3, 4]);
    }
}
