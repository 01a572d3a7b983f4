#!/usr/bin/env python3
"""Alternating rounds of `albatross bench allreduce` and `bench/gloo_allreduce.py`, for a ratio
that a shared, noisy machine cannot bend one way: each round runs both on the same sizes
back to back (which goes first alternates), and the summary gives, per rank count and size,
the median busbw of each, every round's ratio ours / gloo, their median and how many rounds
ours was ahead. With --iperf3 each round also measures single-stream loopback TCP (iperf3,
3 s) and the summary gives busbw as a share of it (the 2-rank target is measured that way).

    python3 bench/compare_allreduce.py --ranks 2,4 --size-mib 16,48 --iters 20 --rounds 10 \
        [--albatross target/release/albatross] [--iperf3] [--json]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def json_lines(cmd):
    """Runs `cmd` and returns the JSON objects it printed, one per line."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def busbw_by_size(results):
    return {r["bytes"]: r["busbw_gbps"] for r in results}


def ours(args, ranks):
    sizes = ",".join(str(s) for s in args.size_mib)
    return busbw_by_size(json_lines([args.albatross, "bench", "allreduce", "--ranks", str(ranks),
                                     "--size-mib", sizes, "--iters", str(args.iters), "--json"]))


def gloo(args, ranks):
    sizes = ",".join(str(s) for s in args.size_mib)
    return busbw_by_size(json_lines([args.python, os.path.join(HERE, "gloo_allreduce.py"),
                                     "--ranks", str(ranks), "--size-mib", sizes,
                                     "--iters", str(args.iters), "--json"]))


def iperf3_gbps():
    """Single-stream loopback TCP throughput in GB/s (bytes), as the receiver counted it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # No probe connection: the one-off server (-1) would take it for its client.
        for _ in range(50):
            client = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "3",
                                     "-J"], capture_output=True, text=True)
            try:
                received = json.loads(client.stdout)["end"]["sum_received"]
                return received["bits_per_second"] / 8e9
            except (ValueError, KeyError):  # not listening yet: the JSON holds an "error"
                time.sleep(0.1)
        raise SystemExit(f"iperf3 client failed: {client.stdout[-500:]} {client.stderr[-500:]}")
    finally:
        server.kill()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4])
    parser.add_argument("--size-mib", type=lambda s: [float(x) for x in s.split(",")],
                        default=[16.0, 48.0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--albatross", default="target/release/albatross")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--iperf3", action="store_true", help="also measure loopback TCP")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON lines")
    args = parser.parse_args()
    if args.rounds < 1 or args.iters < 1:
        parser.error("--rounds and --iters must be at least 1")
    if not os.access(args.albatross, os.X_OK):
        parser.error(f"--albatross {args.albatross} is not an executable (build it first: "
                     "cargo build --release -p albatross-cli)")
    if args.iperf3 and shutil.which("iperf3") is None:
        parser.error("--iperf3 given but iperf3 is not installed")

    rounds = []  # one dict per round: {"iperf3": x, (ranks, bytes): (ours, gloo)}
    for index in range(args.rounds):
        row = {"iperf3": iperf3_gbps() if args.iperf3 else None}
        for ranks in args.ranks:
            runners = [ours, gloo] if index % 2 == 0 else [gloo, ours]
            measured = {runner: runner(args, ranks) for runner in runners}
            for size, value in measured[ours].items():
                row[(ranks, size)] = (value, measured[gloo][size])
        rounds.append(row)
        cells = [f"{r}r {s / 1048576:g}MiB {o:.3f}/{g:.3f}" for (r, s), (o, g) in
                 ((k, v) for k, v in row.items() if k != "iperf3")]
        tcp = f"iperf3 {row['iperf3']:.2f} | " if row["iperf3"] is not None else ""
        print(f"round {index + 1}: {tcp}" + " | ".join(cells) + "  (ours/gloo GB/s)",
              file=sys.stderr, flush=True)

    for key in [k for k in rounds[0] if k != "iperf3"]:
        ranks, size = key
        pairs = [row[key] for row in rounds]
        ratios = [o / g for o, g in pairs]
        summary = {
            "ranks": ranks,
            "bytes": size,
            "rounds": len(pairs),
            "ours_busbw_median_gbps": statistics.median(o for o, _ in pairs),
            "gloo_busbw_median_gbps": statistics.median(g for _, g in pairs),
            "ratios": [round(r, 3) for r in ratios],
            "ratio_median": statistics.median(ratios),
            "rounds_ahead": sum(r > 1.0 for r in ratios),
        }
        if args.iperf3:
            shares = [row[key][0] / row["iperf3"] for row in rounds]
            summary["iperf3_median_gbps"] = statistics.median(row["iperf3"] for row in rounds)
            summary["share_of_iperf3_median"] = statistics.median(shares)
        if args.json:
            print(json.dumps(summary))
        else:
            share = (f", {summary['share_of_iperf3_median']:.0%} of iperf3"
                     if args.iperf3 else "")
            print(f"{ranks} ranks {size / 1048576:g} MiB: ours {summary['ours_busbw_median_gbps']:.3f}"
                  f" gloo {summary['gloo_busbw_median_gbps']:.3f} GB/s (medians); ratio median "
                  f"{summary['ratio_median']:.2f}, ahead in {summary['rounds_ahead']} of "
                  f"{summary['rounds']} rounds{share}; ratios {summary['ratios']}")


if __name__ == "__main__":
    main()
