"""The measured side of the real-cycle benchmark, in a process of its own.

``python -m bench.realcycle_agent`` reads one job as JSON on stdin (stdin, not argv: the job
carries the registry password for the direct Trivy runs), runs one mode once, and prints its
wall seconds, CPU seconds (its own and its children's) and number of scans as JSON. The
sandbox (emulator, controllers, kubelet) runs in the parent, so the agent here shares no
interpreter lock with the cluster it scans.

Modes:
``ocscan``: one :func:`ocscan.cycle.run_cycle`, as ``ocscan scan`` runs it.
``per_workload``: the same discovery, planning and scanner pods, but one scan per
workload (what trivy-operator and GitLab's agent do, here still without their per-scan DB
download).
``lower_bound``: direct ``trivy image`` client runs of each unique image against the same
Trivy server, at the same concurrency, without Kubernetes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from pydantic import SecretStr

from bench.agentproc import BenchmarkError
from bench.cpu import children_seconds, own_seconds
from ocscan.config import Config, parse_config
from ocscan.cycle import _plan, run_cycle  # _plan: the cycle's own discover+plan step
from ocscan.kube.client import make_client
from ocscan.kube.workloads import WorkloadRef
from ocscan.registry.credential import RegistryCredential
from ocscan.report.model import SCANNED
from ocscan.scan.executor import ScanExecutor
from ocscan.scan.plan import ContainerUse, ScanPlan, ScanTarget
from ocscan.scan.podwatch import PodTracker
from ocscan.scan.report import ScanResult
from ocscan.scan.runner import scan_image
from ocscan.scan.trivy_command import ClientServer


def per_workload_targets(plan: ScanPlan) -> list[ScanTarget]:
    """The peers' way: each workload scans its own images, shared digests or not."""
    targets: list[ScanTarget] = []
    for target in plan.targets:
        by_workload: dict[WorkloadRef, list[ContainerUse]] = defaultdict(list)
        for use in target.uses:
            by_workload[use.workload].append(use)
        targets.extend(
            ScanTarget(
                reference=target.reference,
                credentials=list(target.credentials),
                uses=uses,
                secrets_consulted=list(target.secrets_consulted),
            )
            for uses in by_workload.values()
        )
    return targets


Findings = set[tuple[str, str]]  # (installed package, vulnerability id)


async def ocscan_cycle(
    client: AsyncClient, config: Config, workloads: int, expected: Findings
) -> int:
    """One ocscan cycle; the number of scans. Every workload must come out scanned, with the
    findings its image has."""
    report = await run_cycle(client, config)
    scanned = [
        w
        for w in report.workloads
        if all(
            c.status == SCANNED
            and {(f.package_name, f.vulnerability_id) for f in c.vulnerabilities} == expected
            for c in w.containers
        )
    ]
    if len(scanned) != workloads or len(report.workloads) != workloads:
        raise BenchmarkError(f"ocscan scanned {len(scanned)} of {workloads} workloads right")
    return report.cycle.scans


async def per_workload_cycle(
    client: AsyncClient, config: Config, workloads: int, expected: Findings
) -> int:
    """The same discovery and executor, one scanner pod per workload; the number of scans."""
    async with PodTracker(client, config.scanner.namespace) as tracker:
        executor = ScanExecutor(client, config.scanner, tracker)
        await executor.sweep()
        plan, _ = await _plan(client, config)
        targets = per_workload_targets(plan)
        try:
            outcomes = await asyncio.gather(*(executor.scan(t) for t in targets))
        finally:
            await executor.drain()
    failures = [o.failure for o in outcomes if o.result is None]
    if failures or len(targets) != workloads:
        raise BenchmarkError(f"per-workload: {len(targets)} scans, failures: {failures}")
    for outcome in outcomes:
        assert outcome.result is not None
        found = {(f.package_name, f.vulnerability_id) for f in outcome.result.findings}
        if found != expected:
            raise BenchmarkError(f"a per-workload scan found {sorted(found)}")
    return len(targets)


async def lower_bound(
    images: list[str],
    server_url: str,
    token: str,
    credential: RegistryCredential,
    concurrency: int,
    expected: Findings,
) -> list[float]:
    """Direct ``trivy image`` client runs of ``images``; the seconds of each."""
    mode = ClientServer(server_url=server_url, token=SecretStr(token))
    gate = asyncio.Semaphore(concurrency)

    async def scan(image: str) -> tuple[ScanResult, float]:
        async with gate:
            started = time.perf_counter()
            result = await scan_image(image, mode, credential=credential)
            return result, time.perf_counter() - started

    results = await asyncio.gather(*(scan(image) for image in images))
    for result, _ in results:
        found = {(f.package_name, f.vulnerability_id) for f in result.findings}
        if found != expected:
            raise BenchmarkError(f"direct trivy run found {sorted(found)}")
    return [seconds for _, seconds in results]


class _Stopwatch:
    """Wall seconds, this process's CPU seconds and its children's, from start to stop."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._own = own_seconds()
        self._children = children_seconds()

    def stop(self, **extra: Any) -> dict[str, Any]:
        return {
            "seconds": time.perf_counter() - self._wall,
            "agent_cpu": own_seconds() - self._own,
            "agent_children_cpu": children_seconds() - self._children,
            **extra,
        }


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` once: its seconds (the cycle alone, as the long-running agent, which
    keeps its client, spends them), CPU seconds and number of scans."""
    mode = job["mode"]
    expected = {(package, vulnerability) for package, vulnerability in job["expected"]}
    if mode == "lower_bound":
        credential = RegistryCredential.of(job["username"], job["password"])
        watch = _Stopwatch()
        each = await lower_bound(
            job["images"],
            job["trivy_url"],
            job["trivy_token"],
            credential,
            job["concurrency"],
            expected,
        )
        return watch.stop(scans=len(each), scan_seconds=each)
    cycles = {"ocscan": ocscan_cycle, "per_workload": per_workload_cycle}
    if mode not in cycles:
        raise BenchmarkError(f"unknown mode {mode!r}")
    config = parse_config(job["config"])
    client = make_client(Path(job["kubeconfig"]))
    try:
        watch = _Stopwatch()
        scans = await cycles[mode](client, config, job["workloads"], expected)
        return watch.stop(scans=scans)
    finally:
        await client.close()


def main() -> None:
    json.dump(asyncio.run(run_job(json.load(sys.stdin))), sys.stdout)


if __name__ == "__main__":
    main()
