"""Cycles in one agent namespace never overlap: ``ocscan scan`` holds the agents' lease too."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from agent_support import (
    agent_config,
    agent_document,
    running_agent,
    write_yaml,
)

from ocscan.sandbox.registry import SilentRegistry
from ocscan.sandbox.stack import PULL_SECRET, Sandbox, deployment, docker_config_secret
from ocscan.sandbox.trivydb import SAMPLE_MINIMAL
from scanner_objects import managed_objects


def scan(sandbox: Sandbox, config_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocscan", "scan", "--kubeconfig", str(sandbox.kubeconfig),
         "--config", str(config_file), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_a_scan_refuses_to_run_while_an_agent_leads(
    sandbox: Sandbox, namespace: str, tmp_path: Path
) -> None:
    image = sandbox.image(SAMPLE_MINIMAL.repository).reference
    sandbox.apply(deployment("app", namespace, image, pull_secrets=[PULL_SECRET]))
    sandbox.wait_for_running(namespace, 1)
    lease = f"lease-{namespace}"[:60]
    document = agent_document(sandbox, [namespace], lease=lease, schedule="0 0 1 1 *")
    config_file = write_yaml(tmp_path / "ocscan.yaml", document)
    config = agent_config(sandbox, [namespace], lease=lease, schedule="0 0 1 1 *")

    async with running_agent(sandbox.kubeconfig, config, identity="the-agent") as run:
        await run.cycles(1)
        started = time.monotonic()
        refused = await asyncio.to_thread(scan, sandbox, config_file)
        waited = time.monotonic() - started
    assert refused.returncode == 6, refused.stderr
    assert "the-agent" in refused.stderr and lease in refused.stderr
    assert refused.stdout == ""
    assert waited < 4  # a live holder is recognised within a renewal or two, not waited out

    # The agent released the lease when it stopped: a scan runs now.
    done = await asyncio.to_thread(scan, sandbox, config_file)
    assert done.returncode == 0, done.stderr
    assert '"status": "scanned"' in done.stdout


def test_a_scan_that_fails_at_once_still_releases_the_lease(
    sandbox: Sandbox, namespace: str, tmp_path: Path
) -> None:
    assert sandbox.kube is not None
    lease = f"lease-{namespace}"[:60]
    config_file = write_yaml(
        tmp_path / "ocscan.yaml", agent_document(sandbox, [namespace], lease=lease)
    )
    refusal = sandbox.kube.faults.fail(verb="list", resource="pods", status=403, times=1)
    try:
        failing = scan(sandbox, config_file)  # refused right after it took the lease
    finally:
        sandbox.kube.faults.remove(refusal)
    assert failing.returncode == 4, failing.stderr
    assert refusal.hits == 1
    started = time.monotonic()
    done = scan(sandbox, config_file)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 4  # not waiting out a lease left behind


def test_a_scan_that_loses_the_lease_stops_and_cleans_up(
    sandbox: Sandbox, namespace: str, tmp_path: Path
) -> None:
    assert sandbox.kube is not None
    with SilentRegistry() as hanging:  # its scan stays in flight
        sandbox.apply(docker_config_secret("slow", namespace, hanging.address, "u", "p"))
        image = f"{hanging.address}/team/app:1.0"
        sandbox.apply(deployment("slow", namespace, image, pull_secrets=["slow"]))
        sandbox.wait_for_running(namespace, 1)
        lease = f"lease-{namespace}"[:60]
        config_file = write_yaml(
            tmp_path / "ocscan.yaml", agent_document(sandbox, [namespace], lease=lease)
        )
        # Renewals are refused from the start: the scan takes the lease, then loses it.
        refused = sandbox.kube.faults.fail(verb="update", resource="leases", status=500)
        try:
            started = time.monotonic()
            lost = scan(sandbox, config_file)
        finally:
            sandbox.kube.faults.remove(refused)
    assert lost.returncode == 6, lost.stderr
    assert "lost the lease" in lost.stderr
    assert time.monotonic() - started < 30  # the lease (4 s), not the scan's deadline
    assert managed_objects(sandbox) == []
