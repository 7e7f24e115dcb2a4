"""PATCH flavours and the status subresource."""

from __future__ import annotations

import pytest
from kube_support import admin_http
from lightkube import ApiError, AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, PodStatus
from lightkube.types import PatchType

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator

POD = {
    "metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}},
    "spec": {
        "containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "side:1"},
        ]
    },
}


@pytest.fixture
def pod(kube: KubeEmulator) -> dict[str, object]:
    return kube.store.create(r.PODS, "default", POD)


async def test_merge_patch_merges_maps_replaces_lists_and_deletes_nulls(
    client: AsyncClient, pod: object
) -> None:
    patched = await client.patch(
        Pod,
        "p",
        {"metadata": {"labels": {"tier": None, "new": "x"}}, "spec": {"containers": [
            {"name": "app", "image": "app:2"}]}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )  # fmt: skip
    assert patched.metadata.labels == {"app": "web", "new": "x"}
    # a merge patch replaces lists whole; the replacement is then validated and defaulted
    assert [c.name for c in patched.spec.containers] == ["app"]
    assert patched.spec.containers[0].env is None


async def test_strategic_merge_patch_merges_containers_by_name(
    client: AsyncClient, pod: object
) -> None:
    patched = await client.patch(
        Pod,
        "p",
        {"spec": {"containers": [{"name": "app", "image": "app:2"}]}},
        namespace="default",
        patch_type=PatchType.STRATEGIC,
    )
    images = {c.name: c.image for c in patched.spec.containers}
    assert images == {"app": "app:2", "side": "side:1"}
    app = next(c for c in patched.spec.containers if c.name == "app")
    assert [(e.name, e.value) for e in app.env] == [("A", "1")]


async def test_strategic_merge_patch_directives(client: AsyncClient, pod: object) -> None:
    patched = await client.patch(
        Pod,
        "p",
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                "containers": [
                    {"name": "app", "env": [{"name": "A", "$patch": "delete"},
                                            {"name": "B", "value": "2"}]},
                ],
            }
        },
        namespace="default",
        patch_type=PatchType.STRATEGIC,
    )  # fmt: skip
    assert [c.name for c in patched.spec.containers] == ["side", "app"]
    app = patched.spec.containers[1]
    assert [(e.name, e.value) for e in app.env] == [("B", "2")]


async def test_json_patch(client: AsyncClient, pod: object) -> None:
    patched = await client.patch(
        Pod,
        "p",
        [
            {"op": "test", "path": "/metadata/labels/app", "value": "web"},
            {"op": "replace", "path": "/spec/containers/1/image", "value": "side:2"},
            {"op": "add", "path": "/metadata/annotations", "value": {"note": "hi"}},
        ],
        namespace="default",
        patch_type=PatchType.JSON,
    )
    assert patched.spec.containers[1].image == "side:2"
    assert patched.metadata.annotations == {"note": "hi"}

    with pytest.raises(ApiError) as failed:
        await client.patch(
            Pod,
            "p",
            [{"op": "test", "path": "/metadata/labels/app", "value": "db"}],
            namespace="default",
            patch_type=PatchType.JSON,
        )
    assert failed.value.status.code == 422


async def test_patch_with_stale_resource_version_conflicts(
    client: AsyncClient, pod: dict[str, dict[str, str]]
) -> None:
    version = pod["metadata"]["resourceVersion"]
    await client.patch(Pod, "p", {"metadata": {"labels": {"x": "1"}}}, namespace="default")
    with pytest.raises(ApiError) as conflict:
        await client.patch(
            Pod,
            "p",
            {"metadata": {"resourceVersion": version, "labels": {"x": "2"}}},
            namespace="default",
        )
    assert conflict.value.status.code == 409


async def test_unknown_patch_type_is_415(kube: KubeEmulator, pod: object) -> None:
    with admin_http(kube) as http:
        answer = http.patch(
            "/api/v1/namespaces/default/pods/p",
            content=b"{}",
            headers={"Content-Type": "text/plain"},
        )
    assert answer.status_code == 415
    assert answer.json()["reason"] == "UnsupportedMediaType"


async def test_status_subresource_changes_only_status(client: AsyncClient, pod: object) -> None:
    with_status = await client.patch(
        PodStatus,
        "p",
        {"status": {"phase": "Running"}, "metadata": {"labels": {"ignored": "yes"}}},
        namespace="default",
    )
    assert with_status.status.phase == "Running"
    assert "ignored" not in with_status.metadata.labels

    main = await client.patch(
        Pod,
        "p",
        {"status": {"phase": "Failed"}, "metadata": {"labels": {"kept": "yes"}}},
        namespace="default",
    )
    assert main.status.phase == "Running"  # the main resource ignores status
    assert main.metadata.labels["kept"] == "yes"

    current = await client.get(PodStatus, "p", namespace="default")
    current.status.phase = "Succeeded"
    current.spec.containers[0].image = "ignored:9"
    replaced = await client.replace(current)
    assert replaced.status.phase == "Succeeded"
    assert replaced.spec.containers[0].image == "app:1"


async def test_status_is_reset_on_create(client: AsyncClient) -> None:
    deployment = Deployment.from_dict(
        {
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
            "status": {"replicas": 7},
        }
    )
    created = await client.create(deployment, namespace="default")
    assert created.status.replicas is None


async def test_server_side_apply_creates_then_merges(kube: KubeEmulator) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    url = "/api/v1/namespaces/default/configmaps/applied"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    with admin_http(kube) as http:
        missing_manager = http.patch(url, content=manifest.encode(), headers=headers)
        assert missing_manager.status_code == 422
        created = http.patch(url, params={"fieldManager": "t"}, content=manifest, headers=headers)
        assert created.status_code == 201
        again = http.patch(
            url,
            params={"fieldManager": "t"},
            content=manifest.replace("a: '1'", "b: '2'"),
            headers=headers,
        )
    assert again.status_code == 200
    assert again.json()["data"] == {"a": "1", "b": "2"}
