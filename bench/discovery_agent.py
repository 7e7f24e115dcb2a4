"""The measured side of the discovery benchmark, in a process of its own.

``python -m bench.discovery_agent KUBECONFIG [--namespaces a,b,...]`` runs the cycle's own
discover -> fetch pull secrets -> plan step (lightkube over real HTTP, as ``ocscan scan``)
once and prints one JSON object: wall and CPU seconds, peak RSS, and what was planned.

Peak RSS is the kernel's high-water mark of this process's memory (``VmHWM``). Not
``ru_maxrss``: Linux carries the parent's peak into a child across fork and exec, so it
would report the emulator's memory instead of the agent's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.cpu import own_seconds
from ocscan.config import Config, parse_config
from ocscan.cycle import _plan  # the cycle's own discover -> fetch secrets -> plan step
from ocscan.kube.client import make_client


def _rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


async def measure(kubeconfig: Path, config: Config) -> dict[str, Any]:
    """Discover and plan once; what it cost and what it planned."""
    client = make_client(kubeconfig)
    try:
        rss_before = _rss_mib()
        cpu_before = own_seconds()
        started = time.perf_counter()
        plan, namespaces = await _plan(client, config)
        wall = time.perf_counter() - started
        cpu = own_seconds() - cpu_before
    finally:
        await client.close()
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "rss_before_mib": rss_before,
        "peak_rss_mib": _rss_mib(),
        "targets": len(plan.targets),
        "target_references": sorted(str(t.reference) for t in plan.targets),
        "credentialed_targets": sum(1 for t in plan.targets if t.credentials),
        "uses": plan.use_count,
        "unplanned": len(plan.unplanned),
        "problems": sum(1 for t in plan.targets for use in t.uses if use.problems),
        "workloads": len({use.workload for t in plan.targets for use in t.uses}),
        "namespaces": len(namespaces),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.discovery_agent")
    parser.add_argument("kubeconfig", type=Path)
    parser.add_argument("--namespaces", default="", help="comma-separated; empty: all")
    args = parser.parse_args(argv)
    namespaces = [n for n in args.namespaces.split(",") if n]
    config = parse_config({"targets": {"namespaces": namespaces}})
    result = asyncio.run(measure(args.kubeconfig, config))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
