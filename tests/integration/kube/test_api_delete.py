"""Deletion: propagation policies, ownerReference garbage collection, finalizers."""

from __future__ import annotations

from typing import Any

import pytest
from kube_support import Kubectl, admin_http
from lightkube import ApiError, AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import CascadeType, PatchType

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator


def _owned(kube: KubeEmulator, name: str, *owners: dict[str, Any], **extra: Any) -> dict[str, Any]:
    refs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"],
         "uid": o["metadata"]["uid"], "blockOwnerDeletion": True}
        for o in owners
    ]  # fmt: skip
    meta: dict[str, Any] = {"name": name, **extra}
    if refs:
        meta["ownerReferences"] = refs
    return kube.store.create(r.CONFIG_MAPS, "default", {"metadata": meta})


def _names(kube: KubeEmulator) -> set[str]:
    return {o["metadata"]["name"] for o in kube.store.list(r.CONFIG_MAPS, "default")}


@pytest.fixture
def tree(kube: KubeEmulator) -> dict[str, Any]:
    """root <- child <- grandchild, and shared owned by root and other."""
    root = _owned(kube, "root")
    other = _owned(kube, "other")
    child = _owned(kube, "child", root)
    _owned(kube, "grandchild", child)
    _owned(kube, "shared", root, other)
    return root


async def test_background_deletes_dependents_transitively(
    client: AsyncClient, kube: KubeEmulator, tree: dict[str, Any]
) -> None:
    await client.delete(ConfigMap, "root", namespace="default", cascade=CascadeType.BACKGROUND)
    assert _names(kube) == {"other", "shared"}
    shared = kube.store.get(r.CONFIG_MAPS, "default", "shared")
    # a dependent with another live owner stays, without the reference to the deleted one
    assert [ref["name"] for ref in shared["metadata"]["ownerReferences"]] == ["other"]


async def test_orphan_keeps_dependents_and_drops_owner_references(
    client: AsyncClient, kube: KubeEmulator, tree: dict[str, Any]
) -> None:
    await client.delete(ConfigMap, "root", namespace="default", cascade=CascadeType.ORPHAN)
    assert _names(kube) == {"other", "child", "grandchild", "shared"}
    assert "ownerReferences" not in kube.store.get(r.CONFIG_MAPS, "default", "child")["metadata"]


@pytest.mark.parametrize(
    ("cascade", "dependent_left"), [(None, True), (CascadeType.BACKGROUND, False)]
)
async def test_a_job_deleted_without_a_policy_orphans_its_dependents(
    client: AsyncClient, kube: KubeEmulator, cascade: CascadeType | None, dependent_left: bool
) -> None:
    """The API's default for batch/v1 Jobs is Orphan: a caller must ask for Background."""
    job = kube.store.create(
        r.JOBS,
        "default",
        {
            "metadata": {"name": "scan"},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}
                },
            },
        },
    )
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "scan",
             "uid": job["metadata"]["uid"], "controller": True}  # fmt: skip
    kube.store.create(
        r.CONFIG_MAPS, "default", {"metadata": {"name": "dep", "ownerReferences": [owner]}}
    )
    await client.delete(Job, "scan", namespace="default", cascade=cascade)
    assert ("dep" in _names(kube)) is dependent_left


async def test_foreground_waits_for_blocking_dependents(kube: KubeEmulator) -> None:
    root = _owned(kube, "root")
    _owned(kube, "child", root, finalizers=["example.com/slow"])

    with admin_http(kube) as http:
        answer = http.request(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/root",
            json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
        )
    assert answer.status_code == 200
    pending = answer.json()
    assert pending["metadata"]["deletionTimestamp"]
    assert pending["metadata"]["finalizers"] == ["foregroundDeletion"]
    child = kube.store.get(r.CONFIG_MAPS, "default", "child")
    assert child["metadata"]["deletionTimestamp"]

    child["metadata"]["finalizers"] = []
    kube.store.update(r.CONFIG_MAPS, "default", child)  # the last blocker goes...
    assert _names(kube) == set()  # ...and so does the owner


async def test_finalizers_hold_deletion_until_removed(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    _owned(kube, "held", finalizers=["example.com/a", "example.com/b"])
    await client.delete(ConfigMap, "held", namespace="default")

    held = await client.get(ConfigMap, "held", namespace="default")
    assert held.metadata.deletionTimestamp is not None
    with pytest.raises(ApiError) as no_new:
        await client.patch(
            ConfigMap,
            "held",
            {"metadata": {"finalizers": ["example.com/a", "example.com/b", "example.com/c"]}},
            namespace="default",
        )
    assert no_new.value.status.code == 422

    # finalizers merge as a set under strategic merge: a merge patch replaces the list
    await client.patch(
        ConfigMap,
        "held",
        {"metadata": {"finalizers": ["example.com/b"]}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    assert (await client.get(ConfigMap, "held", namespace="default")).metadata.finalizers == [
        "example.com/b"
    ]
    await client.patch(ConfigMap, "held", {"metadata": {"finalizers": None}}, namespace="default")
    with pytest.raises(ApiError) as gone:
        await client.get(ConfigMap, "held", namespace="default")
    assert gone.value.status.code == 404


async def test_delete_preconditions(kube: KubeEmulator) -> None:
    _owned(kube, "guarded")
    with admin_http(kube) as http:
        answer = http.request(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/guarded",
            json={"preconditions": {"uid": "not-the-uid"}},
        )
    assert answer.status_code == 409
    assert "Precondition failed: UID in precondition: not-the-uid" in answer.json()["message"]
    assert _names(kube) == {"guarded"}


async def test_delete_collection(client: AsyncClient, kube: KubeEmulator) -> None:
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        kube.store.create(
            r.CONFIG_MAPS, "default", {"metadata": {"name": name, "labels": {"team": team}}}
        )
    with admin_http(kube) as http:
        answer = http.delete(
            "/api/v1/namespaces/default/configmaps", params={"labelSelector": "team=x"}
        )
    assert answer.status_code == 200
    assert [i["metadata"]["name"] for i in answer.json()["items"]] == ["a", "b"]
    assert _names(kube) == {"c"}
    await client.deletecollection(ConfigMap, namespace="default")
    assert _names(kube) == set()


async def test_kubectl_delete_cascades(kubectl: Kubectl, kube: KubeEmulator, tree: object) -> None:
    result = kubectl.run("delete", "configmap", "root", "-n", "default", "--cascade=orphan")
    assert 'configmap "root" deleted' in result.stdout
    assert "child" in _names(kube)
    kubectl.run("delete", "configmap", "child", "-n", "default")  # background by default
    assert _names(kube) == {"other", "shared"}
    missing = kubectl.run("delete", "configmap", "child", "-n", "default", check=False)
    assert missing.returncode != 0
    assert 'configmaps "child" not found' in missing.stderr
