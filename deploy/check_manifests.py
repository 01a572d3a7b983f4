"""Consistency checks of rendered Albatross manifests against the binary they run.

Called by deploy/validate.sh with the rendered YAML of one overlay. Schema validity is
kubernetes-validate's job; this file checks what a schema cannot know:

- every flag a container passes to `albatross` exists in that subcommand's --help, and the
  subcommand's required flags are there (including `albatross` calls inside `sh -c` scripts);
- probes and Services name container ports that exist; gRPC probes ask for a health service
  the probed process registers, on the port it listens on (its cleartext `--health-listen` port
  when it serves TLS: a kubelet has no client certificate);
- `--tls-ca/--tls-cert/--tls-key` come together and name files on mounted Secret volumes;
- `--coordinator` and `--advertise` name Services that exist and select the right pods;
- every volumeMount has a volume; ConfigMaps and PVCs the pods use are rendered;
- each job.toml in a ConfigMap passes `albatross config check`; its data and checkpoint
  directories are on volumes the workers mount, and prepare-data writes what the job reads;
- the containers keep the restricted security settings.

Usage: check_manifests.py ALBATROSS_BIN RENDERED.yaml [--dockerfile FILE --context DIR]
Exit status 1 names every problem found.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from urllib.parse import urlparse

import yaml

# Health service names the binary registers (crates/coordinator/src/server.rs,
# crates/worker/src/runtime/mod.rs); "" is the server as a whole.
HEALTH_SERVICES = {
    "coordinator": {"", "albatross.v1.CoordinatorService"},
    "worker": {"", "albatross.v1.PeerService"},
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod", "CronJob"}
SHELLS = {"sh", "bash", "dash", "ash"}
# Words that may precede a command in a shell script segment.
SHELL_PREFIXES = {"then", "do", "else", "exec", "if", "until", "while", "!", "time", "{", "("}


@dataclass
class Invocation:
    """One `albatross` command line found in a container."""

    where: str
    argv: list[str]
    path: tuple[str, ...] = ()

    def flag(self, name: str) -> str | None:
        """The value of --name, given as `--name=v` or `--name v`."""
        for i, token in enumerate(self.argv):
            if token == f"--{name}" and i + 1 < len(self.argv):
                return self.argv[i + 1]
            if token.startswith(f"--{name}="):
                return token.split("=", 1)[1]
        return None


@dataclass
class Pod:
    """A pod template and where it came from."""

    where: str
    kind: str
    name: str
    labels: dict
    spec: dict
    claim_templates: set = field(default_factory=set)
    # A StatefulSet's governing Service.
    service_name: str | None = None


class Checker:
    def __init__(self, binary: str, docs: list[dict]):
        self.binary = binary
        self.docs = docs
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.passed: list[str] = []
        self.help_cache: dict[tuple[str, ...], str] = {}
        self.pods = [p for d in docs for p in pods_of(d)]
        self.by_kind: dict[str, dict[str, dict]] = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def error(self, text: str) -> None:
        self.errors.append(text)

    def passed_if_clean(self, errors_before: int, text: str) -> None:
        """Reports a check as passed only when it added no error."""
        if len(self.errors) == errors_before:
            self.passed.append(text)

    # --- the binary's surface -------------------------------------------------------------

    def help(self, path: tuple[str, ...]) -> str:
        if path not in self.help_cache:
            out = subprocess.run(
                [self.binary, *path, "--help"], capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                raise SystemExit(f"`{self.binary} {' '.join(path)} --help` failed: {out.stderr}")
            self.help_cache[path] = out.stdout
        return self.help_cache[path]

    def subcommands(self, path: tuple[str, ...]) -> set[str]:
        """Names under `Commands:` in the help of `path` (empty for a leaf)."""
        names, inside = set(), False
        for line in self.help(path).splitlines():
            if line.startswith("Commands:"):
                inside = True
            elif inside and re.match(r"^  [a-z]", line):
                names.add(line.split()[0])
            elif inside and line and not line.startswith(" "):
                inside = False
        names.discard("help")
        return names

    def options(self, path: tuple[str, ...]) -> set[str]:
        """Every long and short flag, aliases included, in the help of `path`."""
        text = self.help(path).split("Options:", 1)[-1]
        longs = set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", text))
        shorts = set(re.findall(r"(?<![\w-])(-[a-zA-Z])\b", text))
        return longs | shorts

    def required(self, path: tuple[str, ...]) -> set[str]:
        """Flags the Usage line lists outside `[OPTIONS]`: clap marks them required."""
        usage = next(
            (line for line in self.help(path).splitlines() if line.startswith("Usage:")), ""
        )
        return set(re.findall(r"(?<![\w\[-])(--[a-z0-9][a-z0-9-]*) <", usage))

    def default_of(self, path: tuple[str, ...], flag: str) -> str | None:
        text = " ".join(self.help(path).split())
        m = re.search(rf"{re.escape(flag)} <[A-Z_]+>[^-]*?\[default: ([^\]]+)\]", text)
        return m.group(1) if m else None

    def resolve(self, inv: Invocation) -> bool:
        """Finds the subcommand path of `inv` (`worker`, `data inspect`, ...)."""
        path: list[str] = []
        rest = list(inv.argv)
        while rest and not rest[0].startswith("-"):
            names = self.subcommands(tuple(path))
            if not names:
                break
            if rest[0] not in names:
                self.error(f"{inv.where}: `albatross {' '.join(path + rest[:1])}` is no subcommand")
                return False
            path.append(rest.pop(0))
        if not path or self.subcommands(tuple(path)):
            self.error(
                f"{inv.where}: `albatross {' '.join(inv.argv)}` names no complete subcommand "
                "(global flags must follow the subcommand here)"
            )
            return False
        inv.path = tuple(path)
        return True

    def check_flags(self, inv: Invocation) -> None:
        known = self.options(inv.path)
        used = set()
        for token in inv.argv[len(inv.path) :]:
            if token == "--" or not token.startswith("-") or token == "-":
                continue
            name = token.split("=", 1)[0]
            used.add(name)
            if name not in known:
                self.error(
                    f"{inv.where}: `albatross {' '.join(inv.path)}` has no flag {name} "
                    f"(its --help lists {', '.join(sorted(known))})"
                )
        missing = self.required(inv.path) - used
        if missing:
            self.error(f"{inv.where}: `albatross {' '.join(inv.path)}` lacks {sorted(missing)}")

    # --- containers -------------------------------------------------------------------------

    def invocations(self, pod: Pod, container: dict) -> list[Invocation]:
        where = f"{pod.where} container {container['name']}"
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        image = container.get("image", "")
        if not command:
            # The image's ENTRYPOINT is `albatross`; other images' entrypoints are not ours.
            return [Invocation(where, args)] if is_albatross_image(image) else []
        program = os.path.basename(command[0])
        if program == "albatross":
            return [Invocation(where, command[1:] + args)]
        line = command + args
        if program in SHELLS and "-c" in line[1:]:
            script = line[line.index("-c", 1) + 1] if line.index("-c", 1) + 1 < len(line) else ""
            return [Invocation(f"{where} (script)", argv) for argv in script_commands(script)]
        if is_albatross_image(image):
            self.error(f"{where}: runs {command[0]!r}, neither albatross nor a shell script")
        return []

    def check_containers(self) -> None:
        before = len(self.errors)
        count = 0
        for pod in self.pods:
            for container in all_containers(pod.spec):
                for inv in self.invocations(pod, container):
                    if self.resolve(inv):
                        self.check_flags(inv)
                        count += 1
        self.passed_if_clean(before, f"flags of {count} albatross command lines exist in --help")

    def check_hardening(self) -> None:
        before = len(self.errors)
        containers = [(pod, c) for pod in self.pods for c in all_containers(pod.spec)]
        for pod, container in containers:
            self.check_security(pod, container)
        self.passed_if_clean(before, f"{len(containers)} containers are restricted and limited")

    def check_security(self, pod: Pod, container: dict) -> None:
        where = f"{pod.where} container {container['name']}"
        sc = container.get("securityContext") or {}
        psc = pod.spec.get("securityContext") or {}
        wanted = {
            "allowPrivilegeEscalation": sc.get("allowPrivilegeEscalation") is False,
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "capabilities.drop ALL": "ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
            "runAsNonRoot": sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
            "seccompProfile RuntimeDefault": (
                (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
                == "RuntimeDefault"
            ),
            "resources.limits": bool((container.get("resources") or {}).get("limits")),
        }
        for name, ok in wanted.items():
            if not ok:
                self.error(f"{where}: missing {name}")

    # --- probes, ports, Services ----------------------------------------------------------

    def check_probes(self) -> None:
        before = len(self.errors)
        count = 0
        for pod in self.pods:
            for container in pod.spec.get("containers", []):
                where = f"{pod.where} container {container['name']}"
                ports = container_ports(container)
                roles = {inv.path[0] for inv in self.invocations(pod, container) if
                         self.resolve(inv)}
                for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                    probe = container.get(kind)
                    if not probe:
                        continue
                    count += 1
                    for action in ("grpc", "httpGet", "tcpSocket"):
                        if action in probe and probe[action]["port"] not in ports:
                            self.error(f"{where}: {kind} port {probe[action]['port']} "
                                       f"is not a port of the container "
                                       f"({sorted(map(str, ports))})")
                    if "grpc" in probe:
                        self.check_grpc_probe(pod, container, kind, probe["grpc"], roles)
        self.passed_if_clean(
            before, f"{count} probes target declared ports and registered health services"
        )

    def check_grpc_probe(self, pod: Pod, container: dict, kind: str, grpc: dict,
                         roles: set[str]) -> None:
        where = f"{pod.where} container {container['name']}"
        service = grpc.get("service", "")
        allowed = set().union(*(HEALTH_SERVICES.get(r, set()) for r in roles)) if roles else set()
        if service not in allowed:
            self.error(f"{where}: {kind} asks for health service {service!r}; "
                       f"`albatross {'/'.join(sorted(roles)) or '?'}` registers {sorted(allowed)}")
        for role in roles & set(HEALTH_SERVICES):
            inv = next(i for i in self.invocations(pod, container) if self.resolve(i)
                       and i.path[0] == role)
            listen = inv.flag("listen") or self.default_of((role,), "--listen") or ""
            health = inv.flag("health-listen")
            if inv.flag("tls-ca") is not None and health is None:
                self.error(f"{where}: `albatross {role}` serves mutual TLS, which a kubelet's "
                           f"{kind} cannot pass: add --health-listen and probe that port")
            probed = health or listen
            if probed.rsplit(":", 1)[-1] != str(grpc["port"]):
                self.error(f"{where}: {kind} probes port {grpc['port']} but "
                           f"`albatross {role}` serves health on {probed}")

    def selected_pods(self, selector: dict) -> list[Pod]:
        return [p for p in self.pods if selector and
                all(p.labels.get(k) == v for k, v in selector.items())]

    def check_services(self) -> None:
        before = len(self.errors)
        for name, svc in self.by_kind.get("Service", {}).items():
            spec = svc["spec"]
            pods = self.selected_pods(spec.get("selector") or {})
            if not pods:
                self.error(f"Service {name}: its selector matches no pod template")
            for port in spec.get("ports", []):
                target = port.get("targetPort", port["port"])
                for pod in pods:
                    declared = set().union(*(container_ports(c) for c in
                                             pod.spec.get("containers", [])))
                    if target not in declared:
                        self.error(f"Service {name} port {port.get('name')}: targetPort {target} "
                                   f"is not declared by {pod.where}")
        for pod in self.pods:
            if pod.kind == "StatefulSet":
                svc = self.by_kind.get("Service", {}).get(pod.service_name or "")
                if svc is None or svc["spec"].get("clusterIP") != "None":
                    self.error(f"{pod.where}: serviceName {pod.service_name!r} "
                               "is not a rendered headless Service")
        services = len(self.by_kind.get("Service", {}))
        self.passed_if_clean(before, f"{services} Services select pods declaring their ports")

    def check_addresses(self) -> None:
        """--coordinator and --advertise point at Services that reach the right process."""
        before = len(self.errors)
        services = self.by_kind.get("Service", {})
        for pod in self.pods:
            for container in all_containers(pod.spec):
                for inv in self.invocations(pod, container):
                    if not self.resolve(inv) or inv.path != ("worker",):
                        continue
                    url = urlparse(inv.flag("coordinator") or "")
                    host = (url.hostname or "").split(".")[0]
                    svc = services.get(host)
                    if svc is None:
                        self.error(f"{inv.where}: --coordinator {url.geturl()} names no "
                                   "rendered Service")
                    else:
                        ports = {p["port"] for p in svc["spec"]["ports"]}
                        targets = self.selected_pods(svc["spec"].get("selector") or {})
                        roles = {i.path[0] for t in targets for c in t.spec.get("containers", [])
                                 for i in self.invocations(t, c) if self.resolve(i)}
                        if url.port not in ports or roles != {"coordinator"}:
                            self.error(f"{inv.where}: --coordinator {url.geturl()} does not reach "
                                       f"a coordinator (Service ports {sorted(ports)}, "
                                       f"selects {sorted(roles)})")
                    advertise = inv.flag("advertise")
                    if advertise is None:
                        self.error(f"{inv.where}: no --advertise; peers would dial 127.0.0.1")
                        continue
                    host, _, port = advertise.rpartition(":")
                    listen = inv.flag("listen") or self.default_of(("worker",), "--listen") or ""
                    labels = host.split(".")
                    governing = pod.service_name
                    if len(labels) < 2 or labels[0] != "$(POD_NAME)" or labels[1] != governing:
                        self.error(f"{inv.where}: --advertise {advertise} is not "
                                   f"$(POD_NAME).{governing}...")
                    if port != listen.rsplit(":", 1)[-1]:
                        self.error(f"{inv.where}: advertises port {port}, listens on {listen}")
                    env = {e["name"] for e in container.get("env", [])}
                    for var in re.findall(r"\$\(([A-Z_]+)\)", " ".join(inv.argv)):
                        if var not in env:
                            self.error(f"{inv.where}: $({var}) is not in the container's env")
        self.passed_if_clean(before, "workers reach the coordinator and advertise their stable DNS")

    # --- volumes and configuration ---------------------------------------------------------

    def check_volumes(self) -> None:
        before = len(self.errors)
        mounts = 0
        for pod in self.pods:
            volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
            for container in all_containers(pod.spec):
                for mount in container.get("volumeMounts", []):
                    mounts += 1
                    if mount["name"] not in volumes and mount["name"] not in pod.claim_templates:
                        self.error(f"{pod.where} container {container['name']}: volumeMount "
                                   f"{mount['name']} has no volume")
            for volume in volumes.values():
                self.check_volume_source(pod, volume)
        self.passed_if_clean(before, f"{mounts} volumeMounts have volumes; sources are rendered")

    def check_tls(self) -> None:
        """TLS flags come together and name files on mounted Secret volumes."""
        before = len(self.errors)
        count = 0
        flags = ("tls-ca", "tls-cert", "tls-key")
        for pod in self.pods:
            volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
            for container in all_containers(pod.spec):
                for inv in self.invocations(pod, container):
                    given = {f: inv.flag(f) for f in flags if inv.flag(f) is not None}
                    if not given:
                        continue
                    count += 1
                    if len(given) != len(flags):
                        self.error(f"{inv.where}: --{'/--'.join(flags)} must come together "
                                   f"(has {sorted(given)})")
                    for flag, path in given.items():
                        mount = next((m for m in container.get("volumeMounts", [])
                                      if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
                        volume = volumes.get(mount["name"]) if mount else None
                        if volume is None or "secret" not in volume:
                            self.error(f"{inv.where}: --{flag}={path} is not on a mounted "
                                       "Secret volume")
        self.passed_if_clean(before, f"{count} TLS command lines read their files from Secrets")

    def check_volume_source(self, pod: Pod, volume: dict) -> None:
        refs = [
            ("ConfigMap", (volume.get("configMap") or {}).get("name")),
            ("PersistentVolumeClaim",
             (volume.get("persistentVolumeClaim") or {}).get("claimName")),
        ]
        for kind, ref in refs:
            if ref and ref not in self.by_kind.get(kind, {}):
                self.error(f"{pod.where}: volume {volume['name']} uses {kind} {ref}, "
                           "which is not rendered")
        secret = (volume.get("secret") or {}).get("secretName")
        if secret and secret not in self.by_kind.get("Secret", {}):
            note = f"Secret {secret} is not rendered: create it before applying (deploy/README.md)"
            if note not in self.notes:
                self.notes.append(note)

    def check_jobs(self) -> None:
        specs = {}
        for name, cm in self.by_kind.get("ConfigMap", {}).items():
            for key, text in (cm.get("data") or {}).items():
                if not key.endswith(".toml"):
                    continue
                with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
                    f.write(text)
                out = subprocess.run([self.binary, "config", "check", f.name],
                                     capture_output=True, text=True, check=False)
                os.unlink(f.name)
                if out.returncode != 0:
                    self.error(f"ConfigMap {name} {key}: `albatross config check` failed:\n"
                               f"{out.stderr.strip()}")
                    # Known but invalid: reported once here, not again by every reader.
                    specs[(name, key)] = None
                    continue
                specs[(name, key)] = tomllib.loads(text)
                self.passed.append(f"ConfigMap {name} {key} passes `albatross config check`")
        self.check_job_paths(specs)

    def check_job_paths(self, specs: dict) -> None:
        """The job file a process reads is mounted, and the job's directories are too."""
        for pod in self.pods:
            volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
            for container in pod.spec.get("containers", []):
                for inv in self.invocations(pod, container):
                    if not self.resolve(inv) or inv.path[0] not in HEALTH_SERVICES:
                        continue
                    job_path = inv.flag("job") or ""
                    key = self.mounted_key(container, volumes, job_path)
                    if key not in specs:
                        self.error(f"{inv.where}: --job {job_path or '(none)'} is not a job.toml "
                                   "of a mounted ConfigMap")
                        continue
                    spec = specs[key]
                    if spec is None:
                        continue
                    dirs = {"data.dir": spec["data"]["dir"]}
                    if inv.path[0] == "worker":
                        dirs["checkpoint.dir"] = spec["checkpoint"]["dir"]
                    for what, path in dirs.items():
                        if not is_under_mount(container, path, writable=what != "data.dir"):
                            self.error(f"{inv.where}: job {what} {path} is not on a mounted "
                                       f"volume{' (writable)' if what != 'data.dir' else ''}")
                    self.check_prepared_for(spec)

    @staticmethod
    def mounted_key(container: dict, volumes: dict, job_path: str) -> tuple | None:
        """(ConfigMap, key) that `job_path` reads inside the container."""
        for mount in container.get("volumeMounts", []):
            prefix = mount["mountPath"].rstrip("/") + "/"
            cm = (volumes.get(mount["name"], {}).get("configMap") or {}).get("name")
            if cm and job_path.startswith(prefix):
                return (cm, job_path[len(prefix):])
        return None

    def check_prepared_for(self, spec: dict) -> None:
        """prepare-data writes samples of the job's length (and vocabulary, when it trains)."""
        for pod in self.pods:
            for container in all_containers(pod.spec):
                for inv in self.invocations(pod, container):
                    if not self.resolve(inv) or inv.path != ("prepare-data",):
                        continue
                    seq = inv.flag("max-seq-len") or inv.flag("max-seq-length") or "512"
                    if int(seq) != spec["data"]["max_seq_length"]:
                        self.error(f"{inv.where}: --max-seq-len {seq}, but job {spec['name']} "
                                   f"has data.max_seq_length {spec['data']['max_seq_length']}")
                    vocab = inv.flag("vocab-size")
                    if vocab and int(vocab) != spec["model"].get("vocab_size"):
                        self.error(f"{inv.where}: --vocab-size {vocab}, but job {spec['name']} "
                                   f"has model.vocab_size {spec['model'].get('vocab_size')}")


# --- helpers ---------------------------------------------------------------------------------


def pods_of(doc: dict) -> list[Pod]:
    kind, meta = doc.get("kind"), doc.get("metadata", {})
    if kind not in WORKLOAD_KINDS:
        return []
    where = f"{kind} {meta.get('name')}"
    if kind == "Pod":
        template = doc
    elif kind == "CronJob":
        template = doc["spec"]["jobTemplate"]["spec"]["template"]
    else:
        template = doc["spec"]["template"]
    pod = Pod(where, kind, meta.get("name"), template.get("metadata", {}).get("labels", {}),
              template["spec"])
    if kind == "StatefulSet":
        pod.claim_templates = {t["metadata"]["name"]
                               for t in doc["spec"].get("volumeClaimTemplates", [])}
        pod.service_name = doc["spec"].get("serviceName")
    return [pod]


def all_containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def container_ports(container: dict) -> set:
    ports = set()
    for port in container.get("ports", []):
        ports.add(port["containerPort"])
        if "name" in port:
            ports.add(port["name"])
    return ports


def is_albatross_image(image: str) -> bool:
    """`albatross`, `albatross:tag`, `registry/x/albatross@sha256:...`."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return name == "albatross"


def is_under_mount(container: dict, path: str, writable: bool) -> bool:
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/")
        if path == root or path.startswith(root + "/"):
            return not (writable and mount.get("readOnly"))
    return False


def script_commands(script: str) -> list[list[str]]:
    """The `albatross ...` command lines of a POSIX shell script: line continuations joined,
    comments dropped, each line split at ; && || | & ( )."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        segments, current = [], []
        for token in lexer:
            if set(token) <= set(";&|()"):
                segments.append(current)
                current = []
            else:
                current.append(token)
        segments.append(current)
        for segment in segments:
            while segment and segment[0] in SHELL_PREFIXES:
                segment = segment[1:]
            if segment and os.path.basename(segment[0]) == "albatross":
                found.append(segment[1:])
    return found


# Files the Dockerfile copies that a script stages before it builds (they are not committed):
# source -> the script, which must name the staged path.
STAGED_SOURCES = {"deploy/docker/prebuilt/albatross": "deploy/docker/build-image.sh"}


def check_dockerfile(dockerfile: str, context: str) -> list[str]:
    """Files the Dockerfile copies from the context exist (or a build script stages them) and
    .dockerignore keeps them."""
    errors = []
    text = open(dockerfile, encoding="utf-8").read().replace("\\\n", " ")
    ignore_file = os.path.join(context, ".dockerignore")
    patterns = []
    if os.path.exists(ignore_file):
        for line in open(ignore_file, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line.rstrip("/").removeprefix("**/"))
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        for src in sources:
            if src == ".":
                continue
            if src in STAGED_SOURCES:
                script = os.path.join(context, STAGED_SOURCES[src])
                staged = os.path.relpath(src, os.path.dirname(STAGED_SOURCES[src]))
                if not os.path.exists(script) or staged not in open(script, encoding="utf-8").read():
                    errors.append(f"Dockerfile copies {src}, which {STAGED_SOURCES[src]} "
                                  "should stage and does not")
            elif not os.path.exists(os.path.join(context, src)):
                errors.append(f"Dockerfile copies {src}, which does not exist")
            parts = src.split("/")
            for pattern in patterns:
                if pattern.startswith("!"):
                    continue
                if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) or
                       fnmatch.fnmatch(parts[i], pattern) for i in range(len(parts))):
                    errors.append(f"Dockerfile copies {src}, which .dockerignore excludes "
                                  f"({pattern})")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("rendered")
    parser.add_argument("--dockerfile")
    parser.add_argument("--context")
    args = parser.parse_args()
    with open(args.rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    checker = Checker(args.binary, docs)
    checker.check_containers()
    checker.check_hardening()
    checker.check_probes()
    checker.check_services()
    checker.check_addresses()
    checker.check_volumes()
    checker.check_tls()
    checker.check_jobs()
    if args.dockerfile:
        errors = check_dockerfile(args.dockerfile, args.context or ".")
        checker.errors.extend(errors)
        if not errors:
            checker.passed.append("Dockerfile COPY sources exist and are not .dockerignored")
    for line in checker.passed:
        print(f"  ok    {line}")
    for line in checker.notes:
        print(f"  note  {line}")
    for line in dict.fromkeys(checker.errors):
        print(f"  FAIL  {line}", file=sys.stderr)
    return 1 if checker.errors else 0


if __name__ == "__main__":
    sys.exit(main())
