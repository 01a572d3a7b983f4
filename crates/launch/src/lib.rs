//! Local clusters of `albatross` processes: `albatross launch` and everything it is made of.
//!
//! - [`run`]: a launch from its options to its report ([`launch`]), and [`run_cluster`], one
//!   cluster run that `bench train` shares;
//! - [`cluster`]: the coordinator and worker processes, supervised, restarted, and hit with
//!   scheduled faults;
//! - [`chaos`]: the fault schedule (`--chaos`), checkpoint damage, and the recovery report;
//! - [`netfault`]: TCP proxies that delay, drop or cut a worker's links;
//! - [`summary`]: the metrics log, the run summary and its exact sample ledger;
//! - [`expect`]: `--expect-hash` and `--reference`, a run's final hash and metrics log
//!   checked against an earlier run's, to the first divergent step;
//! - [`demo`]: the bundled corpus and tokenizer and the demo job;
//! - [`plot`]: loss.png; [`allocator`]: malloc settings for child processes; [`signals`]:
//!   the runtime and the stop signal; [`fleet`] and [`run_dir`]: who runs and where it writes.
//!
//! The launcher starts copies of the program that calls it (`std::env::current_exe`), which
//! must therefore be the `albatross` binary (or a test build of it).
//!
//! Imports run one way: `run` → `cluster` → `chaos` → `netfault`, `summary`, `fleet`;
//! `summary` → `expect` → `jsonl`; nothing imports `run`.

pub mod allocator;
pub mod chaos;
pub mod cluster;
pub mod demo;
pub mod expect;
pub mod fleet;
pub mod jsonl;
pub mod netfault;
pub mod plot;
pub mod run;
pub mod run_dir;
pub mod signals;
pub mod summary;

pub use fleet::Fleet;
pub use run::{ClusterRun, LaunchOptions, launch, run_cluster};
pub use run_dir::RunDir;
pub use signals::{runtime, shutdown_signal};
