//! `albatross launch --chaos SPEC`: faults injected into the local cluster on a schedule, and
//! the recovery report built afterwards from what the cluster itself logged.
//!
//! A schedule is a comma-separated list of `KIND:TARGET@step=N[+DURATION]`:
//!
//! - `kill:worker-1@step=30`: SIGKILL the worker once step 30 committed; the launcher starts it
//!   again under the same name and it heals from a live peer; `kill:worker-1@step=30+1.5s`:
//!   1.5 s after step 30 committed, in the middle of step 31 (`term` takes the same delay);
//! - `pause:worker-0@step=50+5s`: SIGSTOP for 5 s, then SIGCONT (a stall, e.g. swap or GC);
//! - `term:worker-2@step=60`: SIGTERM (preemption: a graceful leave), then started again;
//! - `kill:coordinator@step=80`: SIGKILL the coordinator and start it again on the same address
//!   and state directory;
//! - `partition:worker-2@step=100+10s`: for 10 s, packets to the worker and between it and the
//!   coordinator vanish (its links run through the launcher's fault proxies, see `netfault`);
//!   `partition:coordinator@step=N+10s` cuts every worker's link to the coordinator;
//! - `delay:worker-1@step=120+200ms[~50ms][/30s]`: 200 ms (± jitter) more latency on the
//!   worker's links, for 30 s (default 10 s); `loss:worker-1@step=120+5%[/30s]`: TCP-like loss
//!   (a lost segment stalls its stream for a retransmission timeout);
//! - `corrupt-checkpoint:latest@end`: once training ended, damage the newest checkpoint and
//!   check that a restart would name it and resume from the previous one;
//!
//! or `random:rate=R,seed=S[,kinds=kill+pause+term+coordinator+partition+delay]`: on average R
//! faults per 100 steps, reproducible from the seed (default kinds: the first four).

mod damage;
mod report;
mod schedule;

pub use damage::{CheckpointDamage, corrupt_newest_checkpoint};
pub use report::{
    ChaosReport, Charge, ChargedLedger, FaultOutcome, ledger_by_fault, report, table,
};
pub use schedule::{AT_END, Fault, FaultKind, Injection, Target, parse};
