"""Every failure kind reaches the report with the scanner's own words, and the cycle goes on.

Each case is a real scanner pod: the process kubelet enforces its memory limit, Trivy meets a
real registry (or a closed port, a hanging socket, a TLS server without its CA).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cycle_support import container, run, sandbox_config

from ocscan.sandbox.processes import free_port
from ocscan.sandbox.registry import RegistryServer, SilentRegistry
from ocscan.sandbox.stack import PULL_SECRET, Sandbox, deployment
from ocscan.sandbox.trivydb import SAMPLE_APP
from scanner_objects import managed_objects


def scan_one(
    sandbox: Sandbox, namespace: str, image: str, *, wait: bool = True, **scanner: object
) -> object:
    """Deploy ``image`` alone in ``namespace``, run a cycle there, return its container."""
    sandbox.apply(deployment("app", namespace, image, pull_secrets=[PULL_SECRET]))
    if wait:
        sandbox.wait_for_running(namespace, 1)
    else:  # it cannot run, but its pod must exist
        sandbox.wait_for_pods(namespace, 1)
    config = sandbox_config(sandbox, targets={"namespaces": [namespace]}, scanner=scanner)
    report = run(sandbox, config)
    assert managed_objects(sandbox) == []
    return container(report, namespace, "app")


def test_a_scanner_over_its_memory_limit_is_oom(sandbox: Sandbox, scratch_namespace: str) -> None:
    image = sandbox.image(SAMPLE_APP.repository).reference
    entry = scan_one(sandbox, scratch_namespace, image, limits={"memory": "24Mi"})
    assert entry.status == "oom"  # type: ignore[attr-defined]
    assert "memory" in entry.error.message  # type: ignore[attr-defined]


def test_a_report_above_the_cap_is_report_too_large(
    sandbox: Sandbox, scratch_namespace: str
) -> None:
    image = sandbox.image(SAMPLE_APP.repository).reference
    entry = scan_one(sandbox, scratch_namespace, image, report_cap_bytes=1024)
    assert entry.status == "report_too_large"  # type: ignore[attr-defined]
    assert "above the cap of 1024" in entry.error.message  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("configured", "status", "words"),
    [
        (4096, "report_too_large", "containerLogMaxSize"),  # the scanner knows: it refuses
        (None, "scanner_error", "no report frame"),  # it does not: the rotation cut the frame
    ],
)
def test_a_report_the_log_rotation_would_cut_is_refused_when_the_limit_is_known(
    sandbox: Sandbox, scratch_namespace: str, configured: int | None, status: str, words: str
) -> None:
    """The kubelet here rotates container logs at 4 KiB. With that size in the config the
    scanner refuses the report as too large; without, the rotation cuts the frame, and the
    scan fails (never with a partial report), but for a less helpful reason."""
    kubelet = sandbox.cluster.kubelet.config
    rotation, kubelet.container_log_max_size = kubelet.container_log_max_size, 4096
    limit = {"log_max_bytes": configured} if configured else {}
    try:
        image = sandbox.image(SAMPLE_APP.repository).reference
        entry = scan_one(sandbox, scratch_namespace, image, **limit)
    finally:
        kubelet.container_log_max_size = rotation
    assert entry.status == status  # type: ignore[attr-defined]
    assert words in entry.error.message  # type: ignore[attr-defined]


def test_an_image_tag_that_does_not_exist_is_not_found(
    sandbox: Sandbox, scratch_namespace: str
) -> None:
    assert sandbox.registry is not None
    typo = f"{sandbox.registry.address}/{SAMPLE_APP.repository}:1.0-typo"
    # The kubelet cannot pull it either: no digest, so the spec's tag is scanned.
    entry = scan_one(sandbox, scratch_namespace, typo, wait=False)
    assert entry.status == "not_found"  # type: ignore[attr-defined]
    assert "MANIFEST_UNKNOWN" in entry.error.message  # type: ignore[attr-defined]


def test_a_registry_that_is_down_is_unreachable(sandbox: Sandbox, scratch_namespace: str) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens; the kubelet fakes its digest
    entry = scan_one(sandbox, scratch_namespace, f"{closed}/team/app:1.0")
    assert entry.status == "unreachable"  # type: ignore[attr-defined]
    assert "connection refused" in entry.error.message  # type: ignore[attr-defined]


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer.start(tmp_path / "tls", {"carol": "carol-pw"}, tls=True) as registry:
        yield registry


def test_a_registry_with_an_unknown_ca_is_tls(
    sandbox: Sandbox, scratch_namespace: str, tls_registry: RegistryServer
) -> None:
    entry = scan_one(sandbox, scratch_namespace, f"{tls_registry.address}/team/app:1.0")
    assert entry.status == "tls"  # type: ignore[attr-defined]
    assert "certificate" in entry.error.message  # type: ignore[attr-defined]


@pytest.fixture
def hanging_registry() -> Iterator[str]:
    """The address of a registry that accepts connections and never answers."""
    with SilentRegistry() as registry:
        yield registry.address


def test_a_registry_that_never_answers_is_timeout(
    sandbox: Sandbox, scratch_namespace: str, hanging_registry: str
) -> None:
    # Trivy's own --timeout does not cover a registry that accepts and never answers: the
    # pod's activeDeadlineSeconds (timeout + margin) is what ends the scan.
    entry = scan_one(
        sandbox,
        scratch_namespace,
        f"{hanging_registry}/team/app:1.0",
        timeout_seconds=10,
        deadline_margin_seconds=5,
    )
    assert entry.status == "timeout"  # type: ignore[attr-defined]
    assert "deadline" in entry.error.message  # type: ignore[attr-defined]


def test_a_scanner_pod_deleted_by_someone_else_ends_its_scan_at_once(
    sandbox: Sandbox, scratch_namespace: str, hanging_registry: str
) -> None:
    assert sandbox.kube is not None
    store = sandbox.kube.store
    pods = store.registry.for_kind("v1", "Pod")
    assert pods is not None
    evicted: list[str] = []

    def evict() -> None:  # what an eviction or a hurried admin does
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            running = [
                p["metadata"]["name"]
                for p in store.list(pods, "ocscan", "app.kubernetes.io/component=scanner")
                if (p.get("status") or {}).get("phase") == "Running"
            ]
            if running:
                store.delete(pods, "ocscan", running[0])
                evicted.append(running[0])
                return
            time.sleep(0.02)

    thread = threading.Thread(target=evict)
    thread.start()
    started = time.monotonic()
    entry = scan_one(sandbox, scratch_namespace, f"{hanging_registry}/team/app:1.0")
    thread.join()
    assert evicted
    assert entry.status == "scanner_error"  # type: ignore[attr-defined]
    assert "was deleted before it finished" in entry.error.message  # type: ignore[attr-defined]
    assert time.monotonic() - started < 15  # not the pod's deadline of 6 minutes
