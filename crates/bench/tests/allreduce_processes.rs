//! The benchmark across real processes: this test binary re-runs itself as each rank.

use std::io::BufReader;
use std::process::Command;

use albatross_bench::allreduce::{self, BenchOptions};
use albatross_collective::CollectiveConfig;

const RANK_VAR: &str = "ALBATROSS_COLLECTIVE_TEST_RANK";

fn options() -> BenchOptions {
    BenchOptions {
        ranks: 3,
        sizes: vec![4000, 1 << 20],
        iters: 2,
        warmup: 1,
        config: CollectiveConfig { piece_bytes: 64 << 10, ..CollectiveConfig::default() },
        exact: false,
    }
}

/// Rank body when started by the launcher below; a no-op in a normal test run.
#[test]
fn bench_rank_child() {
    let Ok(rank) = std::env::var(RANK_VAR) else { return };
    let rank: usize = rank.parse().expect("rank number");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let input = BufReader::new(std::io::stdin());
    let mut output = std::io::stdout();
    runtime
        .block_on(allreduce::rank_process(&options(), rank, input, &mut output))
        .expect("rank runs");
}

#[test]
fn bench_launches_rank_processes_and_reports_rank_0() {
    if std::env::var(RANK_VAR).is_ok() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let results = allreduce::launch(&options(), |rank| {
        let mut command = Command::new(&exe);
        command
            .args(["--exact", "bench_rank_child", "--nocapture", "--test-threads", "1"])
            .env(RANK_VAR, rank.to_string());
        command
    })
    .expect("bench across processes");
    assert_eq!(results.iter().map(|r| r.bytes).collect::<Vec<_>>(), vec![4000, 1 << 20]);
    assert!(results.iter().all(|r| r.ranks == 3 && r.iters == 2 && r.median_s > 0.0));
}
