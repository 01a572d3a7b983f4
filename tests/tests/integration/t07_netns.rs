//! Real network partitions: the coordinator and each worker run in their own Linux network
//! namespace on a private bridge (`albatross_tests::Testbed`), and partitions DROP packets in
//! the bridge, so the processes see silence, not refused connections, and must find out through
//! heartbeats and deadlines. Scenarios: one worker isolated, the coordinator isolated, and the
//! ring split in two. For each: the side with the coordinator (and `min_workers`) goes on, the
//! other side applies nothing, every step commits at most once with one member set, the sample
//! ledger is exact, and after healing every replica ends with the same state hash.
//!
//! Needs root (network namespaces, nftables); fails loudly, never skips, without it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use albatross_tests::{Cluster, Proc, Testbed, unix_ms};
use serde_json::Value;

use super::t05_cluster::{
    LONG, assert_exact_ledger, assert_replicas_agree, cluster, finish, job, serial,
};

/// Quick failure detection, so a partition is noticed within seconds.
const FAULT_TOLERANCE: &str = "heartbeat_interval = \"500ms\"\nheartbeat_timeout = \"2s\"\n";
/// Steps per job when a side trains on during the partition: enough that the job is still
/// running after the partition heals and the cut-off side has rejoined, so every replica takes
/// part at the end. On 2 cores the rejoin comes at about step 60 (2 workers commit about 40
/// steps during the partition); this leaves room for a machine twice as fast.
const STEPS: u64 = 150;
/// Steps per job when nothing commits during the partition (the coordinator is cut off).
const SHORT_STEPS: u64 = 60;
/// How long each partition lasts: well past the heartbeat timeout, so the coordinator evicts
/// whoever it cannot hear and the cut-off side has time to (fail to) make progress.
const HOLD: Duration = Duration::from_secs(5);
/// Replies already delivered when the partition starts may still be acted on; after this the
/// cut-off side must be frozen.
const SETTLE: Duration = Duration::from_secs(1);
/// Deadline for one phase of a scenario (detect, heal, converge).
const PHASE: Duration = Duration::from_secs(30);
const COORDINATOR: &str = "coordinator";

/// One cluster in its testbed. Fields drop in order: processes first, then the namespaces they
/// ran in, then their files.
struct Net {
    coordinator: Proc,
    workers: Vec<Proc>,
    c: Cluster,
    bed: Testbed,
    _dir: tempfile::TempDir,
    steps: u64,
}

/// Starts the coordinator and `workers` workers (`worker-0`, …), each in its own namespace,
/// serving on its namespace address.
fn start(workers: usize, min_workers: u32, steps: u64) -> Net {
    let names: Vec<String> = (0..workers).map(|i| format!("worker-{i}")).collect();
    let mut hosts = vec![COORDINATOR];
    hosts.extend(names.iter().map(String::as_str));
    let bed = Testbed::new(&hosts)
        .unwrap_or_else(|e| panic!("cannot build the network-namespace testbed: {e:#}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cluster(dir.path(), &job(steps, min_workers, 1000, FAULT_TOLERANCE));
    let listen = format!("{}:0", bed.addr(COORDINATOR));
    let (coordinator, url) =
        c.coordinator_with(&listen, &|cmd| bed.wrap(COORDINATOR, &cmd)).expect("coordinator");
    let workers = names
        .iter()
        .map(|n| {
            let listen = format!("{}:0", bed.addr(n));
            c.worker_with(n, &url, None, &listen, &|cmd| bed.wrap(n, &cmd)).expect("worker")
        })
        .collect();
    Net { coordinator, workers, c, bed, _dir: dir, steps }
}

impl Net {
    fn worker(&self, name: &str) -> &Proc {
        self.workers.iter().find(|p| p.name == name).expect("a worker of the test")
    }

    /// Polls `probe` until it gives a value; after `limit` fails with `what` and every log.
    fn wait<T>(&self, what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let until = Instant::now() + limit;
        loop {
            if let Some(value) = probe() {
                return value;
            }
            if Instant::now() > until {
                panic!("{what}: not within {limit:?}\n{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn diagnostics(&self) -> String {
        let mut text = format!("last step {}; switch rules:\n", self.c.last_step());
        text += &self.bed.rules().unwrap_or_else(|e| format!("{e:#}"));
        for p in std::iter::once(&self.coordinator).chain(&self.workers) {
            let log = p.log_text();
            let lines: Vec<&str> = log.lines().collect();
            text += &format!("\n--- {} (last 40 lines)\n", p.name);
            text += &lines[lines.len().saturating_sub(40)..].join("\n");
        }
        text
    }

    /// The first commit after `since` (Unix ms) that `accept`s.
    fn commit_after(&self, what: &str, since: u64, accept: impl Fn(&Commit) -> bool) -> Commit {
        self.wait(what, PHASE, || commits(&self.c).into_iter().find(|c| c.at > since && accept(c)))
    }
}

/// The newest step `p` applied, from its log (commits, skips and heals).
fn applied_step(p: &Proc) -> u64 {
    p.log_text()
        .lines()
        .filter(|l| {
            l.contains("step committed")
                || l.contains("step skipped")
                || l.contains("healed from a live peer")
        })
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("step=")))
        .filter_map(|s| s.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

fn heals(p: &Proc) -> usize {
    p.log_text().matches("healed from a live peer").count()
}

/// A committed step, from the coordinator's events log, with the member set of its quorum.
#[derive(Debug, Clone)]
struct Commit {
    step: u64,
    generation: u64,
    at: u64,
    /// Worker names without incarnations.
    members: BTreeSet<String>,
}

impl Commit {
    fn has(&self, worker: &str) -> bool {
        self.members.contains(worker)
    }
}

fn tag(line: &Value) -> (u64, u64) {
    (
        line["tag"]["generation"].as_u64().expect("tag.generation"),
        line["tag"]["step"].as_u64().expect("tag.step"),
    )
}

/// Every member set a quorum was formed with, per step tag.
fn quorums(c: &Cluster) -> BTreeMap<(u64, u64), BTreeSet<BTreeSet<String>>> {
    let mut sets: BTreeMap<(u64, u64), BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for line in c.events().iter().filter(|l| l["event"] == "quorum_formed") {
        let members = line["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| m.as_str().expect("member").split('#').next().unwrap_or("").to_owned())
            .collect();
        sets.entry(tag(line)).or_default().insert(members);
    }
    sets
}

fn commits(c: &Cluster) -> Vec<Commit> {
    let quorums = quorums(c);
    c.events()
        .iter()
        .filter(|l| l["event"] == "committed")
        .map(|l| {
            let (generation, step) = tag(l);
            let members = quorums
                .get(&(generation, step))
                .and_then(|sets| sets.first().cloned())
                .unwrap_or_default();
            Commit { step, generation, at: l["unix_ms"].as_u64().expect("unix_ms"), members }
        })
        .collect()
}

/// No split brain: every step committed (or skipped) at most once, under one quorum whose
/// member set is unique for its tag, and the metrics log agrees on generation and size.
fn assert_no_split_brain(c: &Cluster) {
    let quorums = quorums(c);
    let mut seen = BTreeSet::new();
    for line in c.events().iter().filter(|l| l["event"] == "committed" || l["event"] == "skipped") {
        let (generation, step) = tag(line);
        assert!(seen.insert(step), "step {step} decided twice: {line}");
        let sets = quorums.get(&(generation, step));
        assert_eq!(
            sets.map(BTreeSet::len),
            Some(1),
            "step {step} (g{generation}) needs exactly one quorum member set: {sets:?}"
        );
    }
    let by_step: BTreeMap<u64, Commit> = commits(c).into_iter().map(|k| (k.step, k)).collect();
    for line in c.metrics() {
        let step = line["step"].as_u64().expect("step");
        let commit = by_step.get(&step).unwrap_or_else(|| panic!("no event for step {step}"));
        assert_eq!(line["generation"].as_u64(), Some(commit.generation), "{line}");
        assert_eq!(line["members"].as_u64(), Some(commit.members.len() as u64), "{line}");
    }
}

/// The end of every scenario: the job finishes on every worker with one state hash, the ledger
/// is exact and nothing was decided twice.
fn assert_converged(net: &mut Net, mend: u64) {
    finish(&mut net.workers);
    let after: Vec<u64> = net
        .c
        .metrics()
        .iter()
        .filter_map(|l| l["unix_ms"].as_u64())
        .filter(|t| *t > mend)
        .collect();
    if let (Some(first), Some(last)) = (after.first(), after.last()) {
        eprintln!(
            "  after the heal: {} steps in {:.1} s ({:.1} steps/s from the first)",
            after.len(),
            ms_between(mend, *last) as f64 / 1000.0,
            (after.len() - 1) as f64 * 1000.0 / ms_between(*first, *last).max(1) as f64
        );
    }
    let names: Vec<&str> = net.workers.iter().map(|p| p.name.as_str()).collect();
    let hash = assert_replicas_agree(&net.c, &names, net.steps);
    assert_exact_ledger(&net.c, net.steps);
    assert_no_split_brain(&net.c);
    eprintln!("  every replica at step {} with state hash {hash}", net.steps);
}

fn ms_between(from: u64, to: u64) -> u64 {
    to.saturating_sub(from)
}

#[test]
fn an_isolated_worker_stops_while_the_majority_trains_then_heals_and_rejoins() {
    let _serial = serial();
    let started = Instant::now();
    let mut net = start(3, 2, STEPS);
    let victim = "worker-2";
    net.wait("all three train", LONG, || {
        commits(&net.c).iter().any(|k| k.members.len() == 3 && k.step >= 5).then_some(())
    });
    let heals_before = heals(net.worker(victim));

    let cut = unix_ms();
    net.bed.isolate(victim).expect("isolate");
    let detected = net.commit_after("the majority commits without the victim", cut, |k| {
        !k.has(victim) && k.members.len() == 2
    });
    std::thread::sleep(SETTLE.saturating_sub(Duration::from_millis(ms_between(cut, unix_ms()))));
    let frozen = applied_step(net.worker(victim));
    // Hold the partition: the majority keeps committing, the victim must not move.
    net.wait("the majority keeps committing", PHASE, || {
        (net.c.last_step() >= detected.step + 10 && unix_ms() >= cut + HOLD.as_millis() as u64)
            .then_some(())
    });
    assert_eq!(applied_step(net.worker(victim)), frozen, "the isolated worker made progress");
    let mend = unix_ms();
    let during: Vec<Commit> =
        commits(&net.c).into_iter().filter(|k| k.at > cut && k.at <= mend).collect();
    assert!(
        during.iter().filter(|k| k.at >= detected.at).all(|k| !k.has(victim)),
        "a commit during the partition included the isolated worker: {during:?}"
    );
    assert!(net.c.last_step() < STEPS - 20, "the job is too short to see the rejoin");

    net.bed.heal().expect("heal");
    net.wait("the isolated worker heals from a peer", PHASE, || {
        (heals(net.worker(victim)) > heals_before).then_some(())
    });
    let healed_at = unix_ms();
    let rejoined = net.commit_after("a commit with the victim again", mend, |k| k.has(victim));
    eprintln!(
        "isolate {victim}: detected (first commit without it) after {} ms (eviction after {:?} \
         ms); during the partition the majority committed {} steps, the isolated worker 0 \
         (stayed at step {frozen}); after heal it healed from a peer in {} ms and voted in a \
         commit (step {}) {} ms after the heal",
        ms_between(cut, detected.at),
        eviction_ms(&net.c, victim, cut),
        during.len(),
        ms_between(mend, healed_at),
        rejoined.step,
        ms_between(mend, rejoined.at),
    );
    assert_converged(&mut net, mend);
    eprintln!("  scenario took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn an_isolated_coordinator_stops_every_commit_until_the_network_heals() {
    let _serial = serial();
    let started = Instant::now();
    let mut net = start(3, 2, SHORT_STEPS);
    net.wait("all three train", LONG, || {
        commits(&net.c).iter().any(|k| k.members.len() == 3 && k.step >= 5).then_some(())
    });

    let cut = unix_ms();
    net.bed.isolate(COORDINATOR).expect("isolate");
    std::thread::sleep(SETTLE);
    let frozen_lines = net.c.metrics().len();
    let frozen_step = net.c.last_step();
    // Past the heartbeat timeout: the coordinator hears no one, the workers hear no
    // coordinator. Nothing may commit, and no worker may apply a step it did not commit.
    std::thread::sleep(HOLD.saturating_sub(SETTLE));
    let lines = net.c.metrics();
    assert_eq!(lines.len(), frozen_lines, "the metrics log grew while the coordinator was cut off");
    let late: Vec<&Value> = lines
        .iter()
        .filter(|l| l["unix_ms"].as_u64().is_some_and(|t| t > cut + SETTLE.as_millis() as u64))
        .collect();
    assert!(late.is_empty(), "steps committed during the partition: {late:?}");
    for w in &net.workers {
        assert!(applied_step(w) <= frozen_step, "{} applied an uncommitted step", w.name);
    }
    let last_before = lines.last().and_then(|l| l["unix_ms"].as_u64()).unwrap_or(cut);

    let mend = unix_ms();
    net.bed.heal().expect("heal");
    let again = net.commit_after("a commit after the heal", mend, |_| true);
    let full = net.commit_after("all three commit together again", mend, |k| k.members.len() == 3);
    eprintln!(
        "isolate the coordinator: last commit {} ms before the cut, then none for {} \
         ms (metrics log frozen at {frozen_lines} lines, step {frozen_step}); workers evicted \
         after {:?} ms; after heal: first commit (step {}, {} members) {} ms, all three (step \
         {}) {} ms",
        ms_between(last_before, cut),
        ms_between(last_before, mend),
        eviction_ms(&net.c, "worker-0", cut),
        again.step,
        again.members.len(),
        ms_between(mend, again.at),
        full.step,
        ms_between(mend, full.at),
    );
    assert_converged(&mut net, mend);
    eprintln!("  scenario took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_split_ring_trains_on_the_coordinator_side_only_and_reunites() {
    let _serial = serial();
    let started = Instant::now();
    let mut net = start(4, 2, STEPS);
    let (near, far) = (["worker-0", "worker-1"], ["worker-2", "worker-3"]);
    net.wait("all four train", LONG, || {
        commits(&net.c).iter().any(|k| k.members.len() == 4 && k.step >= 5).then_some(())
    });
    let heals_before: Vec<usize> = far.iter().map(|w| heals(net.worker(w))).collect();

    let cut = unix_ms();
    net.bed.partition(&[&[COORDINATOR, near[0], near[1]], &far]).expect("partition");
    let detected = net.commit_after("the coordinator's side commits alone", cut, |k| {
        k.members == near.iter().map(|w| (*w).to_owned()).collect()
    });
    std::thread::sleep(SETTLE.saturating_sub(Duration::from_millis(ms_between(cut, unix_ms()))));
    let frozen: Vec<u64> = far.iter().map(|w| applied_step(net.worker(w))).collect();
    net.wait("the coordinator's side keeps committing", PHASE, || {
        (net.c.last_step() >= detected.step + 10 && unix_ms() >= cut + HOLD.as_millis() as u64)
            .then_some(())
    });
    let now: Vec<u64> = far.iter().map(|w| applied_step(net.worker(w))).collect();
    assert_eq!(now, frozen, "the side without the coordinator made progress");
    let mend = unix_ms();
    let during: Vec<Commit> =
        commits(&net.c).into_iter().filter(|k| k.at > cut && k.at <= mend).collect();
    assert!(
        during.iter().filter(|k| k.at >= detected.at).all(|k| far.iter().all(|w| !k.has(w))),
        "a commit during the partition included the far side: {during:?}"
    );
    assert!(net.c.last_step() < STEPS - 20, "the job is too short to see the rejoin");

    net.bed.heal().expect("heal");
    for (w, before) in far.iter().zip(&heals_before) {
        net.wait(&format!("{w} heals from a peer"), PHASE, || {
            (heals(net.worker(w)) > *before).then_some(())
        });
    }
    let healed_at = unix_ms();
    let full = net.commit_after("all four commit together again", mend, |k| k.members.len() == 4);
    eprintln!(
        "split {{coordinator, worker-0, worker-1}} | {{worker-2, worker-3}}: detected (first \
         commit of the near side alone) after {} ms (eviction after {:?} ms); during the \
         partition the near side committed {} steps, the far side 0 (stayed at {frozen:?}); \
         after heal both far workers healed from peers within {} ms and all four committed \
         together (step {}) {} ms after the heal",
        ms_between(cut, detected.at),
        eviction_ms(&net.c, far[0], cut),
        during.len(),
        ms_between(mend, healed_at),
        full.step,
        ms_between(mend, full.at),
    );
    assert_converged(&mut net, mend);
    eprintln!("  scenario took {:.1} s", started.elapsed().as_secs_f64());
}

/// When the coordinator evicted `worker` after `since`, in ms after `since`.
fn eviction_ms(c: &Cluster, worker: &str, since: u64) -> Option<u64> {
    c.events()
        .iter()
        .filter(|l| l["event"] == "evicted")
        .filter(|l| l["worker"].as_str().is_some_and(|w| w.starts_with(&format!("{worker}#"))))
        .filter_map(|l| l["unix_ms"].as_u64())
        .find(|t| *t > since)
        .map(|t| t - since)
}
