#!/usr/bin/env python3
"""Repeats issue 25's run — `albatross launch` with one worker killed mid-run — and reports, per
run and over all runs, what the kill cost: samples duplicated and lost, rollbacks, recoveries
counted, and the recovery time at real step lengths.

Recovery is measured from what the cluster logged: the kill's time (chaos-report.json) to the
next decided step (metrics.jsonl), minus that step's compute (the slowest member's compute_ms),
since the step a kill interrupts has to be computed again whatever the system does. The survivor's
log says how long its aborted computation took to stop once told (`stopped_ms`).

    python3 bench/kill_recovery.py --runs 20 [--preset base] [--workers 2] [--steps 7] \
        [--global-batch 8] [--kill worker-1@step=4] [--albatross target/release/albatross] \
        [--out DIR] [--json]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def one_run(args, out):
    cmd = [args.albatross, "launch", "--workers", str(args.workers), "--preset", args.preset,
           "--steps", str(args.steps), "--global-batch", str(args.global_batch),
           "--chaos", f"kill:{args.kill}", "--out", out]
    started = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}:\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = read_json(os.path.join(out, "summary.json"))
    report = read_json(os.path.join(out, "chaos-report.json"))
    events = read_lines(os.path.join(out, "events.jsonl"))
    metrics = read_lines(os.path.join(out, "metrics.jsonl"))
    fault = report["faults"][0]
    after = next((m for m in metrics if m["unix_ms"] > fault["unix_ms"]), None)
    recovery = None
    if after is not None and fault.get("next_commit_ms") is not None:
        recovery = fault["next_commit_ms"] - after["compute_ms"]
    stopped = []
    logs = os.path.join(out, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        with open(os.path.join(logs, name), errors="replace") as f:
            stopped += [int(m) for m in re.findall(r"stopped_ms=(\d+)", f.read())]
    steady = [m["compute_ms"] for m in metrics if after is None or m["step"] != after["step"]]
    return {
        "seconds": round(time.time() - started, 1),
        "final_step": summary["final_step"],
        "samples_duplicated": summary["samples_duplicated"],
        "samples_lost": summary["samples_lost"],
        "replica_hashes_agree": summary["replica_hashes_agree"],
        "recoveries": summary["recoveries"],
        "rollbacks": sum(1 for e in events if e["event"] == "rolled_back"),
        "aborted_steps": summary["aborted_steps"],
        "kill_to_next_commit_ms": fault.get("next_commit_ms"),
        "next_step_compute_ms": after["compute_ms"] if after else None,
        "recovery_minus_compute_ms": recovery,
        "median_step_compute_ms": statistics.median(steady) if steady else None,
        "compute_stopped_ms": stopped,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--albatross", default="target/release/albatross")
    p.add_argument("--preset", default="base")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--kill", default="worker-1@step=4", help="TARGET@step=N of the kill")
    p.add_argument("--out", help="keep each run's directory here (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="one JSON line per run, then a summary")
    args = p.parse_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    if not os.access(args.albatross, os.X_OK):
        raise SystemExit(f"{args.albatross} is not an executable: build it with "
                         "`cargo build --release` or pass --albatross")
    root = args.out or tempfile.mkdtemp(prefix="kill-recovery-")
    results = []
    for i in range(args.runs):
        r = one_run(args, os.path.join(root, f"run-{i:02}"))
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"run {i + 1:>2}: {r['seconds']:>6.1f} s, final step {r['final_step']}, "
                  f"duplicated {r['samples_duplicated']}, lost {r['samples_lost']}, "
                  f"rollbacks {r['rollbacks']}, recoveries {r['recoveries']}, "
                  f"kill -> next commit {r['kill_to_next_commit_ms']} ms "
                  f"(its compute {r['next_step_compute_ms']} ms, "
                  f"recovery {r['recovery_minus_compute_ms']} ms), "
                  f"aborted compute stopped after {r['compute_stopped_ms']} ms", flush=True)
    clean = [r for r in results if r["samples_duplicated"] == 0 and r["samples_lost"] == 0
             and r["rollbacks"] == 0 and r["replica_hashes_agree"]]
    recoveries = [r["recovery_minus_compute_ms"] for r in results
                  if r["recovery_minus_compute_ms"] is not None]
    stops = [s for r in results for s in r["compute_stopped_ms"]]
    summary = {
        "runs": len(results),
        "clean_runs": len(clean),
        "samples_duplicated": sum(r["samples_duplicated"] for r in results),
        "samples_lost": sum(r["samples_lost"] for r in results),
        "rollbacks": sum(r["rollbacks"] for r in results),
        "recovery_minus_compute_ms_median": statistics.median(recoveries) if recoveries else None,
        "recovery_minus_compute_ms_max": max(recoveries) if recoveries else None,
        "compute_stopped_ms_median": statistics.median(stops) if stops else None,
        "compute_stopped_ms_max": max(stops) if stops else None,
        "median_step_compute_ms": statistics.median(
            [r["median_step_compute_ms"] for r in results if r["median_step_compute_ms"]]),
    }
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print(f"{summary['clean_runs']} of {summary['runs']} runs clean (0 duplicated, 0 lost, "
              f"no rollback, replicas agree); recovery (kill -> next commit - its compute) "
              f"median {summary['recovery_minus_compute_ms_median']} ms, "
              f"max {summary['recovery_minus_compute_ms_max']} ms; aborted computations "
              f"stopped after median {summary['compute_stopped_ms_median']} ms, "
              f"max {summary['compute_stopped_ms_max']} ms; a step computes in "
              f"{summary['median_step_compute_ms']} ms")
    return 0 if len(clean) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
