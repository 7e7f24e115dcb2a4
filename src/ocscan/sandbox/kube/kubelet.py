"""The sandbox kubelet: schedules pods onto the configured nodes and runs them.

Containers of *runnable* images (:class:`RunnableImage`, e.g. the scanner image) run as
local processes (:mod:`ocscan.sandbox.kube.runtime`) with the env, volumes and mounts the
real kubelet would give them (:mod:`ocscan.sandbox.kube.containerconfig`); containers of
every other image are simulated: once their image resolves (:mod:`ocscan.sandbox.kube.
imagepull`) they are Running and Ready for good, init containers Completed.

Reproduced from the real kubelet: pod phases and conditions, ``containerStatuses`` and
``initContainerStatuses`` (``imageID``, ``containerID``, ``started``, ``ready``, states),
``ErrImagePull``/``ImagePullBackOff``, ``CreateContainerConfigError`` retried after the pod
worker's jittered back-off (10-15 s; a new Secret or ConfigMap does not wake the pod, a change
to its spec, labels or annotations does), ``FailedMount`` while a volume source is missing (the
pod starts as soon as it appears), exit codes and reasons
(``Completed``, ``Error``, ``OOMKilled``, ``StartError``), termination messages (``File``,
``FallbackToLogsOnError``), restart policies with back-off (``CrashLoopBackOff``),
``activeDeadlineSeconds`` (``DeadlineExceeded``), graceful deletion (SIGTERM, SIGKILL after
the grace period, then the pod object is removed), logs with follow, Node objects and
Events. Not reproduced: probes (containers are ready once running), sidecar init
containers, resource requests in scheduling, image pull policies (every start resolves).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.containerconfig import (
    ConfigError,
    MountError,
    container_env,
    container_mounts,
    expand,
    memory_limit_bytes,
    mount_volumes,
)
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.events import NORMAL, WARNING, record_event
from ocscan.sandbox.kube.imagepull import ImagePuller, ImagePullError, PulledImage
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.runtime import (
    LOG_MAX_FILES,
    LOG_MAX_SIZE,
    ContainerLog,
    ContainerProcess,
    ExitStatus,
    ProcessSpec,
    StartError,
)
from ocscan.sandbox.kube.store import ObjectStore, PatchType, WatchEvent
from ocscan.sandbox.kube.workqueue import Reconciler

_log = logging.getLogger(__name__)

COMPONENT = "kubelet"
MAX_BACKOFF = 300.0
TERMINATION_MESSAGE_MAX = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
SYNC_BACKOFF_JITTER = 0.5  # the pod worker's workerBackOffPeriodJitterFactor

PodKey = tuple[str, str]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunnableImage:
    """Images whose containers run as local processes, with their image config.

    ``image`` matches a pod's image when equal to it, or when it is a prefix that ends at a
    ``/``, ``:`` or ``@`` boundary (``ghcr.io/aquasecurity/trivy`` matches
    ``ghcr.io/aquasecurity/trivy:0.76.0``). ``entrypoint`` and ``cmd`` are the image's
    ENTRYPOINT and CMD (``command``/``args`` override them as in Kubernetes); ``env`` is the
    image's ENV.
    """

    image: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def matches(self, image: str) -> bool:
        if image == self.image:
            return True
        if not image.startswith(self.image):
            return False
        return self.image[-1] in "/:@" or image[len(self.image)] in "/:@"


@dataclass
class KubeletConfig:
    """How the sandbox kubelet behaves.

    ``nodes``: node names it registers and runs pods on. ``architectures``: a node's CPU
    architecture (``arm64``) as its labels and ``nodeInfo`` show it, ``amd64`` for nodes not
    listed; every node runs every image all the same. ``runnable``: images run as
    processes. ``images``: how images resolve to digests (see :class:`ImagePuller`).
    ``state_dir``: where pod directories go (a temporary directory when None). ``path``:
    ``PATH`` of the processes, unless the pod sets one. ``backoff``: first image-pull and
    crash-loop back-off in seconds (doubling, capped at 300 s; the real kubelet starts at 10).
    ``config_error_backoff``: the real kubelet's pod-worker back-off after a sync error,
    jittered by a factor in [1, 1.5): how long a container stays in
    ``CreateContainerConfigError`` before its env is built again. ``resync``: how often pods
    waiting for a volume source are looked at again (besides when a Secret or ConfigMap
    changes). ``container_log_max_size`` and ``container_log_max_files``: the kubelet's
    ``containerLogMaxSize`` (bytes) and ``containerLogMaxFiles``; a container's log is rotated
    at that size and ``pods/log`` serves only the current file (see :class:`ContainerLog`).
    Pulled images stay on the node: a container whose ``imagePullPolicy`` is
    ``IfNotPresent`` (the default unless the tag is ``latest``) reuses them without
    credentials, exactly the case where a broken pull secret goes unnoticed.
    """

    nodes: tuple[str, ...] = ("sandbox-node",)
    architectures: Mapping[str, str] = field(default_factory=dict)
    runnable: tuple[RunnableImage, ...] = ()
    images: ImagePuller = field(default_factory=ImagePuller)
    state_dir: Path | None = None
    path: str = field(default_factory=lambda: os.environ.get("PATH", "/usr/bin:/bin"))
    backoff: float = 10.0
    config_error_backoff: float = 10.0
    resync: float = 2.0
    container_log_max_size: int = LOG_MAX_SIZE
    container_log_max_files: int = LOG_MAX_FILES
    allocatable: Mapping[str, str] = field(
        default_factory=lambda: {"cpu": "4", "memory": "8Gi", "pods": "110"}
    )
    services: Mapping[str, str] = field(default_factory=dict)
    """Cluster addresses (``trivy.ocscan.svc:4954``) and the loopback ``host:port`` serving
    them: the sandbox's stand-in for cluster DNS and kube-proxy, applied like mount paths."""


# --- runtime records ----------------------------------------------------------------------


@dataclass
class _Container:
    """What the kubelet knows about one container of a pod on this node."""

    name: str
    image: str
    init: bool
    runnable: RunnableImage | None
    state: str = "new"  # new | waiting | running | terminated
    reason: str = ""
    message: str = ""
    pulled: PulledImage | None = None
    pull_error: str = ""
    pull_failures: int = 0
    retry_at: float = 0.0
    container_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int = 0
    restart_count: int = 0
    last_terminated: JsonObject | None = None
    process: ContainerProcess | None = None
    log: ContainerLog | None = None
    previous_log: ContainerLog | None = None
    termination_log: Path | None = None

    @property
    def terminated(self) -> JsonObject:
        state: JsonObject = {
            "containerID": self.container_id,
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": _stamp(self.started_at) if self.started_at else None,
            "finishedAt": _stamp(self.finished_at) if self.finished_at else None,
        }
        if self.message:
            state["message"] = self.message
        return state


@dataclass
class _PodRun:
    """One pod this kubelet runs (keyed by uid: a new pod with the same name starts anew)."""

    uid: str
    directory: Path
    node: str
    ip: str
    host_ip: str
    start_time: str
    started: float
    containers: dict[str, _Container]
    init_order: list[str]
    main_order: list[str]
    volumes: dict[str, Path] | None = None
    mount_error: str = ""
    ready_to_start: bool = False
    phase: str = "Pending"
    reason: str = ""
    message: str = ""
    terminal: bool = False
    stopping: bool = False
    waits_for_volume: bool = False
    seen: JsonObject = field(default_factory=dict)  # what of the pod counts as an update
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)

    def processes(self) -> list[ContainerProcess]:
        return [c.process for c in self.containers.values() if c.process and c.process.running]


# --- the kubelet --------------------------------------------------------------------------


class Kubelet:
    """Runs the pods of the configured nodes. :meth:`start` it; :meth:`stop` kills everything."""

    def __init__(self, store: ObjectStore, config: KubeletConfig | None = None) -> None:
        self.store = store
        self.config = config or KubeletConfig()
        self._runs: dict[PodKey, _PodRun] = {}
        self._runs_lock = threading.Lock()
        self._reconciler: Reconciler[PodKey] = Reconciler("kubelet", self._sync, workers=4)
        self._unsubscribe: list[Callable[[], None]] = []
        self._own_state_dir = self.config.state_dir is None
        self._state_dir = self.config.state_dir or Path(tempfile.mkdtemp(prefix="sandbox-kubelet-"))
        self._ips = {node: itertools.cycle(range(2, 255)) for node in self.config.nodes}
        self._node_images: dict[tuple[str, str], PulledImage] = {}
        self._stopped = threading.Event()

    # -- lifecycle --

    def start(self) -> None:
        """Register the nodes, serve logs, and start working on pods."""
        for index, node in enumerate(self.config.nodes):
            self._register_node(node, index)
        self.store.kubelet_nodes.update(self.config.nodes)
        self._unsubscribe = [
            self.store.subscribe(self._on_pod, r.PODS),
            self.store.subscribe(self._on_source, r.SECRETS),
            self.store.subscribe(self._on_source, r.CONFIG_MAPS),
        ]
        self.store.register_log_provider(self.logs)
        self._reconciler.start()
        for pod in self.store.list(r.PODS):
            self._reconciler.queue.add(_key(pod))

    def stop(self) -> None:
        """Stop working and kill every container process (by PID), then clean up."""
        self._stopped.set()
        self.store.kubelet_nodes.difference_update(self.config.nodes)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._reconciler.stop()
        with self._runs_lock:
            runs = list(self._runs.values())
        for run in runs:
            for process in run.processes():
                process.kill()
        for run in runs:
            for process in run.processes():
                process.wait(5)
        if self._own_state_dir:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    def runnable_image(self, image: str) -> RunnableImage | None:
        """The runnable-image entry ``image`` matches, if any."""
        return next((entry for entry in self.config.runnable if entry.matches(image)), None)

    # -- events --

    def _on_pod(self, event: WatchEvent) -> None:
        self._reconciler.queue.add(_key(event.object))

    def _on_source(self, event: WatchEvent) -> None:
        namespace = event.object["metadata"].get("namespace")
        with self._runs_lock:
            waiting = [key for key, run in self._runs.items() if run.waits_for_volume]
        for key in waiting:
            if key[0] == namespace:
                self._reconciler.queue.add(key)

    # -- logs --

    def logs(
        self, namespace: str, name: str, container: str | None, follow: bool
    ) -> Iterator[bytes]:
        """The current log file of one container (``follow``: then its new output, across
        rotations, until that container instance ends)."""
        pod = self.store.get(r.PODS, namespace, name)
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        init_names = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if container is None:
            if len(names) != 1:
                raise ApiError.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(names)}]" + _or_init(init_names)
                )
            container = names[0]
        if container not in names + init_names:
            raise ApiError.bad_request(f"container {container} is not valid for pod {name}")
        with self._runs_lock:
            run = self._runs.get((namespace, name))
        record = run.containers.get(container) if run else None
        if record is None or record.log is None:
            reason = (record.reason if record else "") or "ContainerCreating"
            if reason in ("ImagePullBackOff", "ErrImagePull"):
                reason = "trying and failing to pull image"
            raise ApiError.bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        log = record.log
        if log is None:
            return iter(())
        if follow:
            return log.follow_bytes(self._stopped)
        return iter([line.data for line in log.lines()])

    # -- nodes and scheduling --

    def _register_node(self, node: str, index: int) -> None:
        with contextlib.suppress(ApiError):
            self.store.get(r.NODES, None, node)
            return
        address = str(ipaddress.IPv4Address("10.0.0.10") + index)
        arch = self.config.architectures.get(node, "amd64")
        allocatable = dict(self.config.allocatable)
        now = _now()
        self.store.create(
            r.NODES,
            None,
            {
                "metadata": {
                    "name": node,
                    "labels": {
                        "kubernetes.io/hostname": node,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": arch,
                        "beta.kubernetes.io/os": "linux",
                        "beta.kubernetes.io/arch": arch,
                    },
                },
                "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
                "status": {
                    "capacity": allocatable,
                    "allocatable": allocatable,
                    "addresses": [
                        {"type": "InternalIP", "address": address},
                        {"type": "Hostname", "address": node},
                    ],
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                    "nodeInfo": {
                        "architecture": arch,
                        "operatingSystem": "linux",
                        "osImage": "ocscan sandbox",
                        "kernelVersion": os.uname().release,
                        "kubeletVersion": "v1.32.0",
                        "kubeProxyVersion": "v1.32.0",
                        "containerRuntimeVersion": "containerd://1.7.24",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                },
            },
        )

    def _node_for(self, pod: JsonObject) -> str | None:
        """Where the scheduler would put ``pod``: node selector and name affinity honoured."""
        spec = pod["spec"]
        candidates = list(self.config.nodes)
        wanted_names = _affinity_node_names(spec)
        if wanted_names is not None:
            candidates = [node for node in candidates if node in wanted_names]
        selector = spec.get("nodeSelector") or {}
        if selector:
            labels_of = {node: self._node_labels(node) for node in candidates}
            candidates = [
                node
                for node in candidates
                if all(labels_of[node].get(k) == v for k, v in selector.items())
            ]
        if not candidates:
            return None
        with self._runs_lock:
            load = {node: 0 for node in candidates}
            for run in self._runs.values():
                if run.node in load:
                    load[run.node] += 1
        return min(candidates, key=lambda node: load[node])

    def _node_labels(self, node: str) -> dict[str, str]:
        try:
            labels: dict[str, str] = (
                self.store.get(r.NODES, None, node)["metadata"].get("labels") or {}
            )
        except ApiError:
            return {}
        return labels

    def _schedule(self, pod: JsonObject) -> None:
        node = self._node_for(pod)
        meta = pod["metadata"]
        if node is None:
            record_event(
                self.store, pod, WARNING, "FailedScheduling",
                f"0/{len(self.config.nodes)} nodes are available: "
                f"{len(self.config.nodes)} node(s) didn't match Pod's node affinity/selector.",
                "default-scheduler",
            )  # fmt: skip
            return
        with contextlib.suppress(ApiError):
            self.store.patch(
                r.PODS, meta["namespace"], meta["name"], PatchType.MERGE,
                {"metadata": {"resourceVersion": meta["resourceVersion"]},
                 "spec": {"nodeName": node}},
            )  # fmt: skip
            record_event(
                self.store, pod, NORMAL, "Scheduled",
                f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
                "default-scheduler",
            )  # fmt: skip

    # -- the pod sync loop --

    def _sync(self, key: PodKey) -> float | None:
        if self._stopped.is_set():
            return None
        try:
            pod: JsonObject | None = self.store.get(r.PODS, *key)
        except ApiError:
            pod = None
        with self._runs_lock:
            run = self._runs.get(key)
        if pod is None or (run is not None and run.uid != pod["metadata"]["uid"]):
            if run is not None:
                self._forget(key, run, grace=0)
            if pod is None:
                return None
            run = None
        assert pod is not None
        node = pod["spec"].get("nodeName")
        if not node:
            if not pod["metadata"].get("deletionTimestamp"):
                self._schedule(pod)
            return None
        if node not in self.config.nodes:
            return None
        if pod["metadata"].get("deletionTimestamp"):
            return self._terminate(key, pod, run)
        if run is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return None
            run = self._new_run(key, pod, node)
        if run.terminal:
            self._write_status(pod, run)
            return None
        wake = self._advance(pod, run)
        self._write_status(pod, run)
        return wake

    def _new_run(self, key: PodKey, pod: JsonObject, node: str) -> _PodRun:
        meta, spec = pod["metadata"], pod["spec"]
        index = self.config.nodes.index(node)
        containers: dict[str, _Container] = {}
        for init, group in ((True, "initContainers"), (False, "containers")):
            for container in spec.get(group) or []:
                image = container.get("image", "")
                containers[container["name"]] = _Container(
                    name=container["name"],
                    image=image,
                    init=init,
                    runnable=self.runnable_image(image),
                )
        run = _PodRun(
            uid=meta["uid"],
            directory=self._state_dir / f"{meta['namespace']}_{meta['name']}_{meta['uid']}",
            node=node,
            ip=f"10.244.{index}.{next(self._ips[node])}",
            host_ip=str(ipaddress.IPv4Address("10.0.0.10") + index),
            start_time=pod.get("status", {}).get("startTime") or _now(),
            started=time.monotonic(),
            containers=containers,
            init_order=[c["name"] for c in spec.get("initContainers") or []],
            main_order=[c["name"] for c in spec.get("containers") or []],
        )
        with self._runs_lock:
            self._runs[key] = run
        return run

    def _advance(self, pod: JsonObject, run: _PodRun) -> float | None:
        """Move the pod forward as far as it can go now; seconds until the next look."""
        spec = pod["spec"]
        now = time.monotonic()
        wakes: list[float] = []
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None:
            remaining = run.started + float(deadline) - now
            if remaining <= 0:
                self._fail(pod, run, "DeadlineExceeded", DEADLINE_MESSAGE)
                return None
            wakes.append(remaining)
        seen = _update_view(pod)
        if seen != run.seen:  # an update, unlike a status change, ends the sync back-off
            run.seen = seen
            for record in run.containers.values():
                if record.reason == "CreateContainerConfigError":
                    record.retry_at = 0.0
        run.waits_for_volume = False
        if run.volumes is None and not self._mount(pod, run):
            run.waits_for_volume = True
            return self.config.resync
        run.ready_to_start = True
        by_name = {c["name"]: c for c in (spec.get("initContainers") or [])}
        by_name |= {c["name"]: c for c in spec.get("containers") or []}
        policy = spec.get("restartPolicy", "Always")
        initialized = True
        for name in run.init_order:
            record = run.containers[name]
            if record.state == "terminated" and record.exit_code == 0:
                continue
            initialized = False
            if record.state == "terminated" and policy == "Never":
                break  # the pod has failed
            # An init container is retried when it fails, unless the pod never restarts.
            init_policy = "Never" if policy == "Never" else "OnFailure"
            wake = self._drive(pod, run, record, by_name[name], init_policy)
            if wake is not None:
                wakes.append(wake)
            break
        if initialized:
            for name in run.main_order:
                wake = self._drive(pod, run, run.containers[name], by_name[name], policy)
                if wake is not None:
                    wakes.append(wake)
        run.phase = self._phase(run, policy)
        if run.phase in ("Succeeded", "Failed"):
            run.terminal = True
            return None
        return min(wakes) if wakes else None

    def _drive(
        self,
        pod: JsonObject,
        run: _PodRun,
        record: _Container,
        container: JsonObject,
        policy: str,
    ) -> float | None:
        """Advance one container: pull, configure, start, restart. Seconds until next look.

        ``policy`` is the restart policy that applies to it (``OnFailure`` for the init
        containers of a pod that restarts).
        """
        now = time.monotonic()
        if record.state == "running":
            if record.process is not None and record.process.status is not None:
                self._exited(pod, run, record, container, record.process.status)
            else:
                return None
        restart = policy == "Always" or (policy == "OnFailure" and record.exit_code != 0)
        if record.state == "terminated":
            if not restart:
                return None
            # The first restart is immediate; later ones back off, as in the kubelet.
            delay = self._backoff(record.restart_count - 1) if record.restart_count else 0.0
            record.last_terminated = record.terminated
            record.state, record.reason, record.retry_at = (
                "waiting",
                "CrashLoopBackOff",
                now + delay,
            )
            meta = pod["metadata"]
            record.message = (
                f"back-off {delay:g}s restarting failed container={record.name} "
                f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"
            )
            if delay:
                self._event(pod, WARNING, "BackOff", "Back-off restarting failed container "
                            f"{record.name} in pod {meta['name']}_{meta['namespace']}"
                            f"({meta['uid']})")  # fmt: skip
        if record.state == "waiting" and record.reason == "CrashLoopBackOff":
            if now < record.retry_at:
                return record.retry_at - now
            record.restart_count += 1
            record.retry_at = 0.0
        # pull
        if record.pulled is None:
            if record.pull_error and now < record.retry_at:
                record.reason = "ImagePullBackOff"
                record.message = (
                    f'Back-off pulling image "{record.image}": ErrImagePull: {record.pull_error}'
                )
                return record.retry_at - now
            cached = self._node_images.get((run.node, record.image))
            if cached is not None and _pull_policy(container) != "Always":
                record.pulled = cached
                present = f'Container image "{record.image}" already present on machine'
                self._event(pod, NORMAL, "Pulled", present)
        if record.pulled is None:
            secrets_ = self._pull_secrets(pod)
            self._event(pod, NORMAL, "Pulling", f'Pulling image "{record.image}"')
            try:
                record.pulled = self.config.images.pull(record.image, secrets_)
                self._node_images[(run.node, record.image)] = record.pulled
            except ImagePullError as error:
                record.pull_failures += 1
                record.state, record.reason = "waiting", "ErrImagePull"
                record.message = f"rpc error: code = {error.code} desc = {error.message}"
                record.pull_error = record.message
                record.retry_at = now + self._backoff(record.pull_failures - 1)
                self._event(pod, WARNING, "Failed",
                            f'Failed to pull image "{record.image}": {record.message}')  # fmt: skip
                self._event(pod, WARNING, "Failed", "Error: ErrImagePull")
                return record.retry_at - now
            record.pull_failures, record.pull_error, record.retry_at = 0, "", 0.0
            self._event(pod, NORMAL, "Pulled",
                        f'Successfully pulled image "{record.image}"')  # fmt: skip
        # configure and start
        if record.runnable is None:
            self._start_simulated(pod, record)
            return None
        if record.reason == "CreateContainerConfigError" and now < record.retry_at:
            return record.retry_at - now
        try:
            spec = self._process_spec(pod, run, record, container)
        except ConfigError as error:
            record.state, record.reason, record.message = (
                "waiting",
                "CreateContainerConfigError",
                error.message,
            )
            delay = sync_backoff(self.config.config_error_backoff)
            record.retry_at = now + delay
            self._event(pod, WARNING, "Failed", f"Error: {error.message}")
            return delay
        record.retry_at = 0.0
        if record.log is not None:
            record.previous_log = record.log
        record.log = self._new_log()
        record.container_id = "containerd://" + secrets.token_hex(32)
        key = _key(pod)
        try:
            record.process = ContainerProcess.start(
                spec, record.log, on_exit=lambda _status: self._reconciler.queue.add(key)
            )
        except StartError as error:
            moment = datetime.now(UTC)
            record.log.close()
            record.state, record.reason, record.message = "terminated", "StartError", error.message
            record.exit_code, record.started_at, record.finished_at = 128, moment, moment
            self._event(pod, WARNING, "Failed", f"Error: {error.message}")
            return 0.0 if restart else None
        record.state, record.reason, record.message = "running", "", ""
        record.started_at = record.process.started_at
        self._event(pod, NORMAL, "Created", f"Created container {record.name}")
        self._event(pod, NORMAL, "Started", f"Started container {record.name}")
        return None

    def _new_log(self) -> ContainerLog:
        return ContainerLog(self.config.container_log_max_size, self.config.container_log_max_files)

    def _start_simulated(self, pod: JsonObject, record: _Container) -> None:
        record.container_id = "containerd://" + secrets.token_hex(32)
        record.started_at = datetime.now(UTC)
        record.log = self._new_log()
        if record.init:
            record.finished_at = record.started_at
            record.log.close()
            record.state, record.reason, record.exit_code, record.message = (
                "terminated", "Completed", 0, "",
            )  # fmt: skip
        else:
            record.state, record.reason, record.message = "running", "", ""
        self._event(pod, NORMAL, "Created", f"Created container {record.name}")
        self._event(pod, NORMAL, "Started", f"Started container {record.name}")

    def _exited(
        self,
        pod: JsonObject,
        run: _PodRun,
        record: _Container,
        container: JsonObject,
        status: ExitStatus,
    ) -> None:
        record.state = "terminated"
        record.exit_code = status.exit_code
        record.started_at, record.finished_at = status.started_at, status.finished_at
        if status.oom_killed:
            record.reason = "OOMKilled"
        else:
            record.reason = "Completed" if status.exit_code == 0 else "Error"
        record.message = self._termination_message(record, container)
        record.retry_at = 0.0

    def _termination_message(self, record: _Container, container: JsonObject) -> str:
        message = ""
        if record.termination_log is not None:
            with contextlib.suppress(OSError), record.termination_log.open("rb") as handle:
                message = handle.read(TERMINATION_MESSAGE_MAX).decode(errors="replace")
        policy = container.get("terminationMessagePolicy", "File")
        fallback = policy == "FallbackToLogsOnError" and record.exit_code != 0
        if not message and fallback and record.log is not None:
            message = record.log.tail(FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES)
        return message

    def _backoff(self, failures: int) -> float:
        return float(min(self.config.backoff * (2 ** max(failures, 0)), MAX_BACKOFF))

    def _phase(self, run: _PodRun, policy: str) -> str:
        """The pod phase from its containers, by the kubelet's ``getPhase`` rules."""
        for name in run.init_order:
            record = run.containers[name]
            if record.state == "terminated" and record.exit_code == 0:
                continue
            if record.state == "terminated" and policy == "Never":
                return "Failed"
            return "Pending"
        waiting = running = stopped = succeeded = 0
        for name in run.main_order:
            record = run.containers[name]
            if record.state == "running":
                running += 1
            elif record.state == "terminated":
                stopped += 1
                succeeded += record.exit_code == 0
            elif record.last_terminated is not None:
                stopped += 1
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if stopped:
            if policy == "Always":
                return "Running"
            if stopped == succeeded:
                return "Succeeded"
            return "Failed" if policy == "Never" else "Running"
        return "Pending"

    # -- container configuration --

    def _lookup(self, kind: str, namespace: str, name: str) -> JsonObject | None:
        rtype = r.SECRETS if kind == "secrets" else r.CONFIG_MAPS
        try:
            return self.store.get(rtype, namespace, name)
        except ApiError:
            return None

    def _pull_secrets(self, pod: JsonObject) -> list[JsonObject]:
        found = []
        for ref in pod["spec"].get("imagePullSecrets") or []:
            name = ref.get("name")
            if name:  # empty names and missing secrets are skipped, as by the kubelet
                secret = self._lookup("secrets", pod["metadata"]["namespace"], name)
                if secret is not None:
                    found.append(secret)
        return found

    def _mount(self, pod: JsonObject, run: _PodRun) -> bool:
        """Set up the pod's volumes (only pods with a runnable container need files)."""
        if not any(c.runnable for c in run.containers.values()):
            run.volumes = {}
            return True
        try:
            run.volumes = mount_volumes(pod, run.directory, self._lookup, _token)
        except MountError as error:
            if error.message != run.mount_error:
                self._event(pod, WARNING, "FailedMount", error.message)
            run.mount_error = error.message
            return False
        run.mount_error = ""
        return True

    def _process_spec(
        self, pod: JsonObject, run: _PodRun, record: _Container, container: JsonObject
    ) -> ProcessSpec:
        """argv, env and directories of a runnable container, as the kubelet builds them."""
        assert record.runnable is not None and run.volumes is not None
        base = run.directory / "containers" / record.name
        home, workdir = base / "home", base / "workdir"
        for directory in (home, workdir):
            directory.mkdir(parents=True, exist_ok=True)
        record.termination_log = base / "termination-log"
        record.termination_log.write_bytes(b"")
        mounts = container_mounts(container, run.volumes, record.termination_log)
        services = self.config.services

        def rewrite(text: str) -> str:
            text = mounts.rewrite(text)
            for address, local in services.items():
                text = text.replace(address, local)
            return text

        env = container_env(pod, container, self._lookup, rewrite, self.config.allocatable)
        image_env = dict(record.runnable.env)
        hostname = pod["spec"].get("hostname") or pod["metadata"]["name"]
        full_env = {"PATH": self.config.path, "HOSTNAME": hostname, "HOME": str(home)}
        tmp = mounts.host_path("/tmp")
        if tmp is not None:
            full_env["TMPDIR"] = str(tmp)
        full_env |= image_env | env
        argv = _argv(container, record.runnable, rewrite, full_env)
        working_dir = container.get("workingDir")
        cwd = (mounts.host_path(working_dir) if working_dir else None) or workdir
        return ProcessSpec(argv, full_env, cwd, memory_limit_bytes(container))

    # -- stopping --

    def _fail(self, pod: JsonObject, run: _PodRun, reason: str, message: str) -> None:
        """End the pod as Failed (e.g. DeadlineExceeded): stop its containers."""
        run.phase, run.reason, run.message, run.terminal = "Failed", reason, message, True
        self._event(pod, WARNING, reason, message)
        grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self._stop_containers(pod, run, grace, wait=True)

    def _stop_containers(self, pod: JsonObject, run: _PodRun, grace: float, wait: bool) -> None:
        """Stop every container: processes get SIGTERM then SIGKILL; simulated ones end."""
        processes = run.processes()
        for record in run.containers.values():
            if record.process is not None and record.process.running:
                self._event(pod, NORMAL, "Killing", f"Stopping container {record.name}")
        stoppers = [
            threading.Thread(target=process.stop, args=(grace,), daemon=True)
            for process in processes
        ]
        for stopper in stoppers:
            stopper.start()
        if wait:
            for stopper in stoppers:
                stopper.join()
        for record in run.containers.values():
            if record.process is not None and record.process.status is not None:
                if record.state == "running":
                    container = _container_spec(pod, record.name)
                    self._exited(pod, run, record, container, record.process.status)
            elif record.state == "running" and record.process is None:
                record.state, record.exit_code, record.reason = "terminated", 137, "Error"
                record.finished_at = datetime.now(UTC)

    def _terminate(self, key: PodKey, pod: JsonObject, run: _PodRun | None) -> float | None:
        """Graceful deletion: stop the containers, then remove the pod object."""
        if run is not None and run.processes():
            if not run.stopping:
                run.stopping = True
                meta = pod["metadata"]
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)

                def stop() -> None:
                    self._stop_containers(pod, run, float(grace), wait=True)
                    self._reconciler.queue.add(key)

                threading.Thread(target=stop, name=f"stop-{key[1]}", daemon=True).start()
            return None
        if run is not None:
            self._stop_containers(pod, run, 0, wait=True)
            if not run.terminal:
                run.phase = self._phase(run, pod["spec"].get("restartPolicy", "Always"))
            self._write_status(pod, run)
            self._forget(key, run, grace=0)
        with contextlib.suppress(ApiError):
            self.store.delete(
                r.PODS, key[0], key[1], uid=pod["metadata"]["uid"], grace_period_seconds=0
            )
        return None

    def _forget(self, key: PodKey, run: _PodRun, grace: float) -> None:
        for process in run.processes():
            process.stop(grace)
        with self._runs_lock:
            if self._runs.get(key) is run:
                del self._runs[key]
        shutil.rmtree(run.directory, ignore_errors=True)

    # -- status --

    def _write_status(self, pod: JsonObject, run: _PodRun) -> None:
        status = self._status(pod, run)
        if status == pod.get("status"):
            return
        new = dict(pod, status=status)
        new["metadata"] = dict(pod["metadata"])
        new["metadata"].pop("resourceVersion", None)
        with contextlib.suppress(ApiError):
            self.store.update_status(r.PODS, pod["metadata"]["namespace"], new)

    def _status(self, pod: JsonObject, run: _PodRun) -> JsonObject:
        old = pod.get("status") or {}
        init_done = all(
            run.containers[n].state == "terminated" and run.containers[n].exit_code == 0
            for n in run.init_order
        )
        unready = [n for n in run.main_order if run.containers[n].state != "running"]
        incomplete = [
            n
            for n in run.init_order
            if not (run.containers[n].state == "terminated" and run.containers[n].exit_code == 0)
        ]
        completed = run.phase in ("Succeeded", "Failed")
        if completed:
            not_initialized = not_ready = ("PodCompleted", "")
        else:
            not_initialized = (
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            )
            not_ready = (
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(unready)}]",
            )
        ready = not unready and not completed
        conditions = [
            self._condition(run, "PodReadyToStartContainers", run.ready_to_start),
            self._condition(run, "Initialized", init_done, *not_initialized),
            self._condition(run, "Ready", ready, *not_ready),
            self._condition(run, "ContainersReady", ready, *not_ready),
            self._condition(run, "PodScheduled", True),
        ]
        status: JsonObject = {
            "phase": run.phase,
            "conditions": conditions,
            "hostIP": run.host_ip,
            "hostIPs": [{"ip": run.host_ip}],
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": run.start_time,
            "containerStatuses": [
                _container_status(run.containers[n], init_done) for n in run.main_order
            ],
        }
        if run.init_order:
            status["initContainerStatuses"] = [
                _container_status(run.containers[n], init_done) for n in run.init_order
            ]
        if "qosClass" in old:
            status["qosClass"] = old["qosClass"]
        if run.reason:
            status["reason"], status["message"] = run.reason, run.message
        return status

    def _condition(
        self, run: _PodRun, kind: str, ok: bool, reason: str = "", message: str = ""
    ) -> JsonObject:
        value = "True" if ok else "False"
        previous = run.transitions.get(kind)
        if previous is None or previous[0] != value:
            run.transitions[kind] = (value, _now())
        condition: JsonObject = {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": run.transitions[kind][1],
        }
        if not ok and reason:
            condition["reason"] = reason
            if message:
                condition["message"] = message
        return condition

    def _event(self, pod: JsonObject, kind: str, reason: str, message: str) -> None:
        node = pod["spec"].get("nodeName")
        record_event(self.store, pod, kind, reason, message, COMPONENT, node)


# --- helpers ------------------------------------------------------------------------------


def sync_backoff(period: float, draw: Callable[[], float] = random.random) -> float:
    """``period`` stretched by a random factor in [1, 1.5), as the pod worker's
    ``wait.Jitter(backOffPeriod, 0.5)`` after a failed sync."""
    return period * (1 + SYNC_BACKOFF_JITTER * draw())


def _update_view(pod: JsonObject) -> JsonObject:
    """The parts of a pod whose change the kubelet's config source treats as an update."""
    meta = pod["metadata"]
    return {
        "spec": pod["spec"],
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
    }


def _or_init(init_names: list[str]) -> str:
    return f" or one of the init containers: [{' '.join(init_names)}]" if init_names else ""


def _key(obj: JsonObject) -> PodKey:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _token(namespace: str, service_account: str, audience: str, seconds: int) -> str:
    """An opaque service-account token (the emulator does not issue verifiable JWTs)."""
    return f"sandbox-token.{namespace}.{service_account}.{secrets.token_urlsafe(24)}"


def _container_spec(pod: JsonObject, name: str) -> JsonObject:
    spec = pod["spec"]
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if container.get("name") == name:
            return dict(container)
    return {}


def _argv(
    container: JsonObject,
    image: RunnableImage,
    rewrite: Callable[[str], str],
    env: Mapping[str, str],
) -> list[str]:
    """ENTRYPOINT/CMD overridden by command/args, mount paths rewritten, ``$(VAR)`` expanded."""
    command = container.get("command")
    args = container.get("args")
    if command:
        words = list(command) + list(args or [])
    elif args is not None:
        words = list(image.entrypoint) + list(args)
    else:
        words = list(image.entrypoint) + list(image.cmd)
    return [expand(rewrite(str(word)), env) for word in words]


def _pull_policy(container: JsonObject) -> str:
    """``imagePullPolicy``, defaulted as the API server does: Always for ``latest``."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _affinity_node_names(spec: JsonObject) -> set[str] | None:
    """Node names a ``matchFields metadata.name In`` affinity allows (DaemonSet pods)."""
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms")
    )
    if not terms:
        return None
    names: set[str] = set()
    for term in terms:
        for field_ in term.get("matchFields") or []:
            if field_.get("key") == "metadata.name" and field_.get("operator") == "In":
                names.update(field_.get("values") or [])
    return names or None


def _container_status(record: _Container, initialized: bool) -> JsonObject:
    status: JsonObject = {
        "name": record.name,
        "image": record.pulled.image if record.pulled else record.image,
        "imageID": record.pulled.image_id if record.pulled else "",
        "ready": record.state == "running"
        or (record.init and record.state == "terminated" and record.exit_code == 0),
        "restartCount": record.restart_count,
        "started": record.state == "running",
        "lastState": {"terminated": record.last_terminated} if record.last_terminated else {},
    }
    if record.container_id and record.state in ("running", "terminated"):
        status["containerID"] = record.container_id
    if record.state == "running":
        started = record.started_at or datetime.now(UTC)
        status["state"] = {"running": {"startedAt": _stamp(started)}}
    elif record.state == "terminated":
        status["state"] = {"terminated": record.terminated}
    else:
        default = "ContainerCreating" if initialized and not record.init else "PodInitializing"
        waiting: JsonObject = {"reason": record.reason or default}
        if record.message:
            waiting["message"] = record.message
        status["state"] = {"waiting": waiting}
    if record.init:
        status["started"] = False
    return status
