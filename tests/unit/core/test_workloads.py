from __future__ import annotations

import msgspec
import pytest

from ocscan.kube.discovery import ARCH_LABEL, OS_LABEL, node_platform, pod_snapshot
from ocscan.kube.views import (
    NodeStatusView,
    NodeSystemInfoView,
    NodeView,
    ObjectMetaView,
    PodView,
)
from ocscan.kube.workloads import OwnerLink, PodSnapshot, WorkloadRef, top_level_workload
from ocscan.registry.platform import Platform


def pod(owner: OwnerLink | None, name: str = "p") -> PodSnapshot:
    return PodSnapshot("ns", name, owner, "default", (), ())


def test_bare_pod_is_its_own_workload() -> None:
    assert top_level_workload(pod(None, "solo"), {}) == WorkloadRef("ns", "Pod", "solo")


def test_replicaset_leads_to_its_deployment() -> None:
    owners = {("ns", "ReplicaSet", "web-5d8f"): OwnerLink("Deployment", "web")}
    workload = top_level_workload(pod(OwnerLink("ReplicaSet", "web-5d8f")), owners)
    assert workload == WorkloadRef("ns", "Deployment", "web")


def test_job_leads_to_its_cronjob() -> None:
    owners = {("ns", "Job", "nightly-289"): OwnerLink("CronJob", "nightly")}
    assert top_level_workload(pod(OwnerLink("Job", "nightly-289")), owners).kind == "CronJob"


def test_unowned_replicaset_and_job_are_workloads() -> None:
    owners = {("ns", "ReplicaSet", "rs"): None}
    assert top_level_workload(pod(OwnerLink("ReplicaSet", "rs")), owners).kind == "ReplicaSet"
    assert top_level_workload(pod(OwnerLink("Job", "j")), {}).kind == "Job"


def test_other_controllers_are_workloads() -> None:
    for kind in ("StatefulSet", "DaemonSet", "ReplicationController", "Rollout"):
        assert top_level_workload(pod(OwnerLink(kind, "x")), {}).kind == kind


def test_owner_lookup_is_per_namespace() -> None:
    owners = {("other", "ReplicaSet", "web-1"): OwnerLink("Deployment", "web")}
    assert top_level_workload(pod(OwnerLink("ReplicaSet", "web-1")), owners).kind == "ReplicaSet"


def _node(labels: dict[str, str], os_name: str | None, arch: str | None) -> NodeView:
    info = NodeSystemInfoView(operatingSystem=os_name, architecture=arch)
    return NodeView(
        metadata=ObjectMetaView(name="n1", labels=labels),
        status=NodeStatusView(nodeInfo=info),
    )


def test_a_nodes_platform_comes_from_its_kubelet_then_from_its_labels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert node_platform(_node({}, "linux", "arm64")) == Platform("linux", "arm64")
    labelled_only = _node({OS_LABEL: "linux", ARCH_LABEL: "arm64"}, None, None)
    assert node_platform(labelled_only) == Platform("linux", "arm64")
    assert node_platform(_node({}, None, None)) is None
    assert node_platform(NodeView()) is None
    # Labels can be edited by whoever may patch Nodes; the kubelet's report wins, loudly.
    relabelled = _node({OS_LABEL: "linux", ARCH_LABEL: "arm64"}, "linux", "amd64")
    assert node_platform(relabelled) == Platform("linux", "amd64")
    assert "labelled linux/arm64 but its kubelet reports linux/amd64" in caplog.text


def test_a_32_bit_arm_node_runs_the_arm_v7_entry() -> None:
    # Official images list linux/arm/v6 and linux/arm/v7; Trivy given linux/arm takes the
    # first, while a kubelet's containerd runs v7.
    assert node_platform(_node({}, "linux", "arm")) == Platform("linux", "arm", "v7")


def test_a_node_with_a_malformed_architecture_has_no_platform(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert node_platform(_node({ARCH_LABEL: "ARM 64"}, "linux", None)) is None
    assert "node n1" in caplog.text and "'ARM 64'" in caplog.text


def test_a_pod_snapshot_names_the_node_it_was_scheduled_to() -> None:
    listed = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}
    assert pod_snapshot(msgspec.convert(listed, PodView)).node is None
    listed["spec"] = {"nodeName": "node-arm", "containers": []}
    assert pod_snapshot(msgspec.convert(listed, PodView)).node == "node-arm"
