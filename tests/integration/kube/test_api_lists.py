"""Lists: label and field selectors, limit/continue paging and its consistent snapshot."""

from __future__ import annotations

import json

import pytest
from kube_support import Kubectl, admin_http
from lightkube import ApiError, AsyncClient, operators
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator


def _pod(name: str, labels: dict[str, str], node: str | None = None) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, labels=labels),
        spec=PodSpec(containers=[Container(name="c", image="img:1")], nodeName=node),
    )


@pytest.fixture
async def labelled(client: AsyncClient) -> None:
    await client.create(_pod("a", {"app": "web", "tier": "front"}, "n1"), namespace="default")
    await client.create(_pod("b", {"app": "web", "tier": "back"}, "n2"), namespace="default")
    await client.create(_pod("c", {"app": "db"}, "n1"), namespace="default")
    await client.create(_pod("d", {"team": "x"}), namespace="default")


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", {"a", "b"}),
        ("app==web", {"a", "b"}),
        ("app!=web", {"c", "d"}),
        ("app in (web, db)", {"a", "b", "c"}),
        ("app notin (web)", {"c", "d"}),
        ("tier", {"a", "b"}),
        ("!tier", {"c", "d"}),
        ("app=web,tier=back", {"b"}),
        ("app in (web),!team", {"a", "b"}),
    ],
)
async def test_label_selectors(
    kube: KubeEmulator, labelled: None, selector: str, expected: set[str]
) -> None:
    with admin_http(kube) as http:
        answer = http.get("/api/v1/namespaces/default/pods", params={"labelSelector": selector})
    assert answer.status_code == 200
    assert {item["metadata"]["name"] for item in answer.json()["items"]} == expected


async def test_lightkube_label_operators(client: AsyncClient, labelled: None) -> None:
    async def names(labels: dict[str, object]) -> set[str]:
        return {p.metadata.name async for p in client.list(Pod, namespace="default", labels=labels)}

    assert await names({"app": "web", "tier": "front"}) == {"a"}
    assert await names({"app": operators.in_(["web", "db"]), "tier": operators.not_exists()}) == {
        "c"
    }
    assert await names({"app": operators.not_in(["web"])}) == {"c", "d"}
    assert await names({"tier": operators.exists(), "app": operators.not_equal("x")}) == {"a", "b"}


async def test_field_selectors(client: AsyncClient, kube: KubeEmulator, labelled: None) -> None:
    on_n1 = {
        p.metadata.name
        async for p in client.list(Pod, namespace="default", fields={"spec.nodeName": "n1"})
    }
    assert on_n1 == {"a", "c"}
    by_name = {
        p.metadata.name
        async for p in client.list(Pod, namespace="*", fields={"metadata.name": "b"})
    }
    assert by_name == {"b"}
    pod = kube.store.get(r.PODS, "default", "c")
    pod["status"] = {"phase": "Running"}
    kube.store.update_status(r.PODS, "default", pod)
    not_running = {
        p.metadata.name
        async for p in client.list(
            Pod, namespace="default", fields={"status.phase": operators.not_equal("Running")}
        )
    }
    assert not_running == {"a", "b", "d"}
    in_namespace = {
        p.metadata.name
        async for p in client.list(Pod, namespace="*", fields={"metadata.namespace": "default"})
    }
    assert in_namespace == {"a", "b", "c", "d"}

    with pytest.raises(ApiError) as unsupported:
        async for _ in client.list(Pod, namespace="default", fields={"spec.hostname": "x"}):
            pass
    assert unsupported.value.status.code == 400
    assert unsupported.value.status.message == "field label not supported: spec.hostname"


async def test_kubectl_selectors(kubectl: Kubectl, labelled: None) -> None:
    result = kubectl.run(
        "get", "pods", "-n", "default", "-l", "app in (web,db)",
        "--field-selector", "spec.nodeName=n1", "-o", "json",
    )  # fmt: skip
    assert [item["metadata"]["name"] for item in json.loads(result.stdout)["items"]] == ["a", "c"]


async def test_lightkube_pages_through_a_large_list(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    for i in range(25):
        await client.create(_pod(f"p{i:02}", {"i": str(i)}), namespace="default")
    kube.request_log.clear()

    listed = [p.metadata.name async for p in client.list(Pod, namespace="default", chunk_size=10)]

    assert listed == [f"p{i:02}" for i in range(25)]
    pages = kube.request_log.records(verb="list", resource="pods")
    assert len(pages) == 3
    assert all("limit=10" in page.query for page in pages)


async def test_continue_token_lists_a_consistent_snapshot(kube: KubeEmulator) -> None:
    for name in ("a", "b", "c", "d"):
        kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": name}})
    with admin_http(kube) as http:
        first = http.get("/api/v1/namespaces/default/configmaps", params={"limit": 2}).json()
        assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
        assert first["metadata"]["remainingItemCount"] == 2
        token = first["metadata"]["continue"]

        # Changes after the first page don't show up in the rest of this list.
        kube.store.delete(r.CONFIG_MAPS, "default", "c")
        kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": "bb"}})
        changed = kube.store.get(r.CONFIG_MAPS, "default", "d")
        changed["data"] = {"new": "yes"}
        kube.store.update(r.CONFIG_MAPS, "default", changed)

        rest = http.get(
            "/api/v1/namespaces/default/configmaps", params={"limit": 2, "continue": token}
        ).json()
        assert [i["metadata"]["name"] for i in rest["items"]] == ["c", "d"]
        assert "data" not in rest["items"][1]
        assert "continue" not in rest["metadata"]
        assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

        fresh = http.get("/api/v1/namespaces/default/configmaps").json()
        assert [i["metadata"]["name"] for i in fresh["items"]] == ["a", "b", "bb", "d"]


async def test_expired_continue_token_is_410(kube: KubeEmulator, client: AsyncClient) -> None:
    for name in ("a", "b", "c"):
        kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": name}})
    with admin_http(kube) as http:
        first = http.get("/api/v1/namespaces/default/configmaps", params={"limit": 1}).json()
        kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": "z"}})
        kube.store.compact()
        expired = http.get(
            "/api/v1/namespaces/default/configmaps",
            params={"limit": 1, "continue": first["metadata"]["continue"]},
        )
    assert expired.status_code == 410
    assert expired.headers["Content-Type"] == "application/json"
    assert expired.json()["reason"] == "Expired"
    assert "continue parameter is too old" in expired.json()["message"]


async def test_cluster_wide_list_spans_namespaces(client: AsyncClient, kube: KubeEmulator) -> None:
    kube.store.create(r.NAMESPACES, None, {"metadata": {"name": "other"}})
    await client.create(_pod("x", {"k": "v"}), namespace="default")
    await client.create(_pod("x", {"k": "v"}), namespace="other")
    found = [(p.metadata.namespace, p.metadata.name) async for p in client.list(Pod, namespace="*")]
    assert found == [("default", "x"), ("other", "x")]
