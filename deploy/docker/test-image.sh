#!/usr/bin/env bash
# Checks an Albatross image by running it, with podman (installed with apt if missing, as root).
#
#   deploy/docker/test-image.sh IMAGE
#
# 1. The image: runs as 65532 with entrypoint `albatross`, `--version` works, the sample corpus
#    is in /usr/share/albatross/sample, and no compiler is in it.
# 2. A job in containers on one container network: a prepare-data container, a coordinator, two
#    workers (each step slowed to ~0.3 s by the workers' test hook, so faults land mid-run).
#    `albatross status` from another container lists both workers; the coordinator's and the
#    workers' log lines are JSON.
# 3. `podman stop` of a worker (SIGTERM) is a graceful leave (a `left` event, no eviction); the
#    worker is started again and rejoins.
# 4. `podman kill` of a worker, then starting it again: it heals from its peer and rejoins.
# 5. The job ends with an exact ledger (every step decided once with a full batch: no sample lost
#    or repeated) and both workers' final state hashes equal.
# 6. deploy/docker/kube_play.py runs the rendered `local` Kubernetes overlay with `podman kube
#    play` (translating what podman 4.3 cannot play; it prints what) and checks that job too.
# Logs and the shared directory are kept (path printed) when a check fails.
set -euo pipefail

image="${1:?usage: test-image.sh IMAGE}"
here="$(cd "$(dirname "$0")" && pwd)"
steps=60
batch=32

log() { echo "test-image: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# Installs Debian packages something below needs, as root; otherwise says which to install.
apt_install() {
  [ "$(id -u)" = 0 ] || fail "missing: apt-get install $*"
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  apt_install podman runc
fi
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

work="$(mktemp -d)"
prefix="albatross-test-$$"
net="$prefix"
cleanup() {
  local status=$?
  for name in $(podman ps -a --format '{{.Names}}' | grep "^$prefix-" || true); do
    if [ "$status" != 0 ]; then podman logs "$name" > "$work/$name.log" 2>&1 || true; fi
    podman rm -f "$name" >/dev/null 2>&1 || true
  done
  podman network rm -f "$net" >/dev/null 2>&1 || true
  if [ "$status" = 0 ]; then rm -rf "$work"; else log "logs and data kept in $work"; fi
}
trap cleanup EXIT

# --- 1. the image -----------------------------------------------------------------------------
user="$(podman image inspect "$image" --format '{{.Config.User}}')"
entrypoint="$(podman image inspect "$image" --format '{{join .Config.Entrypoint " "}}')"
[ "${user%%:*}" = 65532 ] || fail "the image runs as $user, not 65532"
[ "$entrypoint" = albatross ] || fail "the entrypoint is '$entrypoint', not albatross"
version="$(podman run --rm "$image" --version)"
case "$version" in albatross\ *) ;; *) fail "--version printed '$version'" ;; esac
podman run --rm --entrypoint /bin/sh "$image" -c '
  for f in persuasion.txt albert-8k-tokenizer.json enwiki-sample.wikiextractor.jsonl README.md; do
    [ -s /usr/share/albatross/sample/$f ] || { echo "missing sample $f"; exit 1; }
  done
  for tool in cc gcc rustc cargo make; do
    if command -v $tool >/dev/null; then echo "build tool $tool in the image"; exit 1; fi
  done' || fail "image contents"
size="$(podman image inspect "$image" --format '{{.Size}}')"
log "image ok: $version, user $user, $((size / 1000000)) MB"

# --- 2. a job in containers -------------------------------------------------------------------
mkdir -p "$work/shared/coordinator" "$work/shared/reports" "$work/job"
sed -e "s/^total_steps = .*/total_steps = $steps/" -e "s/^every_steps = .*/every_steps = 20/" \
  "$here/../k8s/base/job.toml" > "$work/job/job.toml"
chown -R 65532:65532 "$work/shared"
podman network create "$net" >/dev/null
run() { podman run --network "$net" -v "$work/shared:/shared" -v "$work/job:/etc/albatross/job:ro" "$@"; }

run --rm --name "$prefix-prepare" "$image" prepare-data \
  --input /usr/share/albatross/sample/persuasion.txt \
  --tokenizer /usr/share/albatross/sample/albert-8k-tokenizer.json \
  --max-seq-len 128 --out /shared/data >/dev/null
[ -f "$work/shared/data/manifest.json" ] || fail "prepare-data wrote no manifest"

coordinator="$prefix-coordinator"
run -d --name "$coordinator" "$image" coordinator --job /etc/albatross/job/job.toml \
  --listen 0.0.0.0:7070 --http 0.0.0.0:8080 --state-dir /shared/coordinator/state \
  --metrics-log /shared/coordinator/metrics.jsonl \
  --events-log /shared/coordinator/events.jsonl >/dev/null
start_worker() {
  run -d --name "$prefix-$1" -e ALBATROSS_TEST_HOOKS=slow_compute_ms=300 "$image" worker \
    --coordinator "http://$coordinator:7070" --listen 0.0.0.0:7071 --id "$1" \
    --advertise "$prefix-$1:7071" --job /etc/albatross/job/job.toml \
    --report-file "/shared/reports/$1.json" >/dev/null
}
start_worker worker-0
start_worker worker-1

metrics="$work/shared/coordinator/metrics.jsonl"
events="$work/shared/coordinator/events.jsonl"
last_step() { [ -f "$metrics" ] && tail -n 1 "$metrics" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])' 2>/dev/null || echo 0; }
wait_step() {
  local until=$((SECONDS + 180))
  while [ "$(last_step)" -lt "$1" ]; do
    [ $SECONDS -lt $until ] || fail "step $1 not reached within 180 s (at $(last_step))"
    sleep 0.5
  done
}
wait_step 5
status="$(podman run --rm --network "$net" "$image" status --coordinator "http://$coordinator:7070")"
for w in worker-0 worker-1; do
  grep -q "$w" <<< "$status" || fail "albatross status does not list $w:\n$status"
done
for name in "$coordinator" "$prefix-worker-0" "$prefix-worker-1"; do
  podman logs "$name" 2>&1 | python3 -c '
import json, sys
lines = [l for l in sys.stdin if l.strip()]
assert lines, "no log lines"
for l in lines:
    json.loads(l)' || fail "$name logged a line that is not JSON"
done
log "training in containers: status lists both workers, logs are JSON lines"

# --- 3. podman stop: a graceful leave ---------------------------------------------------------
podman stop -t 30 "$prefix-worker-1" >/dev/null
until=$((SECONDS + 20))
until grep '"left"' "$events" | grep -q worker-1; do
  [ $SECONDS -lt $until ] || fail "no 'left' event for worker-1 after podman stop"
  sleep 0.2
done
if grep '"evicted"' "$events" | grep -q worker-1; then fail "worker-1 was evicted, not left"; fi
podman start "$prefix-worker-1" >/dev/null
log "podman stop is a graceful leave; worker-1 started again"

# --- 4. podman kill: heal from the peer -------------------------------------------------------
wait_step $(( $(last_step) + 5 ))
podman kill "$prefix-worker-0" >/dev/null
podman start "$prefix-worker-0" >/dev/null
until=$((SECONDS + 120))
until podman logs "$prefix-worker-0" 2>&1 | grep -q "healed from a live peer"; do
  [ $SECONDS -lt $until ] || fail "the killed worker did not heal from its peer"
  sleep 0.5
done
log "podman kill, then start: the worker healed from its peer"

# --- 5. the ledger ----------------------------------------------------------------------------
for w in worker-0 worker-1; do
  code="$(podman wait "$prefix-$w")"
  [ "$code" = 0 ] || fail "$w exited with $code"
done
python3 - "$metrics" "$work/shared/reports" "$steps" "$batch" <<'EOF' || fail "ledger"
import json, pathlib, sys
metrics, reports, steps, batch = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = [json.loads(l) for l in open(metrics) if l.strip()]
decided = [l["step"] for l in lines]
assert decided == list(range(1, steps + 1)), f"steps decided {decided}"
assert all(l["samples"] == batch for l in lines), "a step without a full batch"
hashes = {json.load(open(p))["state_hash"] for p in reports.glob("*.json")}
assert len(hashes) == 1, f"replicas differ: {hashes}"
print(f"{steps} steps each decided once with {batch} samples; replicas agree")
EOF
log "the job in containers passed"

# --- 6. the local Kubernetes overlay in podman kube play --------------------------------------
python3 -c 'import yaml' 2>/dev/null || apt_install python3-yaml
python3 "$here/kube_play.py" "$image" || fail "the local overlay in podman kube play"
log "PASSED: $image"
