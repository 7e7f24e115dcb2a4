"""The real-cycle comparison on the local sandbox: ocscan, one scan per workload, and the
lower bound of direct ``trivy image`` client runs, measured in the same run on one stack.

The sandbox is real: the docker-registry server holds the private images, the Trivy server
holds the DB, and scanner pods run as processes under the emulator's kubelet. The sandbox
lives in this process; each measured run happens in a fresh process
(:mod:`bench.realcycle_agent`), as the agent would run next to a cluster. Besides wall
time, each run accounts for the CPU of every party: scanners, agent, the emulated cluster
(API server, controllers, kubelet), the Trivy server and the registry.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.agentproc import run_agent
from bench.cpu import children_seconds, own_seconds, pid_seconds
from bench.timeline import Phases, ScannerTimeline
from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.oci import build_alpine_image, push_image
from ocscan.sandbox.stack import AGENT_NAMESPACE, REGISTRY_USER, Sandbox, deployment
from ocscan.sandbox.trivydb import SAMPLE_ALPINE_VERSION, SAMPLE_APP

PULL_SECRET = "registry-pull"
PULL_ACCOUNT = "puller"
MODES = ("ocscan", "per_workload", "lower_bound")
CPU_PARTS = ("scanners", "agent", "cluster", "trivy_server", "registry")


@dataclass(frozen=True)
class PushedImage:
    reference: str  # by tag, as a Deployment names it
    digest_reference: str  # repository@digest, what a direct Trivy run scans


@dataclass
class RealCycleResult:
    """Per mode, the measurements of every run, and what the runs had in common."""

    workloads: int
    images: int
    concurrency: int
    namespaces: int
    pod_level_workloads: int
    image_files: int  # extra npm package manifests per image (0: the small sample image)
    runs: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
    scans: dict[str, int] = field(default_factory=dict)
    direct_scan_seconds: list[float] = field(default_factory=list)  # each direct Trivy run
    phases: dict[str, Phases] = field(default_factory=dict)  # scanner pods, per mode

    @property
    def modes(self) -> list[str]:
        return [mode for mode in MODES if self.runs.get(mode)]

    def seconds(self, mode: str) -> list[float]:
        return [run["seconds"] for run in self.runs[mode]]

    def median(self, mode: str, key: str = "seconds") -> float:
        return statistics.median(run[key] for run in self.runs[mode])

    def ratio(self, mode: str, other: str) -> float:
        """Median over runs of the per-run ratio (both measured in the same run)."""
        pairs = zip(self.seconds(mode), self.seconds(other), strict=True)
        return statistics.median(a / b for a, b in pairs)

    def as_json(self) -> dict[str, Any]:
        ratios = {
            f"{mode}/lower_bound": self.ratio(mode, "lower_bound")
            for mode in self.modes
            if mode != "lower_bound"
        }
        if "per_workload" in self.modes:
            ratios["ocscan/per_workload"] = self.ratio("ocscan", "per_workload")
        return {
            "workloads": self.workloads,
            "images": self.images,
            "concurrency": self.concurrency,
            "namespaces": self.namespaces,
            "pod_level_workloads": self.pod_level_workloads,
            "image_files": self.image_files,
            "runs": dict(self.runs),
            "scans": self.scans,
            "median_seconds": {mode: self.median(mode) for mode in self.modes},
            "ratios": ratios,
            "direct_scan_median_seconds": statistics.median(self.direct_scan_seconds),
            "phases": {mode: vars(phases) for mode, phases in self.phases.items()},
        }


def _image_files(index: int, manifests: int) -> dict[str, bytes]:
    files = {"etc/bench-image": f"{index}\n".encode()}
    for number in range(manifests):  # a Node.js application's dependencies
        manifest = {"name": f"dep-{number}", "version": f"1.{index}.{number % 10}"}
        files[f"app/node_modules/dep-{number}/package.json"] = json.dumps(manifest).encode()
    return files


def push_images(sandbox: Sandbox, count: int, manifests: int = 0) -> list[PushedImage]:
    """``count`` distinct private images: the vulnerable sample app, each with its own file,
    plus ``manifests`` npm package manifests for Trivy to analyse."""
    assert sandbox.registry is not None
    registry = sandbox.registry
    pushed = []
    for index in range(count):
        image = build_alpine_image(
            SAMPLE_APP.packages,
            alpine_version=SAMPLE_ALPINE_VERSION,
            extra_files=_image_files(index, manifests),
        )
        repository = f"bench/app-{index:02d}"
        digest = push_image(
            image,
            registry.url,
            repository,
            "1.0",
            credential=sandbox.credential,
            ca_file=registry.ca_file,
        )
        pushed.append(
            PushedImage(
                reference=f"{registry.address}/{repository}:1.0",
                digest_reference=f"{registry.address}/{repository}@{digest}",
            )
        )
    return pushed


def create_workloads(
    sandbox: Sandbox, images: list[PushedImage], workloads: int, namespaces: list[str]
) -> int:
    """``workloads`` Deployments over ``images``: even ones name the pull secret, odd ones get
    it from their service account. Waits until every pod runs; returns the pod-level count."""
    for namespace in namespaces:
        sandbox.namespace(namespace)
        sandbox.pull_secret(PULL_SECRET, namespace)
        sandbox.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": PULL_ACCOUNT, "namespace": namespace},
                "imagePullSecrets": [{"name": PULL_SECRET}],
            }
        )
    pod_level = 0
    for index in range(workloads):
        name = f"svc-{index:03d}"
        image = images[index % len(images)].reference
        namespace = namespaces[index % len(namespaces)]
        if index % 2 == 0:
            pod_level += 1
            sandbox.apply(deployment(name, namespace, image, pull_secrets=[PULL_SECRET]))
        else:
            sandbox.apply(deployment(name, namespace, image, service_account=PULL_ACCOUNT))
    for position, namespace in enumerate(namespaces):
        expected = len(range(position, workloads, len(namespaces)))
        sandbox.wait_for_running(namespace, expected, timeout=60.0)
    return pod_level


def _measured_run(
    sandbox: Sandbox, job: dict[str, Any], profile: Path | None = None
) -> dict[str, Any]:
    """One run of ``job`` with the CPU seconds of every process taking part."""
    assert sandbox.trivy is not None and sandbox.registry is not None
    servers = {"trivy_server": sandbox.trivy.pid, "registry": sandbox.registry.pid}
    before = {name: pid_seconds(pid) for name, pid in servers.items()}
    own, children = own_seconds(), children_seconds()
    answer = run_agent("bench.realcycle_agent", stdin=job, profile=profile)
    # This process: the emulator, its controllers and kubelet (the main thread only waits).
    cluster = own_seconds() - own
    # Reaped children: the agent process, its own children, and the kubelet's scanners.
    agent_total = answer["agent_cpu"] + answer["agent_children_cpu"]
    kubelet_scanners = max(0.0, children_seconds() - children - agent_total)
    answer |= {
        "cpu_scanners": answer["agent_children_cpu"] + kubelet_scanners,
        "cpu_agent": answer["agent_cpu"],
        "cpu_cluster": cluster,
        **{f"cpu_{name}": pid_seconds(pid) - before[name] for name, pid in servers.items()},
    }
    return answer


def run_real_cycle(
    directory: Path,
    *,
    runs: int,
    workloads: int = 60,
    images: int = 12,
    concurrency: int = 4,
    namespaces: int = 4,
    image_files: int = 0,
    modes: Sequence[str] = MODES,
    profile_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> RealCycleResult:
    """Start the sandbox, create the workloads, and time each mode ``runs`` times
    (``profile_dir``: profile one more ocscan cycle there, with pyinstrument)."""
    with Sandbox(directory, samples=False) as sandbox:
        assert sandbox.trivy is not None and sandbox.kube is not None
        pushed = push_images(sandbox, images, image_files)
        names = [f"bench-{index}" for index in range(namespaces)]
        pod_level = create_workloads(sandbox, pushed, workloads, names)
        config = {
            "targets": {"namespaces": names},
            "scanner": {
                "namespace": AGENT_NAMESPACE,
                "concurrency": concurrency,
                "timeout_seconds": 120,
            },
        }
        cluster_job = {
            "kubeconfig": str(sandbox.kubeconfig),
            "config": config,
            "workloads": workloads,
            "expected": sorted(SAMPLE_APP.expected_findings),
        }
        direct_job = {
            "images": [image.digest_reference for image in pushed],
            "trivy_url": sandbox.trivy.url,
            "trivy_token": sandbox.trivy_token,
            "username": REGISTRY_USER,
            "password": sandbox.registry_password,
            "concurrency": concurrency,
            "expected": sorted(SAMPLE_APP.expected_findings),
        }
        jobs = {
            "ocscan": {"mode": "ocscan", **cluster_job},
            "per_workload": {"mode": "per_workload", **cluster_job},
            "lower_bound": {"mode": "lower_bound", **direct_job},
        }
        result = RealCycleResult(
            workloads=workloads,
            images=images,
            concurrency=concurrency,
            namespaces=namespaces,
            pod_level_workloads=pod_level,
            image_files=image_files,
        )
        timelines = {mode: ScannerTimeline(AGENT_NAMESPACE) for mode in modes}
        store = sandbox.kube.store
        order = [mode for mode in MODES if mode in modes]
        for run in range(runs):
            # Rotate the order so that no mode always runs first or last.
            for mode in order[run % len(order) :] + order[: run % len(order)]:
                unsubscribe = [
                    store.subscribe(timelines[mode], rtype) for rtype in (r.PODS, r.SECRETS)
                ]
                try:
                    answer = _measured_run(sandbox, jobs[mode])
                finally:
                    for stop in unsubscribe:
                        stop()
                result.direct_scan_seconds.extend(answer.pop("scan_seconds", ()))
                result.scans[mode] = answer.pop("scans")
                result.runs[mode].append(answer)
                log(
                    f"  real cycle {run + 1}/{runs} {mode}: {answer['seconds']:.2f} s, "
                    f"{result.scans[mode]} scans"
                )
        result.phases = {mode: timelines[mode].phases() for mode in order if mode != "lower_bound"}
        if profile_dir is not None:
            target = profile_dir / f"cycle-ocscan-{image_files}-files.txt"
            _measured_run(sandbox, jobs["ocscan"], profile=target)
            log(f"  profile: {target}")
        return result
