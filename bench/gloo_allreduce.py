#!/usr/bin/env python3
"""torch.distributed (gloo) all-reduce on loopback, the baseline for `albatross bench allreduce`.

Same sizes, same definitions (nccl-tests): algbw = S / t, busbw = algbw * 2 (n - 1) / n, t the
median of the timed iterations, each started after a barrier. With --json prints one object per
size with the same fields as the Rust benchmark.

    python3 gloo_allreduce.py --ranks 2 --size-mib 16,48 --iters 10 [--warmup 2] [--json]
"""
import argparse
import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, args, port, queue):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    n = args.ranks
    for mib in args.size_mib:
        elems = int(mib * 1048576) // 4
        idx = torch.arange(elems, dtype=torch.int64) % 7
        expected = (idx * n + n * (n - 1) // 2).to(torch.float32)
        times = []
        for it in range(args.warmup + args.iters):
            buf = (idx + rank).to(torch.float32)
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            dt = time.perf_counter() - t0
            if it == 0 and not torch.equal(buf, expected):
                raise SystemExit(f"rank {rank}: wrong sum for {mib} MiB")
            if it >= args.warmup:
                times.append(dt)
        if rank == 0:
            size = elems * 4
            median = statistics.median(times)
            algbw = size / median / 1e9
            busbw = algbw * 2 * (n - 1) / n if n > 1 else 0.0
            queue.put({"ranks": n, "bytes": size, "wire": "f32", "iters": len(times),
                       "median_s": median, "min_s": min(times),
                       "algbw_gbps": algbw, "busbw_gbps": busbw})
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--size-mib", type=lambda s: [float(x) for x in s.split(",")],
                        default=[16.0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=rank_main, args=(r, args, port, queue)) for r in range(args.ranks)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in args.size_mib]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a rank exited with {p.exitcode}")
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"gloo ranks {r['ranks']:>2}  size {r['bytes'] / 1048576:>9.2f} MiB  "
                  f"median {r['median_s'] * 1e3:>9.3f} ms  algbw {r['algbw_gbps']:.3f} GB/s  "
                  f"busbw {r['busbw_gbps']:.3f} GB/s")


if __name__ == "__main__":
    main()
