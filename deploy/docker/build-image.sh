#!/usr/bin/env bash
# Builds the Albatross image.
#
#   deploy/docker/build-image.sh [--tag T] [--from-source | --binary PATH] [--engine docker|podman]
#
# - Engine: docker where a daemon answers, else podman (with runc and the containers.conf beside
#   this script: crun fails on hybrid cgroups, and setting RLIMIT_NOFILE is not permitted in
#   some sandboxes). Missing podman, runc or debootstrap are installed with apt when run as root.
# - Base: debian:bookworm-slim when it can be pulled; otherwise one made from Debian's own
#   packages (debootstrap --variant=minbase bookworm, trimmed of apt lists, caches, docs and
#   locales) and imported as localhost/albatross-base:bookworm.
# - Binary: by default a release build on this (bookworm) host, stripped and staged as
#   deploy/docker/prebuilt/albatross (the Dockerfile's `prebuilt` stage); --from-source compiles
#   in the rust builder image instead (that image must be pullable); --binary PATH takes an
#   `albatross` built elsewhere on a bookworm host (the tests pass the one they built).
#
# Prints the image's size at the end.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="albatross:dev"
binary="prebuilt"
given=""
engine=""
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --from-source) binary="builder"; shift ;;
    --binary) given="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; usage 2 >&2 ;;
  esac
done

log() { echo "build-image: $*" >&2; }

# Installs the Debian packages named when their command is missing (as root only).
need() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
    exit 1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then
    engine=docker
  else
    engine=podman
  fi
fi
if [ "$engine" = podman ]; then
  need podman:podman runc:runc
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
fi
log "engine: $engine"

# The runtime base: pulled, or made from Debian packages.
base="debian:bookworm-slim"
if ! timeout 60 "$engine" pull -q "$base" >/dev/null 2>&1; then
  base="localhost/albatross-base:bookworm"
  if "$engine" image exists "$base" 2>/dev/null || "$engine" image inspect "$base" >/dev/null 2>&1; then
    log "debian:bookworm-slim cannot be pulled; using $base (made earlier)"
  else
    log "debian:bookworm-slim cannot be pulled; making $base from Debian packages"
    need debootstrap:debootstrap
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
    # What a container never needs: package lists and caches, docs, manuals, translations.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
      "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | "$engine" import - "$base" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  fi
fi
log "base: $base"

if [ "$binary" = prebuilt ]; then
  if [ -z "$given" ]; then
    log "building the release binary on the host"
    (cd "$root" && cargo build --release -p albatross-cli --locked >&2)
    given="$root/target/release/albatross"
  fi
  [ -x "$given" ] || { log "no executable at $given"; exit 1; }
  install -d "$here/prebuilt"
  # Symbols are not needed at run time; stripping them keeps the image small.
  install -m 0755 "$given" "$here/prebuilt/albatross"
  strip "$here/prebuilt/albatross" 2>/dev/null || log "strip not found: the binary keeps its symbols"
fi

# Rebuilding a tag leaves the image it named behind, untagged, and podman keeps each
# intermediate stage as an untagged image: the untagged images this build leaves are removed.
dangling() { "$engine" images --quiet --no-trunc --filter dangling=true | sort; }
before="$(dangling)"
(cd "$root" && "$engine" build -f deploy/docker/Dockerfile \
  --build-arg "BASE=$base" --build-arg "BINARY=$binary" -t "$tag" . >&2)
for image in $(comm -13 <(echo "$before") <(dangling)); do
  # Fails harmlessly while a container still uses it.
  "$engine" image rm "$image" >/dev/null 2>&1 || true
done
size="$("$engine" image inspect "$tag" --format '{{.Size}}')"
echo "$tag: $((size / 1000000)) MB ($engine, base $base, binary from $binary)"
