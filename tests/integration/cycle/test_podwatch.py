"""The scanner pod tracker over real HTTP: which pod a scan follows, and what it forgets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from ocscan.kube.client import make_client
from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.stack import Sandbox
from ocscan.scan.podspec import SCAN_LABEL, SCANNER_SELECTOR
from ocscan.scan.podwatch import PodTracker, ScannerPodGoneError
from scanner_objects import remove_managed_objects

AGENT_NAMESPACE = "ocscan"


@pytest.fixture(autouse=True)
def no_pods_left(sandbox: Sandbox) -> Iterator[None]:
    """Whatever happens, the next test finds no scanner pod of this one."""
    yield
    remove_managed_objects(sandbox)


def scanner_pod(sandbox: Sandbox, scan: str, name: str) -> dict[str, Any]:
    """A pod labelled as one of scan ``scan``'s (its image never resolves: it just waits)."""
    assert sandbox.kube is not None
    labels = {**SCANNER_SELECTOR, SCAN_LABEL: scan}
    pod = {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "scanner", "image": "sandbox.invalid/none:1"}]},
    }
    return sandbox.kube.store.create(r.PODS, AGENT_NAMESPACE, pod)


def delete_pod(sandbox: Sandbox, name: str) -> None:
    assert sandbox.kube is not None
    sandbox.kube.store.delete(r.PODS, AGENT_NAMESPACE, name, grace_period_seconds=0)


async def test_a_scan_follows_its_first_pod_and_ends_only_when_that_one_goes(
    sandbox: Sandbox,
) -> None:
    client = make_client(sandbox.kubeconfig)
    try:
        async with PodTracker(client, AGENT_NAMESPACE) as tracker:
            tracker.track("scan-a")
            scanner_pod(sandbox, "scan-a", "scan-a-first")
            first = await asyncio.wait_for(tracker.wait_for("scan-a", lambda pod: True), 10)
            assert first.metadata is not None and first.metadata.name == "scan-a-first"
            scanner_pod(sandbox, "scan-a", "scan-a-second")
            delete_pod(sandbox, "scan-a-second")  # another pod of the Job: not followed
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(tracker.wait_for("scan-a", lambda pod: False), 1)
            delete_pod(sandbox, "scan-a-first")
            with pytest.raises(ScannerPodGoneError, match="scan-a-first was deleted"):
                await asyncio.wait_for(tracker.wait_for("scan-a", lambda pod: False), 10)
    finally:
        await client.close()


async def test_a_forgotten_scan_is_not_brought_back_by_later_events(sandbox: Sandbox) -> None:
    client = make_client(sandbox.kubeconfig)
    try:
        async with PodTracker(client, AGENT_NAMESPACE) as tracker:
            tracker.track("scan-b")
            scanner_pod(sandbox, "scan-b", "scan-b-pod")
            await asyncio.wait_for(tracker.wait_for("scan-b", lambda pod: True), 10)
            tracker.forget("scan-b")
            scanner_pod(sandbox, "scan-c", "scan-c-pod")  # not tracked at all
            delete_pod(sandbox, "scan-b-pod")  # an event for the forgotten scan
            tracker.track("scan-d")
            scanner_pod(sandbox, "scan-d", "scan-d-pod")
            # Events arrive in order: once scan-d's pod is known, the others were seen.
            await asyncio.wait_for(tracker.wait_for("scan-d", lambda pod: True), 10)
            assert tracker.latest("scan-b") is None and tracker.latest("scan-c") is None
    finally:
        await client.close()
