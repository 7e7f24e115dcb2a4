"""CustomResourceDefinitions: served once created, validated, pruned, cleaned up."""

from __future__ import annotations

import json

import pytest
import yaml
from kube_support import Kubectl, admin_http
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from ocscan.sandbox.kube.server import KubeEmulator

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                    "free": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {"type": "object",
                                       "properties": {"ready": {"type": "boolean"}}},
                        },
                    }
                },
            }
        ],
    },
}  # fmt: skip

Widget = create_namespaced_resource("example.com", "v1", "Widget", "widgets")


def _widget(name: str, spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


@pytest.fixture
def crd(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(CRD))


async def test_crd_is_established_and_discoverable(kube: KubeEmulator, crd: None) -> None:
    with admin_http(kube) as http:
        stored = http.get(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
        ).json()
        conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert conditions == {"NamesAccepted": "True", "Established": "True"}
        groups = http.get("/apis").json()["groups"]
        assert {"name": "example.com", "versions": [{"groupVersion": "example.com/v1",
                "version": "v1"}], "preferredVersion": {"groupVersion": "example.com/v1",
                "version": "v1"}} in groups  # fmt: skip
        resources = http.get("/apis/example.com/v1").json()["resources"]
    assert {r["name"] for r in resources} == {"widgets", "widgets/status"}


async def test_custom_resources_crud_with_lightkube(client: AsyncClient, crd: None) -> None:
    created = await client.create(Widget.from_dict(_widget("w1", {"size": 3})))
    assert created.metadata.uid
    assert created["spec"]["size"] == 3
    await client.patch(
        Widget, "w1", {"spec": {"color": "red"}}, namespace="default", patch_type=PatchType.MERGE
    )
    fetched = await client.get(Widget, "w1", namespace="default")
    assert fetched["spec"] == {"size": 3, "color": "red"}
    listed = [w.metadata.name async for w in client.list(Widget, namespace="default")]
    assert listed == ["w1"]


async def test_a_custom_resource_is_replaced_only_with_its_resource_version(
    client: AsyncClient, crd: None
) -> None:
    """Custom resources allow no unconditional update: a replace must say which version."""
    created = await client.create(Widget.from_dict(_widget("w2", {"size": 3})))
    with pytest.raises(ApiError) as unversioned:
        await client.replace(Widget.from_dict(_widget("w2", {"size": 4})))
    status = unversioned.value.status
    assert (status.code, status.reason) == (422, "Invalid")
    assert status.message == (
        'widgets.example.com "w2" is invalid: metadata.resourceVersion: Invalid value: 0x0:'
        " must be specified for an update"
    )
    versioned = _widget("w2", {"size": 4})
    versioned["metadata"]["resourceVersion"] = created.metadata.resourceVersion
    replaced = await client.replace(Widget.from_dict(versioned))
    assert replaced["spec"]["size"] == 4


async def test_custom_resources_are_validated_against_the_schema(
    client: AsyncClient, crd: None
) -> None:
    with pytest.raises(ApiError) as invalid:
        await client.create(Widget.from_dict(_widget("bad", {"size": 0, "color": "green"})))
    status = invalid.value.status
    assert status.code == 422
    assert status.message.startswith('Widget.example.com "bad" is invalid: ')
    assert {c.field for c in status.details.causes} == {"spec.size", "spec.color"}

    with pytest.raises(ApiError) as missing:
        await client.create(Widget.from_dict(_widget("bad", {"color": "red"})))
    assert "spec.size: Required value" in missing.value.status.message


async def test_unknown_fields_are_pruned_unless_preserved(client: AsyncClient, crd: None) -> None:
    created = await client.create(
        Widget.from_dict(_widget("w", {"size": 1, "junk": 1, "free": {"any": {"thing": 1}}}))
    )
    assert created["spec"] == {"size": 1, "free": {"any": {"thing": 1}}}


async def test_custom_resource_status_subresource(kube: KubeEmulator, crd: None) -> None:
    with admin_http(kube) as http:
        base = "/apis/example.com/v1/namespaces/default/widgets"
        created = http.post(base, json=_widget("w", {"size": 1}) | {"status": {"ready": True}})
        assert "status" not in created.json()  # status is the status subresource's
        merge = {"Content-Type": "application/merge-patch+json"}
        patched = http.patch(
            f"{base}/w/status", content=b'{"status":{"ready":true}}', headers=merge
        )
        assert patched.json()["status"] == {"ready": True}
        strategic_type = {"Content-Type": "application/strategic-merge-patch+json"}
        strategic = http.patch(f"{base}/w", content=b"{}", headers=strategic_type)
    assert strategic.status_code == 415  # as in Kubernetes: no strategic merge for CRs


async def test_kubectl_applies_and_reads_custom_resources(
    kubectl: Kubectl, kube: KubeEmulator, crd: None
) -> None:
    kubectl.run("apply", "-f", "-", stdin=json.dumps(_widget("w", {"size": 2})))
    kubectl.run("apply", "-f", "-", stdin=json.dumps(_widget("w", {"size": 5})))
    shown = json.loads(kubectl.run("get", "wd", "w", "-n", "default", "-o", "json").stdout)
    assert shown["spec"]["size"] == 5
    rejected = kubectl.run(
        "apply", "-f", "-", stdin=json.dumps(_widget("x", {"size": "big"})), check=False
    )
    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr


async def test_deleting_the_crd_removes_its_resources(
    kube: KubeEmulator, client: AsyncClient, crd: None
) -> None:
    await client.create(Widget.from_dict(_widget("w", {"size": 1})))
    with admin_http(kube) as http:
        http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
        assert http.get("/apis/example.com/v1/namespaces/default/widgets").status_code == 404
        assert "example.com" not in {g["name"] for g in http.get("/apis").json()["groups"]}
    http_again = admin_http(kube)
    with http_again:
        http_again.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD
        ).raise_for_status()
        fresh = http_again.get("/apis/example.com/v1/namespaces/default/widgets").json()
    assert fresh["items"] == []
