#!/usr/bin/env bash
# Alternating runs of two `albatross` builds on this machine, for before/after figures:
#   bench/compare-builds.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
# Prints one line per measurement: the all-reduce (2 ranks, 16 and 48 MiB), a 2-worker
# albert-base training cluster, and the tiny demo launch (200 steps). Build both with
# `cargo build --release -p albatross-cli`.
set -euo pipefail
before=${1:?usage: compare-builds.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
after=${2:?usage: compare-builds.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
rounds=${3:-3}
out=$(mktemp -d -t albatross-compare-XXXXXX)
trap 'rm -rf "$out"' EXIT
for round in $(seq 1 "$rounds"); do
  for which in before after; do
    bin=$before
    [ "$which" = after ] && bin=$after
    "$bin" bench allreduce --ranks 2 --json 2>/dev/null | sed "s/^/allreduce $which $round /"
    "$bin" bench train --preset base --workers 2 --json 2>/dev/null | sed "s/^/train $which $round /"
    run="$out/launch-$which-$round"
    start=$(date +%s.%N)
    "$bin" launch --out "$run" --steps 200 >/dev/null 2>"$run.err"
    end=$(date +%s.%N)
    summary=$(tr -d '\n ' <"$run/summary.json")
    tokens=$(grep -o '"tokens_per_second":[0-9.]*' <<<"$summary" | cut -d: -f2)
    echo "launch $which $round tokens_per_second $tokens wall_s $(awk "BEGIN { print $end - $start }")"
  done
done
