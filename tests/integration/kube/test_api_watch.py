"""Watches: initial state, resume from a resourceVersion, 410 after compaction, timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from kube_support import admin_http
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError as LightkubeApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator


def _cm(kube: KubeEmulator, name: str, **labels: str) -> dict[str, Any]:
    return kube.store.create(
        r.CONFIG_MAPS, "default", {"metadata": {"name": name, "labels": labels}}
    )


def _stream(kube: KubeEmulator, count: int | None = None, **params: str) -> list[dict[str, Any]]:
    """The events of one watch request: the first ``count``, or all until it times out."""
    events: list[dict[str, Any]] = []
    with (
        admin_http(kube) as http,
        http.stream(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            params={"watch": "true", "timeoutSeconds": "5", **params},
        ) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["Transfer-Encoding"] == "chunked"
        for line in answer.iter_lines():
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


def test_watch_without_resource_version_starts_with_current_state(kube: KubeEmulator) -> None:
    _cm(kube, "a")
    _cm(kube, "b")
    events = _stream(kube, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


def test_watch_resumes_after_a_resource_version(kube: KubeEmulator) -> None:
    _cm(kube, "a")
    since = _cm(kube, "b")["metadata"]["resourceVersion"]
    changed = kube.store.get(r.CONFIG_MAPS, "default", "a")
    changed["data"] = {"k": "v"}
    kube.store.update(r.CONFIG_MAPS, "default", changed)
    kube.store.delete(r.CONFIG_MAPS, "default", "b")
    _cm(kube, "c")

    events = _stream(kube, 3, resourceVersion=str(since))

    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"),
        ("DELETED", "b"),
        ("ADDED", "c"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(str(since))


def test_watch_from_compacted_version_is_an_error_event_410(kube: KubeEmulator) -> None:
    old = _cm(kube, "a")["metadata"]["resourceVersion"]
    _cm(kube, "b")
    kube.store.compact()

    events = _stream(kube, resourceVersion=str(old))

    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status"
    assert status["code"] == 410
    assert status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {old} (")


def test_history_bound_compacts_old_versions(kube: KubeEmulator) -> None:
    kube.store.history_limit = 3
    first = _cm(kube, "a")["metadata"]["resourceVersion"]
    for name in ("b", "c", "d", "e"):
        _cm(kube, name)
    events = _stream(kube, 1, resourceVersion=str(first))
    assert events[0]["type"] == "ERROR"


def test_watch_with_selector_sees_objects_enter_and_leave(kube: KubeEmulator) -> None:
    start = kube.store.resource_version
    _cm(kube, "a", app="web")
    moved = kube.store.get(r.CONFIG_MAPS, "default", "a")
    moved["metadata"]["labels"] = {"app": "db"}
    kube.store.update(r.CONFIG_MAPS, "default", moved)
    _cm(kube, "b", app="db")

    events = _stream(kube, 2, resourceVersion=str(start), labelSelector="app=web")

    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("DELETED", "a"),
    ]


def test_timeout_seconds_ends_the_stream(kube: KubeEmulator) -> None:
    started = time.monotonic()
    assert _stream(kube, resourceVersion=str(kube.store.resource_version), timeoutSeconds="1") == []
    assert 0.9 <= time.monotonic() - started < 5


async def test_lightkube_watch_sees_live_changes(client: AsyncClient, kube: KubeEmulator) -> None:
    _cm(kube, "before")
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async for kind, obj in client.watch(ConfigMap, namespace="default"):
            seen.append((kind, obj.metadata.name))
            if len(seen) == 3:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    await client.create(ConfigMap(metadata=ObjectMeta(name="during")), namespace="default")
    await client.delete(ConfigMap, "during", namespace="default")
    await asyncio.wait_for(task, timeout=10)

    assert seen == [("ADDED", "before"), ("ADDED", "during"), ("DELETED", "during")]


async def test_lightkube_watch_resumes_across_server_timeouts(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    seen: list[str] = []

    async def consume() -> None:
        async for _, obj in client.watch(ConfigMap, namespace="default", server_timeout=1):
            seen.append(obj.metadata.name)
            if len(seen) == 2:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    _cm(kube, "one")
    await asyncio.sleep(1.5)  # the first stream times out; lightkube re-watches from "one"
    _cm(kube, "two")
    await asyncio.wait_for(task, timeout=10)

    assert seen == ["one", "two"]
    # The log records a request when it ends: the second watch ends once lightkube hangs up.
    deadline = time.monotonic() + 3
    while len(watches := kube.request_log.records(verb="watch", resource="configmaps")) < 2:
        assert time.monotonic() < deadline, watches
        await asyncio.sleep(0.05)
    assert "resourceVersion=" in watches[-1].query


async def test_lightkube_surfaces_410_on_resume(kubeconfig: object, kube: KubeEmulator) -> None:
    old = _cm(kube, "a")["metadata"]["resourceVersion"]
    _cm(kube, "b")
    kube.store.compact()
    api = AsyncClient(config=KubeConfig.from_file(kubeconfig))
    try:
        with pytest.raises(LightkubeApiError) as gone:
            async for _ in api.watch(ConfigMap, namespace="default", resource_version=str(old)):
                pass
    finally:
        await api.close()
    assert gone.value.status.code == 410
    assert isinstance(gone.value, ApiError)


def test_bookmarks_when_allowed(kube: KubeEmulator) -> None:
    kube.bookmark_interval = 0.3
    events = _stream(
        kube, 2, resourceVersion=str(kube.store.resource_version), allowWatchBookmarks="true"
    )
    assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]
    assert events[0]["object"]["metadata"]["resourceVersion"] == str(kube.store.resource_version)
