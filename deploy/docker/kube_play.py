#!/usr/bin/env python3
"""Runs a rendered Kubernetes overlay in podman with `podman kube play`, and checks the job it runs.

    deploy/docker/kube_play.py IMAGE [--overlay DIR] [--env NAME=VALUE]... [--keep]

podman 4.3 (Debian bookworm) plays Pods, Deployments, PersistentVolumeClaims, ConfigMaps and
Secrets. Everything else in the overlay is translated into those, or skipped, and the script
prints which, object by object, before it plays anything:

  * a Job becomes the Pod of its template (podman has no Job controller: one attempt, no
    backoffLimit);
  * a StatefulSet becomes its `replicas` Pods, named <name>-0, <name>-1, ... as Kubernetes names
    them;
  * a ClusterIP Service becomes a fixed IP and MAC address for the one pod behind it and a hosts
    entry for its names in every pod, so the name outlives a replaced pod as a ClusterIP does;
  * a headless Service becomes DNS names on the pods it selects (container-network aliases,
    <pod>.<svc>.<ns>.svc.cluster.local among them), gone with the pod as in cluster DNS;
  * a PodDisruptionBudget is skipped: nothing evicts pods in podman.
A Service whose port differs from its target port, or any other kind, is refused.

Every pod spec also gets workarounds for podman 4.3, each listed in the plan (pod_spec_fixes and
the helpers after it say why): secret volumes made explicitly non-optional, fieldRef
metadata.namespace as a literal, $(VAR) in args expanded, one emptyDir per pod, init containers of
type `always` under restart policy OnFailure, container ports not published on the host. Secrets
are created as podman secrets with decoded values. gRPC probes are not run: podman 4.3's
Kubernetes API predates them and drops them (deploy/validate.sh checks them against the binary).

Then it plays the objects as `kubectl apply` would create them (every pod started at once, each
waiting in its init containers as on a cluster) and checks the job:
  1. the prepare-data Job's pod exits 0;
  2. `albatross status` from another container lists every worker pod by its StatefulSet name;
  3. the coordinator's pod is replaced: the new one recovers the job from its claim's state;
  4. a worker's pod is deleted (SIGTERM: a graceful leave, recorded as `left`) and created again:
     it heals from its peer;
  5. the job runs to its last step with an exact ledger: every step decided once with a full batch
     (no sample lost or repeated), no hash-vote disagreement, the workers' final state hashes
     equal; the coordinator's and workers' logs are JSON lines.
Everything it created is removed at the end; on failure the logs are kept (path printed).
"""

import argparse
import base64
import copy
import ipaddress
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the host
    sys.exit("kube_play.py needs PyYAML: apt-get install python3-yaml")

NAMESPACE = "default"
CLUSTER_DOMAIN = "cluster.local"
# The pod annotation that sets how podman runs a pod's init containers.
INIT_CONTAINER_TYPE = "io.podman.annotations.init.container.type"


def log(message):
    print(f"kube-play: {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    """A check failed; the message says which and what was seen."""


# --- translation ------------------------------------------------------------------------------


class Workload:
    """A set of pods to play from one object: its pod names, template and the DNS names they get."""

    def __init__(self, source, kind, template, pod_names, play_as):
        self.source = source  # "Kind/name" of the overlay's object
        self.kind = kind
        self.template = template
        self.pod_names = pod_names
        self.play_as = play_as  # the object podman plays (a Pod or a Deployment)
        self.aliases = {name: [] for name in pod_names}
        self.notes = []

    def labels(self):
        return self.template.get("metadata", {}).get("labels", {})

    def container_port(self, port):
        """The container port a Service's targetPort (a number or a port name) resolves to."""
        if isinstance(port, int):
            return port
        spec = self.template["spec"]
        for container in spec.get("containers", []):
            for declared in container.get("ports", []):
                if declared.get("name") == port:
                    return declared["containerPort"]
        raise Failure(f"{self.source} has no container port named {port!r}")


def pod_spec_fixes(template, namespace, image):
    """Applies the podman 4.3 workarounds and the image to a pod template; returns what changed."""
    notes = []
    spec = template["spec"]
    for volume in spec.get("volumes", []):
        secret = volume.get("secret")
        if secret is not None and "optional" not in secret:
            secret["optional"] = False
            notes.append(f"secret volume {volume['name']}: explicit optional: false (podman 4.3 bug)")
        if "emptyDir" in volume:
            notes.append(f"emptyDir {volume['name']}: one per pod, size limit not enforced "
                         "(podman 4.3 shares emptyDirs of one name across pods)")
    if spec.get("initContainers"):
        # podman 4.3 removes a one-shot init container once it exits, and that removal races the
        # container's exit ("cannot remove container ... as it is running"), failing the pod's
        # start. "always" init containers are kept and run at every start of the pod, as
        # Kubernetes runs them for every new pod.
        annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[INIT_CONTAINER_TYPE] = "always"
        notes.append("init containers of type always (podman 4.3 races removing one-shot ones)")
        # ... and it gives init containers the pod's restart policy: under Always one that
        # exited 0 would be started again, forever.
        if spec.get("restartPolicy", "Always") == "Always":
            spec["restartPolicy"] = "OnFailure"
            notes.append("restartPolicy OnFailure (podman 4.3 would rerun init containers "
                         "forever under Always)")
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        if container.pop("ports", None):
            # Kubernetes never publishes a containerPort on the node; podman 4.3 does, so two
            # workers would collide on one host port. Peers reach pods by their DNS names.
            notes.append(f"{container['name']}: ports not published on the host (podman 4.3 "
                         "publishes every containerPort)")
        if container.get("image", "").split(":")[0].split("/")[-1] == "albatross":
            container["image"] = image
        for env in container.get("env", []):
            field = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field == "metadata.namespace":
                del env["valueFrom"]
                env["value"] = namespace
                notes.append(f"{container['name']}: {env['name']}={namespace} (podman 4.3 has no "
                             "fieldRef metadata.namespace)")
        if any("$(" in arg for arg in container.get("command", []) + container.get("args", [])):
            notes.append(f"{container['name']}: $(VAR) in args expanded per pod (podman 4.3 "
                         "does not expand them)")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if "grpc" in container.get(probe, {}):
                notes.append(f"{container['name']}: gRPC {probe} not run (podman 4.3 drops it)")
    return notes


def as_pod(name, template, extra_labels=None):
    metadata = copy.deepcopy(template.get("metadata", {}))
    metadata["name"] = name
    metadata.setdefault("labels", {}).update(extra_labels or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": copy.deepcopy(template["spec"])}


def translate(docs, image, namespace=NAMESPACE):
    """Splits rendered objects into what podman plays; returns (volumes, secrets, config maps,
    workloads, plan lines)."""
    plan, workloads, services, cluster_ips = [], [], [], []
    claims, secrets, config_maps = [], [], []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        source = f"{kind}/{name}"
        if kind == "PersistentVolumeClaim":
            claims.append(doc)
            plan.append(f"{source}: played (a podman volume)")
        elif kind == "Secret":
            secrets.append(doc)
            plan.append(f"{source}: created as a podman secret with its values decoded (podman "
                        "4.3's kube play would mount their base64 text)")
        elif kind == "ConfigMap":
            config_maps.append(doc)
            plan.append(f"{source}: played (with every pod that mounts it)")
        elif kind == "Deployment":
            replicas = doc["spec"].get("replicas", 1)
            if replicas != 1:
                # Each pod is played on its own (its own network arguments); podman would make
                # every replica at every play.
                raise Failure(f"{source} has {replicas} replicas; only one is played here")
            deployment = copy.deepcopy(doc)
            # podman names a Deployment's pod <name>-pod-0.
            workload = Workload(source, kind, deployment["spec"]["template"], [f"{name}-pod-0"],
                                play_as=deployment)
            workloads.append(workload)
            plan.append(f"{source}: played (its pod; strategy not emulated)")
        elif kind == "StatefulSet":
            replicas = doc["spec"].get("replicas", 1)
            template = copy.deepcopy(doc["spec"]["template"])
            pods = [f"{name}-{i}" for i in range(replicas)]
            workload = Workload(source, kind, template, pods, play_as=None)
            workload.service_name = doc["spec"].get("serviceName")
            workloads.append(workload)
            plan.append(f"{source}: translated into {replicas} Pods {', '.join(pods)}")
        elif kind == "Job":
            template = copy.deepcopy(doc["spec"]["template"])
            pod = f"{name}-0"
            workload = Workload(source, kind, template, [pod], play_as=None)
            workload.job_name = name
            workloads.append(workload)
            plan.append(f"{source}: translated into Pod {pod} (one attempt, no backoffLimit)")
        elif kind == "Service":
            services.append(doc)
        elif kind == "PodDisruptionBudget":
            plan.append(f"{source}: skipped (nothing evicts pods in podman)")
        else:
            raise Failure(f"{source}: no podman translation for kind {kind}; decide one in "
                          "kube_play.py before adding it to an overlay")

    for service in services:
        name = service["metadata"]["name"]
        selector = service["spec"].get("selector", {})
        headless = service["spec"].get("clusterIP") == "None"
        matched = [w for w in workloads
                   if selector and all(w.labels().get(k) == v for k, v in selector.items())]
        if not matched:
            raise Failure(f"Service/{name} selects no pod of the overlay")
        names = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
                 f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"]
        for workload in matched:
            for port in service["spec"].get("ports", []):
                target = workload.container_port(port.get("targetPort", port["port"]))
                if target != port["port"]:
                    raise Failure(f"Service/{name} maps port {port['port']} to {target}; the "
                                  "emulation keeps ports as they are")
            if headless:
                # One DNS record per ready pod, gone with the pod, as cluster DNS does.
                for pod in workload.pod_names:
                    workload.aliases[pod] += names
                    if getattr(workload, "service_name", None) == name:
                        workload.aliases[pod] += [
                            f"{pod}.{name}", f"{pod}.{name}.{namespace}.svc.{CLUSTER_DOMAIN}"]
            else:
                # A ClusterIP never goes away while its pods are replaced: emulated by a fixed
                # address for the one pod behind it and a hosts entry in every pod. (A DNS alias
                # would vanish with the pod, which no cluster does to a Service's name.)
                if len(workload.pod_names) != 1:
                    raise Failure(f"Service/{name} selects {len(workload.pod_names)} pods; only a "
                                  "single pod can stand behind an emulated ClusterIP")
                cluster_ips.append((workload, names))
        kinds = ", ".join(w.source for w in matched)
        plan.append(f"Service/{name}: " + (
            f"translated into DNS names on the pods of {kinds} (headless: one name per pod)"
            if headless else
            f"translated into a fixed address for the pod of {kinds} and a hosts entry for "
            "its names in every pod"))

    # After the Services: their target ports resolve against the ports the fixes take away.
    for workload in workloads:
        workload.notes += pod_spec_fixes(workload.template, namespace, image)
        for note in workload.notes:
            plan.append(f"{workload.source}: {note}")
    return claims, secrets, config_maps, workloads, cluster_ips, plan


def pod_documents(workload, pod, config_maps):
    """The YAML documents one `podman kube play` of `pod` reads."""
    used = {v["configMap"]["name"] for v in workload.template["spec"].get("volumes", [])
            if "configMap" in v}
    docs = [c for c in config_maps if c["metadata"]["name"] in used]
    if workload.kind == "Deployment":
        deployment = copy.deepcopy(workload.play_as)
        # podman takes a Deployment's pod annotations from the Deployment, not its template.
        template_annotations = workload.template.get("metadata", {}).get("annotations", {})
        deployment["metadata"].setdefault("annotations", {}).update(template_annotations)
        own_empty_dirs(deployment["spec"]["template"]["spec"], pod)
        expand_env_references(deployment["spec"]["template"]["spec"], pod)
        return docs + [deployment]
    extra = {"job-name": workload.job_name} if workload.kind == "Job" else {}
    pod_doc = as_pod(pod, workload.template, extra)
    pod_doc["spec"].setdefault("hostname", pod)
    own_empty_dirs(pod_doc["spec"], pod)
    expand_env_references(pod_doc["spec"], pod)
    return docs + [pod_doc]


def expand_env_references(spec, pod):
    """Expands $(VAR) in commands and args from the container's env, as the kubelet does and
    podman 4.3 does not. fieldRef metadata.name resolves to the pod's name."""
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        values = {}
        for env in container.get("env", []):
            if "value" in env:
                values[env["name"]] = env["value"]
            elif env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                values[env["name"]] = pod
        for key in ("command", "args"):
            if key in container:
                container[key] = [re.sub(r"\$\((\w+)\)",
                                         lambda m: values.get(m.group(1), m.group(0)), arg)
                                  for arg in container[key]]


def own_empty_dirs(spec, pod):
    """Names each emptyDir after its pod: podman 4.3 makes an emptyDir a volume named after the
    pod spec's volume, so pods with an emptyDir of the same name would share one directory."""
    renamed = {}
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            renamed[volume["name"]] = f"{pod}-{volume['name']}"
            volume["name"] = renamed[volume["name"]]
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for mount in container.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])


# --- running ----------------------------------------------------------------------------------


def podman(*args, check=True, timeout=300):
    """Runs podman; its stdout, stripped. A failure (unless `check` is off) names the command."""
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise Failure(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout.strip()


def container_logs(name):
    """A container's output, stdout and stderr together (the services log to stderr)."""
    return subprocess.run(["podman", "logs", name], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60).stdout


def wait_for(what, predicate, timeout_s, poll_s=0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {timeout_s} s")
        time.sleep(poll_s)


def read_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


class Cluster:
    """What one run created in podman, so it can all be removed again."""

    def __init__(self, prefix, work):
        self.network = f"{prefix}-net"
        self.work = work
        self.pods, self.volumes, self.secrets = [], [], []
        self.definitions = {}  # pod -> (its YAML file, its --network argument, more arguments)
        self.hosts = {}  # the emulated ClusterIPs: Service name -> address
        self.starters = []

    def create(self, pod):
        path, network, extra = self.definitions[pod]
        podman("kube", "play", "--start=false", "--network", network, *extra, str(path))

    def start(self, pod):
        """Starts a pod in the background: `pod start` returns only once its init containers
        are done."""
        self.starters.append(subprocess.Popen(["podman", "pod", "start", pod],
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))

    def delete(self, pod):
        """Deletes a pod as Kubernetes does: SIGTERM, then up to 30 s to exit."""
        podman("pod", "stop", "-t", "30", pod)
        podman("pod", "rm", "-f", pod)

    def recreate(self, pod):
        """Creates a deleted pod again from its definition, as its controller would: same name,
        volumes and network identity, fresh containers. (Not `pod stop` and `pod start`: podman
        4.3 stops a pod whose init container exits while its main container is still "exited"
        from before, which races every restart of a pod with init containers.)"""
        self.create(pod)
        self.start(pod)

    def volume_path(self, name):
        return pathlib.Path(podman("volume", "inspect", name, "--format", "{{.Mountpoint}}"))

    def containers(self):
        """The names of every container of this run's pods (infra containers included)."""
        names = []
        for pod in self.pods:
            out = podman("ps", "-a", "--filter", f"pod={pod}", "--format", "{{.Names}}",
                         check=False)
            names += [name for name in out.splitlines() if not name.endswith("-infra")]
        return names

    def save_logs(self):
        for name in self.containers():
            (self.work / f"{name}.log").write_text(container_logs(name), encoding="utf-8")

    def remove(self):
        for starter in self.starters:
            if starter.poll() is None:
                starter.kill()
        for pod in self.pods:
            podman("pod", "rm", "-f", "-t", "0", pod, check=False)
        for volume in dict.fromkeys(self.volumes):
            podman("volume", "rm", "-f", volume, check=False)
        for secret in self.secrets:
            podman("secret", "rm", secret, check=False)
        podman("network", "rm", "-f", self.network, check=False)


def play(cluster, claims, secrets, config_maps, workloads, cluster_ips):
    podman("network", "create", cluster.network)
    subnet = ipaddress.ip_network(podman("network", "inspect", cluster.network, "--format",
                                         "{{range .Subnets}}{{.Subnet}}{{end}}"))
    # Fixed addresses from the top of the subnet, clear of the ones podman hands out from the
    # bottom.
    host_aliases = []
    for index, (workload, names) in enumerate(cluster_ips):
        address = str(subnet.broadcast_address - 1 - index)
        workload.fixed_ip = address
        host_aliases.append({"ip": address, "hostnames": names})
        cluster.hosts.update({name: address for name in names})
    for workload in workloads:
        workload.template["spec"].setdefault("hostAliases", []).extend(host_aliases)
    for doc in claims:
        path = cluster.work / f"{doc['kind']}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        podman("kube", "play", str(path))
        cluster.volumes.append(doc["metadata"]["name"])
    for doc in secrets:
        # Not `kube play`: podman 4.3 would store the Secret re-encoded and write each value's
        # base64 text, not the value, into the pods' files. A podman secret holding the Secret
        # with decoded values is what its secret volumes read.
        name = doc["metadata"]["name"]
        path = cluster.work / f"Secret-{name}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                                        "metadata": {"name": name}, "data": secret_values(doc)}))
        podman("secret", "create", name, str(path))
        cluster.secrets.append(name)
    for workload in workloads:
        for pod in workload.pod_names:
            path = cluster.work / f"pod-{pod}.yaml"
            docs = pod_documents(workload, pod, config_maps)
            path.write_text(yaml.safe_dump_all(docs))
            cluster.volumes += podman_volumes(docs[-1])
            aliases = ",".join(f"alias={a}" for a in workload.aliases[pod])
            network = f"{cluster.network}:{aliases}" if aliases else cluster.network
            fixed = getattr(workload, "fixed_ip", None)
            # The MAC address is fixed too, or the other pods' ARP caches would keep sending to
            # the replaced pod's interface for up to half a minute.
            extra = ["--ip", fixed, "--mac-address", mac_for(fixed)] if fixed else []
            cluster.definitions[pod] = (path, network, extra)
            cluster.pods.append(pod)
            cluster.create(pod)
    # Like `kubectl apply`: every pod starts at once, each waiting in its init containers.
    for pod in cluster.pods:
        cluster.start(pod)


def mac_for(address):
    """A locally administered unicast MAC address derived from an IPv4 address."""
    return "02:00:" + ":".join(f"{octet:02x}" for octet in ipaddress.IPv4Address(address).packed)


def secret_values(secret):
    """A Secret's values as text: `data` decoded from base64, `stringData` as is."""
    name = secret["metadata"]["name"]
    values = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as error:
            raise Failure(f"Secret/{name}: data.{key} is not base64 of UTF-8 text: {error}")
    values.update(secret.get("stringData") or {})
    return values


def podman_volumes(doc):
    """The podman volumes playing a Pod or Deployment creates (emptyDirs, config maps and
    secrets become named volumes in podman 4.3), so the run can remove them."""
    spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
    names = []
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            names.append(volume["name"])
        elif "configMap" in volume:
            names.append(volume["configMap"]["name"])
        elif "secret" in volume:
            names.append(volume["secret"]["secretName"])
    return names


def coordinator_token(coordinator, secrets):
    """The join token the coordinator reads: the Secret key behind its --token-file."""
    spec = coordinator.template["spec"]
    container = spec["containers"][0]
    token_file = next((a.split("=", 1)[1] for a in container.get("args", [])
                       if a.startswith("--token-file=")), None)
    if token_file is None:
        return ""
    directory, key = os.path.split(token_file)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    secret = next(s for s in secrets if s["metadata"]["name"] == volume["secret"]["secretName"])
    return secret_values(secret)[key]


def container_of(pod, name):
    return f"{pod}-{name}"


def run_checks(cluster, workloads, secrets, image, expected_steps, batch):
    by_kind = {w.kind: w for w in workloads}
    job, coordinator, workers = by_kind["Job"], by_kind["Deployment"], by_kind["StatefulSet"]
    job_pod = job.pod_names[0]
    job_container = container_of(job_pod, job.template["spec"]["containers"][0]["name"])
    code = podman("wait", job_container, timeout=600)
    if code != "0":
        raise Failure(f"the prepare-data Job's pod exited {code}")
    log(f"{job.source}: pod {job_pod} exited 0")

    state = cluster.volume_path("albatross-coordinator-state")
    metrics, events = state / "metrics.jsonl", state / "events.jsonl"

    def last_step():
        lines = read_lines(metrics)
        return lines[-1]["step"] if lines else 0

    wait_for("training reached step 10", lambda: last_step() >= 10, 240)
    coordinator_pod = coordinator.pod_names[0]
    # The address the workers dial.
    coordinator_url = next(a.split("=", 1)[1]
                           for a in workers.template["spec"]["containers"][0].get("args", [])
                           if a.startswith("--coordinator="))
    token_dir = cluster.work / "token"
    token_dir.mkdir()
    (token_dir / "token").write_text(coordinator_token(coordinator, secrets))
    # The status container runs as the image's user, which must get through the work dir.
    for path in (cluster.work, token_dir):
        path.chmod(0o755)
    add_hosts = [f"--add-host={name}:{address}" for name, address in cluster.hosts.items()]
    status = podman("run", "--rm", "--network", cluster.network, *add_hosts,
                    "-v", f"{token_dir}:/run/albatross-token:ro", image, "status",
                    "--coordinator", coordinator_url, "--token-file", "/run/albatross-token/token")
    for pod in workers.pod_names:
        if pod not in status:
            raise Failure(f"albatross status does not list {pod}:\n{status}")
    log(f"training in containers: status lists {', '.join(workers.pod_names)} at step {last_step()}")

    # The coordinator's pod is replaced (as a Deployment replaces a deleted or evicted pod): its
    # state on the claim carries the job on.
    before = last_step()
    recoveries = sum(e.get("event") == "recovered" for e in read_lines(events))
    replaced = time.monotonic()
    cluster.delete(coordinator_pod)
    cluster.recreate(coordinator_pod)
    recovered = wait_for(
        "the coordinator's replacement recovered the job",
        lambda: [e for e in read_lines(events) if e.get("event") == "recovered"][recoveries:], 240)
    log(f"coordinator pod replaced at step {before}: the new one resumed from its claim's state "
        f"at step {recovered[0]['step']}, {recovered[0]['recovery_ms'] / 1000:.1f} s after it "
        f"started ({time.monotonic() - replaced:.1f} s after the old one was told to stop)")

    # A worker's pod deleted (SIGTERM: a graceful leave) and created again by its StatefulSet:
    # it heals from its peer and rejoins.
    leaver = workers.pod_names[-1]
    worker_container = workers.template["spec"]["containers"][0]["name"]
    cluster.delete(leaver)
    wait_for(f"a 'left' event for {leaver}",
             lambda: any(e.get("event") == "left" and leaver in json.dumps(e)
                         for e in read_lines(events)), 30)
    if any(e.get("event") == "evicted" and leaver in json.dumps(e) for e in read_lines(events)):
        raise Failure(f"{leaver} was evicted, not left")
    cluster.recreate(leaver)
    wait_for(f"{leaver} healed from its peer after its start",
             lambda: "healed from a live peer" in container_logs(
                 container_of(leaver, worker_container)), 120)
    log(f"pod {leaver} deleted (a graceful leave) and created again: it healed from its peer")

    for pod in workers.pod_names:
        code = podman("wait", container_of(pod, worker_container), timeout=600)
        if code != "0":
            raise Failure(f"{pod} exited {code}")
    lines = read_lines(metrics)
    decided = [line["step"] for line in lines]
    if decided != list(range(1, expected_steps + 1)):
        raise Failure(f"steps decided: {decided}")
    if any(line["samples"] != batch for line in lines):
        raise Failure("a step without a full batch")
    for event in read_lines(events):
        if "state hash mismatch" in json.dumps(event):
            raise Failure(f"replicas disagreed: {event}")
    final_hashes = {pod: final_state_hash(container_logs(container_of(pod, worker_container)))
                    for pod in workers.pod_names}
    if len(set(final_hashes.values())) != 1 or "None" in final_hashes.values():
        raise Failure(f"the workers ended with different states: {final_hashes}")
    # The services' logs; the shell init containers and prepare-data's printed report are not.
    services = [container_of(pod, workload.template["spec"]["containers"][0]["name"])
                for workload in (coordinator, workers) for pod in workload.pod_names]
    for name in services:
        text = container_logs(name)
        for line in text.splitlines():
            if line.strip():
                try:
                    json.loads(line)
                except ValueError:
                    raise Failure(f"{name} logged a line that is not JSON: {line}") from None
    log(f"{expected_steps} steps each decided once with {batch} samples; the workers ended with "
        "equal state hashes; the coordinator's and workers' logs are JSON lines")


def final_state_hash(log_text):
    """The state hash a worker logs as it stops (its last `worker stopped` line)."""
    for line in reversed(log_text.splitlines()):
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if fields.get("message") == "worker stopped":
            return fields.get("state_hash")
    raise Failure("a worker's log has no 'worker stopped' line")


def job_settings(config_maps):
    """(total steps, global batch) of the job.toml the overlay's ConfigMap carries."""
    for config_map in config_maps:
        text = config_map.get("data", {}).get("job.toml")
        if text:
            job = tomllib.loads(text)
            return job["optimizer"]["total_steps"], job["batch"]["global_batch_size"]
    raise Failure("no ConfigMap in the overlay carries job.toml")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="the albatross image to run (e.g. localhost/albatross:dev)")
    parser.add_argument("--overlay", default=str(pathlib.Path(__file__).resolve().parents[1]
                                                 / "k8s" / "overlays" / "local"))
    parser.add_argument("--kubectl", default=os.environ.get("KUBECTL", "kubectl"))
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set this variable in every container (e.g. RUST_LOG=debug)")
    parser.add_argument("--keep", action="store_true",
                        help="on failure, leave the pods, volumes and network for inspection")
    args = parser.parse_args()

    if shutil.which("podman") is None:
        sys.exit("kube_play.py needs podman (deploy/docker/test-image.sh installs it)")
    os.environ.setdefault("CONTAINERS_CONF",
                          str(pathlib.Path(__file__).resolve().parent / "containers.conf"))
    rendered = subprocess.run([args.kubectl, "kustomize", args.overlay], capture_output=True,
                              text=True)
    if rendered.returncode != 0:
        sys.exit(f"kube_play.py: {args.kubectl} kustomize {args.overlay} failed: "
                 f"{rendered.stderr.strip()}")
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]

    work = pathlib.Path(tempfile.mkdtemp(prefix="albatross-kube-play-"))
    cluster = Cluster(f"albatross-kube-{os.getpid()}", work)
    ok = False
    try:
        claims, secrets, config_maps, workloads, cluster_ips, plan = translate(docs, args.image)
        for workload in workloads:
            for container in workload.template["spec"]["containers"]:
                for setting in args.env:
                    name, _, value = setting.partition("=")
                    container.setdefault("env", []).append({"name": name, "value": value})
        log(f"{args.overlay}: {len(docs)} objects")
        for line in plan:
            log(f"  {line}")
        steps, batch = job_settings(config_maps)
        started = time.monotonic()
        play(cluster, claims, secrets, config_maps, workloads, cluster_ips)
        run_checks(cluster, workloads, secrets, args.image, steps, batch)
        ok = True
        log(f"PASSED in {time.monotonic() - started:.0f} s")
    except Failure as failure:
        log(f"FAILED: {failure}")
    finally:
        if not ok:
            cluster.save_logs()
        if ok or not args.keep:
            cluster.remove()
        if ok:
            shutil.rmtree(work)
        else:
            log(f"logs kept in {work}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
