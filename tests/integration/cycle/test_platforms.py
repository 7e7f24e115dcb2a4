"""Multi-platform images end to end: a mixed cluster (an amd64 and an arm64 node) runs one
tag of an OCI index; the kubelet reports the index digest for both, as containerd does, and
each workload must get the findings of the variant its node runs, not of Trivy's default
(linux/amd64)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from cycle_support import container, run, sandbox_config

from ocscan.report.model import ContainerReport
from ocscan.sandbox.oci import LINUX_AMD64, LINUX_ARM64
from ocscan.sandbox.samples import SampleImage, push_multi_platform_sample
from ocscan.sandbox.stack import PULL_SECRET, Sandbox, deployment
from ocscan.sandbox.trivydb import SAMPLE_APP, SAMPLE_MINIMAL
from sandbox_session import running_sandbox

NAMESPACE = "mixed"
ARCH = "kubernetes.io/arch"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SampleImage]]:
    """A sandbox of two nodes, amd64 and arm64, each running a Deployment of one tag."""
    directory = tmp_path_factory.mktemp("mixed")
    with running_sandbox(directory, samples=False, architectures=("amd64", "arm64")) as stack:
        assert stack.registry is not None
        image = push_multi_platform_sample(stack.registry, "team/multi", stack.credential)
        stack.namespace(NAMESPACE)
        stack.pull_secret(PULL_SECRET, NAMESPACE)
        for name, arch in (("x86", "amd64"), ("graviton", "arm64")):
            stack.apply(
                deployment(name, NAMESPACE, image.reference, pull_secrets=[PULL_SECRET],
                           node_selector={ARCH: arch})
            )  # fmt: skip
        stack.wait_for_running(NAMESPACE, 2)
        yield stack, image


def findings_of(entry: ContainerReport) -> set[tuple[str, str]]:
    return {(f.package_name, f.vulnerability_id) for f in entry.vulnerabilities}


def test_the_stage_is_a_mixed_cluster_running_one_index_digest(
    mixed: tuple[Sandbox, SampleImage],
) -> None:
    sandbox, image = mixed
    assert sandbox.kube is not None
    store = sandbox.kube.store
    nodes_type = store.registry.for_kind("v1", "Node")
    pods_type = store.registry.for_kind("v1", "Pod")
    assert nodes_type is not None and pods_type is not None
    arch_of = {
        n["metadata"]["name"]: n["metadata"]["labels"][ARCH] for n in store.list(nodes_type, None)
    }
    ran = {
        arch_of[p["spec"]["nodeName"]]: p["status"]["containerStatuses"][0]["imageID"]
        for p in store.list(pods_type, NAMESPACE)
    }
    # Both nodes pulled the tag; each reports the index digest, not its variant's.
    assert ran == {"amd64": image.digest_reference, "arm64": image.digest_reference}
    assert image.platforms[LINUX_AMD64] == SAMPLE_APP
    assert image.platforms[LINUX_ARM64] == SAMPLE_MINIMAL
    assert SAMPLE_APP.expected_findings != SAMPLE_MINIMAL.expected_findings


def test_each_workload_gets_the_findings_of_its_nodes_platform(
    mixed: tuple[Sandbox, SampleImage],
) -> None:
    sandbox, image = mixed
    assert sandbox.kube is not None
    log = sandbox.kube.request_log
    before = log.count(verb="create", resource="jobs", namespace="ocscan")

    report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": [NAMESPACE]}))

    assert log.count(verb="create", resource="jobs", namespace="ocscan") - before == 2
    assert report.cycle.images == 1
    assert report.cycle.scan_targets == 2 and report.cycle.scans == 2
    for name, platform in (("x86", LINUX_AMD64), ("graviton", LINUX_ARM64)):
        entry = container(report, NAMESPACE, name)
        assert entry.status == "scanned", entry.error
        assert entry.platform == str(platform)
        assert entry.digest == image.digest  # the index: what the pods run
        assert findings_of(entry) == image.platforms[platform].expected_findings, name


def test_without_nodes_every_workload_gets_the_default_platform_and_a_warning(
    mixed: tuple[Sandbox, SampleImage], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, image = mixed
    assert sandbox.kube is not None
    sandbox.kube.faults.fail(verb="list", resource="nodes", times=1, status=403)

    with caplog.at_level(logging.WARNING, logger="ocscan"):
        report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": [NAMESPACE]}))

    assert any("cannot list nodes" in r.getMessage() for r in caplog.records), caplog.text
    assert report.cycle.scan_targets == 1
    for name in ("x86", "graviton"):
        entry = container(report, NAMESPACE, name)
        assert entry.status == "scanned", entry.error
        # Trivy's own pick, the amd64 variant (wrong for the arm64 node), and the report
        # says so: the platform is the scanned image's.
        assert entry.platform == str(LINUX_AMD64)
        assert findings_of(entry) == image.platforms[LINUX_AMD64].expected_findings
