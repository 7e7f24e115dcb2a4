from __future__ import annotations

from ocscan.kube.workloads import OwnerLink, PodSnapshot, WorkloadRef, top_level_workload


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
