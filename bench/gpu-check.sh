#!/usr/bin/env bash
# The GPU check: one prepared script, under 8 minutes, for a machine with an NVIDIA GPU.
#
#   bench/gpu-check.sh              # builds with --features wgpu,cuda (needs cargo + crates)
#   bench/gpu-check.sh BIN_DIR      # or uses prebuilt binaries: BIN_DIR/albatross and
#                                   # BIN_DIR/golden (see `bench/gpu-check.sh --build-only DIR`)
#
# It runs, each under its own time limit, and prints one JSON object per check on stdout:
#   1. the card (nvidia-smi);
#   2. the golden tests against transformers on cuda (and wgpu), and a training step's
#      gradients on each against the CPU backend's;
#   3. `albatross bench step` for base (64 x 512) and large (32 x 512) on cuda and on wgpu,
#      with tokens/s and the peak device memory sampled from nvidia-smi;
#   4. a 2-worker `launch` sharing the GPU (--devices cuda:0,cuda:0), its tokens/s and
#      whether the replicas agree;
#   5. PyTorch eager on the same card and batch (bench/pytorch_step.py), where torch and
#      transformers import.
# Finally a summary object with every figure. Logs go to $OUT (default: a temporary directory).
#
# Settings (environment): GPU_CHECK_BUDGET_S (470), GPU_CHECK_RUNS ("base 64,large 32": preset
# and batch of each bench step, at --seq GPU_CHECK_SEQ, 512), GPU_CHECK_DEVICES ("cuda wgpu"),
# GPU_CHECK_LAUNCH_DEVICE (cuda:0) and GPU_CHECK_LAUNCH_PRESET (base) for the shared launch.
set -uo pipefail
cd "$(dirname "$0")/.."
STARTED=$(date +%s)
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
IFS=, read -r -a RUNS <<< "${GPU_CHECK_RUNS:-base 64,large 32}"
SEQ=${GPU_CHECK_SEQ:-512}
read -r -a DEVICES <<< "${GPU_CHECK_DEVICES:-cuda wgpu}"
OUT=${OUT:-$(mktemp -d -t albatross-gpu-check-XXXX)}
mkdir -p "$OUT"

build() {
    local dir=$1
    mkdir -p "$dir"
    cargo build --release --features wgpu,cuda -p albatross-cli >&2 || return 1
    cp target/release/albatross "$dir/albatross"
    local golden
    golden=$(cargo test --release -p albatross-model --features wgpu,cuda --test golden --no-run \
        --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "golden":
        print(m["executable"])') || return 1
    cp "$golden" "$dir/golden"
}

if [[ ${1:-} == --build-only ]]; then
    build "${2:?--build-only DIR}" && echo "built $2/albatross and $2/golden" >&2
    exit $?
fi
BIN_DIR=${1:-}
if [[ -z $BIN_DIR ]]; then
    BIN_DIR=$OUT/bin
    build "$BIN_DIR" || { echo '{"check":"build","ok":false}'; exit 1; }
fi
A=$BIN_DIR/albatross
GOLDEN=$BIN_DIR/golden
export ALBATROSS_GOLDEN_DIR=$PWD/crates/model/tests/golden
# The wgpu golden tests take the best adapter (the GPU), not the software one CI uses.
export ALBATROSS_TEST_WGPU=best

left() { echo $((BUDGET_S - ($(date +%s) - STARTED))); }
# Runs "$@" under min(limit, what is left of the budget); 124 when it ran out.
bounded() {
    local limit=$1; shift
    local budget; budget=$(left)
    ((budget < limit)) && limit=$budget
    ((limit <= 5)) && return 124
    timeout --kill-after=5 "$limit" "$@"
}

# Peak GPU memory in MiB while "$@" runs, above what was in use before it started.
PEAK_MIB=0
with_memory_peak() {
    local before; before=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
    local samples=$OUT/memory.samples
    : > "$samples"
    ( while true; do
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 >> "$samples" 2>/dev/null
        sleep 0.2
    done ) &
    local sampler=$!
    "$@"
    local status=$?
    kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
    local peak; peak=$(sort -n "$samples" | tail -1)
    PEAK_MIB=$(( ${peak:-$before} - before ))
    return $status
}

json_string() { python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))'; }

RESULTS=$OUT/results.jsonl
: > "$RESULTS"
emit() { echo "$1" | tee -a "$RESULTS"; }

# 1. The card.
CARD=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i 0 2>&1 | head -1)
emit "{\"check\":\"card\",\"nvidia_smi\":$(printf %s "$CARD" | json_string)}"

# 2. Golden tests and gradients against the CPU backend, per GPU backend.
for backend in "${DEVICES[@]}"; do
    log=$OUT/golden-$backend.log
    bounded 120 "$GOLDEN" "on_$backend" --test-threads 1 --nocapture > "$log" 2>&1
    status=$?
    summary=$(grep -E "outputs max abs|against Flex|test result" "$log" | json_string)
    emit "{\"check\":\"golden\",\"backend\":\"$backend\",\"ok\":$([[ $status == 0 ]] && echo true || echo false),\"exit\":$status,\"lines\":$summary}"
done

# 3. Training steps at a GPU-sized batch.
for run in "${RUNS[@]}"; do
    read -r preset batch <<< "$run"
    for device in "${DEVICES[@]}"; do
        log=$OUT/step-$preset-$device.log
        with_memory_peak bounded 100 "$A" bench step --preset "$preset" --batch "$batch" --seq "$SEQ" \
            --steps 3 --warmup 1 --device "$device" --json > "$log" 2> "$log.err"
        status=$?
        report=$(tail -1 "$log")
        [[ $status == 0 && $report == \{* ]] || report=null
        emit "{\"check\":\"bench_step\",\"preset\":\"$preset\",\"batch\":$batch,\"seq\":$SEQ,\"device\":\"$device\",\"exit\":$status,\"peak_device_mib\":$PEAK_MIB,\"report\":$report,\"stderr_tail\":$(tail -3 "$log.err" | json_string)}"
    done
done

# 4. Two workers sharing the GPU.
log=$OUT/launch.log
LAUNCH_DEVICE=${GPU_CHECK_LAUNCH_DEVICE:-cuda:0}
with_memory_peak bounded 120 "$A" launch --devices "$LAUNCH_DEVICE,$LAUNCH_DEVICE" --preset "${GPU_CHECK_LAUNCH_PRESET:-base}" --steps 30 \
    --global-batch 64 --out "$OUT/launch" > "$log" 2>&1
status=$?
summary=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' \
    "$OUT/launch/summary.json" 2>/dev/null || echo null)
emit "{\"check\":\"launch_shared_gpu\",\"exit\":$status,\"peak_device_mib\":$PEAK_MIB,\"summary\":$summary}"

# 5. PyTorch eager on the same card, where it is installed.
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2> /dev/null; then
    for run in "${RUNS[@]}"; do
        read -r preset batch <<< "$run"
        log=$OUT/pytorch-$preset.log
        bounded 90 python3 bench/pytorch_step.py --preset "$preset" --batch "$batch" --seq "$SEQ" \
            --steps 3 --device cuda > "$log" 2> "$log.err"
        status=$?
        report=$(tail -1 "$log")
        [[ $status == 0 && $report == \{* ]] || report=null
        emit "{\"check\":\"pytorch_step\",\"preset\":\"$preset\",\"batch\":$batch,\"seq\":$SEQ,\"exit\":$status,\"report\":$report}"
    done
else
    emit '{"check":"pytorch_step","skipped":"torch with CUDA is not installed here"}'
fi

# The summary: tokens/s per preset and device, and albatross over PyTorch on cuda.
python3 - "$RESULTS" "$(( $(date +%s) - STARTED ))" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
summary = {"check": "summary", "seconds": int(sys.argv[2]), "tokens_per_second": {}, "peak_device_mib": {}}
torch = {}
for r in rows:
    if r["check"] == "card":
        summary["card"] = r["nvidia_smi"]
    if r["check"] == "golden":
        summary[f"golden_{r['backend']}_ok"] = r["ok"]
    if r["check"] == "bench_step" and r.get("report"):
        key = f"{r['preset']}/{r['device']}"
        summary["tokens_per_second"][key] = r["report"]["tokens_per_second"]
        summary["peak_device_mib"][key] = r["peak_device_mib"]
    if r["check"] == "pytorch_step" and r.get("report"):
        torch[r["preset"]] = r["report"]["tokens_per_second"]
        summary["tokens_per_second"][f"{r['preset']}/pytorch-cuda"] = torch[r["preset"]]
    if r["check"] == "launch_shared_gpu" and r.get("summary"):
        s = r["summary"]
        summary["launch_shared_gpu"] = {k: s.get(k) for k in ("tokens_per_second", "steps_committed", "replica_hashes_agree", "samples_lost", "samples_duplicated")}
summary["albatross_over_pytorch_cuda"] = {
    p: summary["tokens_per_second"][f"{p}/cuda"] / t
    for p, t in torch.items() if f"{p}/cuda" in summary["tokens_per_second"] and t
}
print(json.dumps(summary))
PY
echo "logs: $OUT" >&2
