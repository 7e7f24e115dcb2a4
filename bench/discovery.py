"""Discovery and planning at scale: a synthetic cluster in the emulator, the agent's
discover -> fetch pull secrets -> plan step in a separate process over real HTTP.

The emulator runs in this process (seeded through its object store, no controllers); the
agent runs in a fresh interpreter (:mod:`bench.discovery_agent`), so its wall time, CPU
time and peak RSS are its own. The emulator's request log counts every API call.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.agentproc import BenchmarkError, run_agent
from bench.cluster import ClusterShape, build_cluster, seed
from ocscan.sandbox.kube.server import KubeEmulator

# What discovery lists in every target namespace (or once, cluster-wide).
LISTED_KINDS = ("pods", "replicasets", "jobs", "serviceaccounts")
# What it lists once per cycle whatever the scope: Nodes (one page: up to 500 nodes).
CLUSTER_LISTS = ("nodes",)


@dataclass
class DiscoveryResult:
    """One cluster size, one discovery scope, several runs."""

    shape: ClusterShape
    scope: str  # "cluster" (the default: every namespace) or "namespaces" (listed one by one)
    seed_seconds: float
    expected_targets: int  # unique running digests
    pull_secrets: int  # distinct pull secrets the pods use
    pod_level_workloads: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def request_bound(self) -> int:
        """The issue's bound: (listed kinds x namespaces) + the list of Nodes + one GET per
        distinct pull secret."""
        return len(LISTED_KINDS) * self.shape.namespaces + len(CLUSTER_LISTS) + self.pull_secrets

    def median(self, key: str) -> float:
        return float(statistics.median(run[key] for run in self.runs))

    def maximum(self, key: str) -> float:
        return float(max(run[key] for run in self.runs))

    @property
    def requests(self) -> int:
        """API requests of one run (every run makes the same ones)."""
        return int(self.maximum("requests"))

    def as_json(self) -> dict[str, Any]:
        return {
            "shape": vars(self.shape),
            "scope": self.scope,
            "seed_seconds": self.seed_seconds,
            "expected_targets": self.expected_targets,
            "pull_secrets": self.pull_secrets,
            "pod_level_workloads": self.pod_level_workloads,
            "request_bound": self.request_bound,
            "runs": self.runs,
        }


def _request_counts(emulator: KubeEmulator) -> dict[str, Any]:
    records = emulator.request_log.records()
    by_call = Counter(f"{record.verb} {record.resource}" for record in records)
    return {
        "requests": len(records),
        "by_call": dict(sorted(by_call.items())),
        "list_pages": sum(n for call, n in by_call.items() if call.startswith("list ")),
        "secret_gets": by_call.get("get secrets", 0),
        "secret_lists": by_call.get("list secrets", 0) + by_call.get("watch secrets", 0),
        "failed_requests": sum(1 for record in records if record.code >= 400),
        "server_seconds": sum(record.duration for record in records),
    }


def _check(result: DiscoveryResult, run: dict[str, Any], expected_digests: set[str]) -> None:
    """The plan must be exactly what the cluster runs: a failed check is a broken product."""
    shape = result.shape
    planned = {reference.rpartition("@")[2] for reference in run.pop("target_references")}
    problems = []
    if planned != expected_digests or run["targets"] != len(expected_digests):
        problems.append(f"{run['targets']} targets for {len(expected_digests)} running digests")
    if run["credentialed_targets"] != shape.private_images:
        problems.append(
            f"{run['credentialed_targets']} targets with credentials, "
            f"{shape.private_images} private images"
        )
    if run["workloads"] != shape.workloads:
        problems.append(f"{run['workloads']} workloads of {shape.workloads}")
    if run["unplanned"] or run["problems"]:
        problems.append(f"{run['unplanned']} unplanned uses, {run['problems']} secret problems")
    if run["secret_gets"] != result.pull_secrets or run["secret_lists"]:
        problems.append(
            f"{run['secret_gets']} secret GETs for {result.pull_secrets} pull "
            f"secrets, {run['secret_lists']} secret lists/watches"
        )
    if run["failed_requests"]:
        problems.append(f"{run['failed_requests']} API requests failed")
    if problems:
        raise BenchmarkError(f"{shape.pods} pods ({result.scope}): " + "; ".join(problems))


def run_discovery(
    shape: ClusterShape,
    *,
    runs: int,
    scopes: tuple[str, ...] = ("cluster",),
    profile_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[DiscoveryResult]:
    """Seed a cluster of ``shape`` and measure the agent ``runs`` times per scope
    (``profile_dir``: profile one more run per scope there, with pyinstrument)."""
    cluster = build_cluster(shape)
    expected = {image_id.rpartition("@")[2] for image_id in cluster.running_digests}
    results = []
    # Validation off: the seeded objects are generated, and seeding 10k pods must be quick.
    with KubeEmulator(validate=False) as emulator, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        pods = seed(emulator.store, cluster)
        seed_seconds = time.perf_counter() - started
        if pods != shape.pods:
            raise BenchmarkError(f"seeded {pods} pods, wanted {shape.pods}")
        kubeconfig = emulator.write_kubeconfig(Path(tmp) / "kubeconfig")
        namespaces = sorted({workload.namespace for workload in cluster.workloads})
        for scope in scopes:
            result = DiscoveryResult(
                shape=shape,
                scope=scope,
                seed_seconds=seed_seconds,
                expected_targets=len(expected),
                pull_secrets=len(cluster.pull_secrets_used),
                pod_level_workloads=cluster.pod_level_workloads,
            )
            args = [str(kubeconfig)]
            if scope == "namespaces":
                args += ["--namespaces", ",".join(namespaces)]
            for index in range(runs):
                emulator.request_log.clear()
                run = run_agent("bench.discovery_agent", args)
                run |= _request_counts(emulator)
                _check(result, run, expected)
                result.runs.append(run)
                log(
                    f"  {shape.pods} pods ({scope}) run {index + 1}/{runs}: "
                    f"{run['wall_seconds']:.2f} s, {run['peak_rss_mib']:.0f} MiB, "
                    f"{run['requests']} requests, {run['targets']} targets"
                )
            if profile_dir is not None:
                target = profile_dir / f"discovery-{shape.pods}-{scope}.txt"
                run_agent("bench.discovery_agent", args, profile=target)
                log(f"  profile: {target}")
            results.append(result)
    return results
