#!/usr/bin/env bash
# Validates the Kubernetes manifests without a cluster:
#   1. renders every overlay under deploy/k8s/overlays with `kubectl kustomize`;
#   2. validates every rendered object against the Kubernetes OpenAPI schemas, strictly (unknown
#      fields are errors), with kubernetes-validate, for the oldest and newest versions we support;
#   3. checks the rendered objects against the binary they run (deploy/check_manifests.py): flags,
#      ports, probes, Services, volumes, job specs, security settings, Dockerfile sources.
#
# Environment:
#   ALBATROSS_BIN   the albatross binary whose --help the flags are checked against
#                   (default: target/release/albatross)
#   KUBECTL         kubectl to render with (default: kubectl on PATH)
#
# Exit status: 0 valid; 1 invalid (every problem is printed); 77 kubectl is missing, so nothing
# was checked (printed loudly: a skipped validation must never look like a passed one).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deploy="$root/deploy"

# The oldest Kubernetes these manifests target (native gRPC probes are GA since 1.27, and PDB
# unhealthyPodEvictionPolicy needs 1.26+) and the newest schemas the pinned validator ships.
K8S_VERSIONS=(1.30.0 1.37.0)
KV_VERSION=1.37.0

bin="${ALBATROSS_BIN:-$root/target/release/albatross}"
kubectl="${KUBECTL:-kubectl}"

if ! command -v "$kubectl" >/dev/null 2>&1; then
    {
        echo "************************************************************************"
        echo "SKIPPED: kubectl not found; the manifests under deploy/k8s were NOT validated"
        echo "************************************************************************"
    } >&2
    exit 77
fi
if [[ ! -x "$bin" ]]; then
    echo "FAIL: ALBATROSS_BIN=$bin is not an executable albatross binary" >&2
    exit 1
fi

# kubernetes-validate (and the PyYAML it depends on) in a venv reused across runs; a lock keeps
# concurrent runs from installing into the same venv at once.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/albatross"
venv="$cache/kv-venv"
mkdir -p "$cache"
install_validator() {
    if [[ -x "$venv/bin/kubernetes-validate" ]] \
        && [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" == "$KV_VERSION" ]]; then
        return
    fi
    echo "== installing kubernetes-validate $KV_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
}
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/kv-venv.lock"
    flock 9
    install_validator
    flock -u 9
else
    install_validator
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=0
overlays=("$deploy"/k8s/overlays/*/)
if [[ ! -d "${overlays[0]}" ]]; then
    echo "FAIL: no overlays under $deploy/k8s/overlays" >&2
    exit 1
fi
for dir in "${overlays[@]}"; do
    overlay="$(basename "$dir")"
    rendered="$work/$overlay.yaml"
    echo "== $overlay: kubectl kustomize"
    if ! "$kubectl" kustomize "$dir" >"$rendered"; then
        echo "FAIL: $overlay does not render" >&2
        failed=1
        continue
    fi
    # One object per file, so kubernetes-validate names each object it rejects.
    objects="$work/$overlay"
    mkdir -p "$objects"
    "$venv/bin/python" - "$rendered" "$objects" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")) if d]
for i, doc in enumerate(docs):
    name = f"{i:02d}-{doc['kind']}-{doc['metadata']['name']}.yaml"
    with open(f"{sys.argv[2]}/{name}", "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
print(f"   {len(docs)} objects: " + ", ".join(sorted({d['kind'] for d in docs})))
PY

    version_flags=()
    for v in "${K8S_VERSIONS[@]}"; do version_flags+=(-k "$v"); done
    echo "== $overlay: kubernetes-validate --strict ${K8S_VERSIONS[*]}"
    if "$venv/bin/kubernetes-validate" --strict --quiet "${version_flags[@]}" \
        "$objects"/*.yaml; then
        echo "   every object is valid"
    else
        echo "FAIL: $overlay has objects the Kubernetes schemas reject" >&2
        failed=1
    fi

    echo "== $overlay: consistency with $bin"
    if ! "$venv/bin/python" "$deploy/check_manifests.py" "$bin" "$rendered" \
        --dockerfile "$deploy/docker/Dockerfile" --context "$root"; then
        echo "FAIL: $overlay is inconsistent with the binary it runs" >&2
        failed=1
    fi
done

if [[ "$failed" -ne 0 ]]; then
    echo "deploy/validate.sh: FAILED" >&2
    exit 1
fi
echo "deploy/validate.sh: all overlays valid (${#overlays[@]})"
