"""Workload controllers through the emulator's HTTP API, with lightkube.

Deployment -> ReplicaSet -> Running pods (with imageIDs the real registry resolves),
StatefulSet, DaemonSet, Job and CronJob, with names, labels and ownerReferences as the
real controllers set them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import Pod, Secret
from polling import eventually

from ocscan.sandbox.kube.cluster import SandboxCluster
from ocscan.sandbox.kube.imagepull import ImagePuller, RegistryResolver, fake_digest
from ocscan.sandbox.kube.kubelet import KubeletConfig, RunnableImage
from ocscan.sandbox.kube.server import KubeEmulator
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.samples import SampleImage

NS = "default"
RUNNER = "sandbox.local/runner"
NODES = ("node-a", "node-b")
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"


@pytest.fixture
def cluster(
    kube: KubeEmulator, tmp_path: Path, registry_a: RegistryServer
) -> Iterator[SandboxCluster]:
    config = KubeletConfig(
        nodes=NODES,
        runnable=(RunnableImage(RUNNER, entrypoint=("sh", "-c")),),
        images=ImagePuller(RegistryResolver(), registries={registry_a.address}, fake_digests=True),
        state_dir=tmp_path / "kubelet",
        backoff=0.2,
        resync=0.2,
    )
    with SandboxCluster(kube.store, config) as running:
        yield running


async def pods(client: AsyncClient, selector: dict[str, str] | None = None) -> list[dict[str, Any]]:
    found = client.list(Pod, namespace=NS, labels=selector or {})
    return sorted([p.to_dict() async for p in found], key=lambda p: p["metadata"]["name"])


def running(items: list[dict[str, Any]], count: int) -> bool:
    return len(items) == count and all(
        (p.get("status") or {}).get("phase") == "Running" for p in items
    )


def controller_ref(obj: dict[str, Any]) -> dict[str, Any]:
    refs = obj["metadata"]["ownerReferences"]
    assert len(refs) == 1
    ref: dict[str, Any] = refs[0]
    return ref


def template(labels: dict[str, str], image: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "main", "image": image}], **spec},
    }


async def test_deployment_makes_a_replicaset_and_running_pods_with_real_digests(
    cluster: SandboxCluster, client: AsyncClient, sample_image: SampleImage
) -> None:
    assert sample_image.credential is not None
    user, password = sample_image.credential.reveal()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {sample_image.registry.address: {"auth": auth}}})
    await client.create(
        Secret.from_dict(
            {
                "metadata": {"name": "pull"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config},
            }
        )
    )
    spec = template(
        {"app": "web"},
        sample_image.reference,
        imagePullSecrets=[{"name": "pull"}],
        initContainers=[{"name": "setup", "image": "busybox:1.36"}],
    )
    deployment = await client.create(
        Deployment.from_dict(
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": spec,
                },
            }
        )
    )
    assert deployment.metadata is not None
    web = await eventually(lambda: pods(client, {"app": "web"}), lambda p: running(p, 3), within=20)

    replicasets = [rs.to_dict() async for rs in client.list(ReplicaSet, namespace=NS)]
    assert len(replicasets) == 1
    rs = replicasets[0]
    hash_ = rs["metadata"]["labels"]["pod-template-hash"]
    assert re.fullmatch(f"{SAFE}{{6,10}}", hash_)
    assert rs["metadata"]["name"] == f"web-{hash_}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_}
    assert controller_ref(rs) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": deployment.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for pod in web:
        assert re.fullmatch(f"web-{hash_}-{SAFE}{{5}}", pod["metadata"]["name"])
        assert pod["metadata"]["labels"]["pod-template-hash"] == hash_
        ref = controller_ref(pod)
        assert (ref["kind"], ref["name"], ref["uid"]) == (
            "ReplicaSet", rs["metadata"]["name"], rs["metadata"]["uid"],
        )  # fmt: skip
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        status = pod["status"]["containerStatuses"][0]
        assert status["imageID"] == sample_image.digest_reference
        assert status["ready"] is True and "running" in status["state"]
        init = pod["status"]["initContainerStatuses"][0]
        assert init["state"]["terminated"]["reason"] == "Completed"
        assert init["imageID"] == "docker.io/library/busybox@" + fake_digest(
            "docker.io/library/busybox:1.36"
        )
    status = await eventually(
        lambda: client.get(Deployment, "web", namespace=NS),
        lambda d: d.status is not None and d.status.availableReplicas == 3,
    )
    conditions = {c.type: c.reason for c in status.status.conditions or []}
    assert conditions == {"Available": "MinimumReplicasAvailable",
                          "Progressing": "NewReplicaSetAvailable"}  # fmt: skip

    await client.patch(Deployment, "web", {"spec": {"replicas": 1}}, namespace=NS)
    await eventually(lambda: pods(client, {"app": "web"}), lambda p: running(p, 1), within=20)

    await client.patch(
        Deployment, "web", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
        namespace=NS,
    )  # fmt: skip
    replicasets = await eventually(
        lambda: _list(client, ReplicaSet),
        lambda found: len(found) == 2 and {r["spec"]["replicas"] for r in found} == {0, 1},
    )
    newest = max(replicasets, key=lambda r: int(r["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"]))  # fmt: skip
    assert newest["spec"]["replicas"] == 1
    assert newest["metadata"]["name"] != rs["metadata"]["name"]
    await eventually(lambda: pods(client, {"v": "2"}), lambda p: running(p, 1), within=20)


async def test_statefulset_pods_are_numbered_and_created_in_order(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(
        StatefulSet.from_dict(
            {
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 3,
                    "serviceName": "db",
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": template({"app": "db"}, "postgres:16"),
                },
            }
        )
    )
    found = await eventually(lambda: pods(client, {"app": "db"}), lambda p: running(p, 3))
    assert [p["metadata"]["name"] for p in found] == ["db-0", "db-1", "db-2"]
    for index, pod in enumerate(found):
        labels = pod["metadata"]["labels"]
        assert labels["statefulset.kubernetes.io/pod-name"] == f"db-{index}"
        assert labels["apps.kubernetes.io/pod-index"] == str(index)
        assert labels["controller-revision-hash"].startswith("db-")
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"db-{index}", "db")
        assert controller_ref(pod)["kind"] == "StatefulSet"
    created = [p["metadata"]["creationTimestamp"] for p in found]
    assert created == sorted(created)
    await client.patch(StatefulSet, "db", {"spec": {"replicas": 1}}, namespace=NS)
    found = await eventually(lambda: pods(client, {"app": "db"}), lambda p: len(p) == 1, within=20)
    assert found[0]["metadata"]["name"] == "db-0"


async def test_daemonset_runs_one_pod_per_node(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(
        DaemonSet.from_dict(
            {
                "metadata": {"name": "agent"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": template({"app": "agent"}, "fluent/fluent-bit:3.0"),
                },
            }
        )
    )
    found = await eventually(lambda: pods(client, {"app": "agent"}), lambda p: running(p, 2))
    assert sorted(p["spec"]["nodeName"] for p in found) == sorted(NODES)
    for pod in found:
        assert re.fullmatch(f"agent-{SAFE}{{5}}", pod["metadata"]["name"])
        assert controller_ref(pod)["kind"] == "DaemonSet"
    ds = await eventually(
        lambda: client.get(DaemonSet, "agent", namespace=NS),
        lambda d: d.status is not None and d.status.numberReady == 2,
    )
    assert ds.status.desiredNumberScheduled == 2


async def test_job_runs_pods_to_completion(cluster: SandboxCluster, client: AsyncClient) -> None:
    job = await client.create(
        Job.from_dict(
            {
                "metadata": {"name": "batch"},
                "spec": {
                    "completions": 3,
                    "parallelism": 2,
                    "template": template(
                        {}, f"{RUNNER}:1", restartPolicy="Never",
                        containers=[{"name": "main", "image": f"{RUNNER}:1",
                                     "args": ["echo done by $HOSTNAME"]}],
                    ),
                },
            }
        )
    )  # fmt: skip
    done = await eventually(
        lambda: client.get(Job, "batch", namespace=NS),
        lambda j: j.status is not None and j.status.succeeded == 3,
    )
    conditions = {c.type: (c.status, c.reason) for c in done.status.conditions or []}
    assert conditions["Complete"] == ("True", "CompletionsReached")
    assert done.status.completionTime is not None
    assert done.status.active is None or done.status.active == 0
    finished = await pods(client, {"batch.kubernetes.io/job-name": "batch"})
    assert len(finished) == 3
    assert all(p["status"]["phase"] == "Succeeded" for p in finished)
    assert job.metadata is not None
    assert {controller_ref(p)["uid"] for p in finished} == {job.metadata.uid}


async def test_job_fails_after_its_backoff_limit(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(
        Job.from_dict(
            {
                "metadata": {"name": "broken"},
                "spec": {
                    "backoffLimit": 1,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {"name": "main", "image": f"{RUNNER}:1", "args": ["exit 4"]}
                            ],
                        }
                    },
                },
            }
        )
    )
    failed = await eventually(
        lambda: client.get(Job, "broken", namespace=NS),
        lambda j: (
            any(c.type == "Failed" for c in (j.status.conditions or [])) if j.status else False
        ),
    )
    condition = next(c for c in failed.status.conditions if c.type == "Failed")
    assert (condition.reason, condition.message) == (
        "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    )  # fmt: skip
    assert failed.status.failed == 2


async def test_a_job_pod_deleted_before_it_ends_counts_as_failed_once(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    """As with the real controller's tracking finalizers: no second pod at backoffLimit 0."""
    await client.create(
        Job.from_dict(
            {
                "metadata": {"name": "once"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {"name": "main", "image": f"{RUNNER}:1", "args": ["sleep 60"]}
                            ],
                        }
                    },
                },
            }
        )
    )
    selector = {"batch.kubernetes.io/job-name": "once"}
    (started,) = await eventually(lambda: pods(client, selector), lambda found: running(found, 1))
    name = started["metadata"]["name"]
    await client.delete(Pod, name, namespace=NS, grace_period=2)  # terminating for a while
    failed = await eventually(
        lambda: client.get(Job, "once", namespace=NS),
        lambda j: "Failed" in {c.type for c in (j.status and j.status.conditions) or []},
    )
    assert failed.status is not None and failed.status.failed == 1
    assert {p["metadata"]["name"] for p in await pods(client, selector)} <= {name}  # no second
    await eventually(lambda: pods(client, selector), lambda found: found == [])
    done = await client.get(Job, "once", namespace=NS)
    assert done.status is not None and done.status.failed == 1  # counted once


async def test_cronjob_trigger_creates_an_owned_job(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    cronjob = await client.create(
        CronJob.from_dict(
            {
                "metadata": {"name": "nightly"},
                "spec": {
                    "schedule": "0 3 * * *",
                    "jobTemplate": {
                        "metadata": {"labels": {"kind": "nightly"}},
                        "spec": {
                            "template": {
                                "spec": {
                                    "restartPolicy": "OnFailure",
                                    "containers": [
                                        {"name": "main", "image": f"{RUNNER}:1", "args": ["true"]}
                                    ],
                                }
                            }
                        },
                    },
                },
            }
        )
    )
    assert cronjob.metadata is not None
    job = await asyncio.to_thread(cluster.trigger_cronjob, NS, "nightly")
    assert re.fullmatch(f"nightly-manual-{SAFE}{{5}}", job["metadata"]["name"])
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["labels"] == {"kind": "nightly"}
    ref = controller_ref(job)
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "CronJob", "nightly", cronjob.metadata.uid, True,
    )  # fmt: skip
    name = job["metadata"]["name"]
    await eventually(
        lambda: client.get(Job, name, namespace=NS),
        lambda j: j.status is not None and j.status.succeeded == 1,
    )
    status = await eventually(
        lambda: client.get(CronJob, "nightly", namespace=NS),
        lambda c: c.status is not None and c.status.lastSuccessfulTime is not None,
    )
    assert not status.status.active


async def _list(client: AsyncClient, resource: Any) -> list[dict[str, Any]]:
    return [obj.to_dict() async for obj in client.list(resource, namespace=NS)]
