"""Injected faults: errors (deterministic and seeded), 429 with Retry-After, latency, hangs
and dropped watches, as real clients experience them."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from kube_support import Kubectl, admin_http
from lightkube import ApiError, AsyncClient
from lightkube.core.exceptions import ApiError as LightkubeApiError
from lightkube.resources.core_v1 import ConfigMap, Pod
from lightkube.types import OnErrorAction, OnErrorResult

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator


async def test_fail_the_next_n_lists(client: AsyncClient, kube: KubeEmulator) -> None:
    rule = kube.faults.fail(verb="list", resource="pods", times=2)

    for _ in range(2):
        with pytest.raises(ApiError) as failed:
            [p async for p in client.list(Pod, namespace="default")]
        assert failed.value.status.code == 500
        assert failed.value.status.reason == "InternalError"
    assert [p async for p in client.list(Pod, namespace="default")] == []
    # other verbs and resources were never affected
    assert [c async for c in client.list(ConfigMap, namespace="default")] == []
    assert rule.hits == 2
    assert kube.faults.rules() == []
    assert [rec.code for rec in kube.request_log.records(verb="list", resource="pods")] == [
        500,
        500,
        200,
    ]


def test_a_lost_answer_still_took_effect(kube: KubeEmulator) -> None:
    rule = kube.faults.lose_answer(verb="create", resource="configmaps", times=1)
    document = {"metadata": {"name": "made"}}
    with admin_http(kube) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/v1/namespaces/default/configmaps", json=document)
    assert rule.hits == 1
    assert kube.store.get(r.CONFIG_MAPS, "default", "made")["metadata"]["name"] == "made"
    (record,) = kube.request_log.records(verb="create", resource="configmaps")
    assert record.code == 0  # no answer reached the client
    with admin_http(kube) as http:  # the retry meets what the lost request made
        assert http.post("/api/v1/namespaces/default/configmaps", json=document).status_code == 409


def test_too_many_requests_carries_retry_after(kube: KubeEmulator) -> None:
    kube.faults.fail(resource="secrets", namespace="default", status=429, retry_after=3)
    with admin_http(kube) as http:
        answer = http.get("/api/v1/namespaces/default/secrets/x")
        other_namespace = http.get("/api/v1/namespaces/kube-system/secrets")
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "3"
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["reason"] == "TooManyRequests"
    assert answer.json()["details"] == {"retryAfterSeconds": 3}
    assert other_namespace.status_code == 200


def test_probabilistic_faults_replay_with_the_same_seed(kube: KubeEmulator) -> None:
    def pattern(seed: int) -> list[int]:
        kube.faults.clear()
        kube.faults.seed(seed)
        kube.faults.fail(verb="get", resource="namespaces", probability=0.5)
        with admin_http(kube) as http:
            return [http.get("/api/v1/namespaces/default").status_code for _ in range(20)]

    first, again, other = pattern(7), pattern(7), pattern(8)
    assert first == again
    assert set(first) == {200, 500}
    assert first != other


def test_latency(kube: KubeEmulator) -> None:
    kube.faults.delay(0.3, verb="get", resource="namespaces", times=1)
    with admin_http(kube) as http:
        started = time.monotonic()
        assert http.get("/api/v1/namespaces/default").status_code == 200
        slow = time.monotonic() - started
        started = time.monotonic()
        http.get("/api/v1/namespaces/default")
        fast = time.monotonic() - started
    assert slow >= 0.3
    assert fast < 0.3


def test_hang_until_the_client_gives_up(kube: KubeEmulator) -> None:
    kube.faults.hang(verb="create", resource="configmaps", times=1)
    with admin_http(kube) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            http.post(
                "/api/v1/namespaces/default/configmaps",
                json={"metadata": {"name": "slow"}},
                timeout=0.5,
            )
        assert time.monotonic() - started < 3
    deadline = time.monotonic() + 3
    while not kube.request_log.records(verb="create"):
        assert time.monotonic() < deadline, "the hung request never ended on the server"
        time.sleep(0.05)
    assert kube.store.list(r.CONFIG_MAPS, "default") == []  # never reached the store


def test_hang_with_a_deadline_answers_504(kube: KubeEmulator) -> None:
    kube.faults.hang(verb="get", resource="namespaces", seconds=0.2, times=1)
    with admin_http(kube) as http:
        answer = http.get("/api/v1/namespaces/default")
    assert answer.status_code == 504
    assert answer.json()["reason"] == "Timeout"


async def test_dropped_watch_is_resumed_by_lightkube(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    for name in ("a", "b", "c"):
        kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": name}})
    kube.faults.drop_watches(resource="configmaps", after_events=2, times=1)
    retries: list[int] = []

    def retry(error: Exception, count: int) -> OnErrorResult:
        retries.append(count)
        return OnErrorResult(OnErrorAction.RETRY, sleep=0)

    seen: list[str] = []

    async def consume() -> None:
        async for _, obj in client.watch(ConfigMap, namespace="default", on_error=retry):
            seen.append(obj.metadata.name)
            if obj.metadata.name == "d":
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": "d"}})
    await asyncio.wait_for(task, timeout=10)

    assert retries == [1]
    # the first stream carried a and b; the resumed one starts after b's resourceVersion
    assert seen == ["a", "b", "c", "d"]


def test_dropped_watch_cuts_the_stream_without_an_end(kube: KubeEmulator) -> None:
    kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": "a"}})
    kube.faults.drop_watches(resource="configmaps", after_events=1)
    lines: list[str] = []
    with (
        admin_http(kube) as http,
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "GET", "/api/v1/namespaces/default/configmaps", params={"watch": "1"}
        ) as answer,
    ):
        for line in answer.iter_lines():
            lines.append(line)
    assert [json.loads(line)["type"] for line in lines] == ["ADDED"]


def test_kubectl_reports_injected_errors(kubectl: Kubectl, kube: KubeEmulator) -> None:
    kubectl.run("get", "pods", "-n", "default")  # warm the discovery cache
    kube.faults.fail(verb="list", resource="pods", status=503, times=1)
    failed = kubectl.run("get", "pods", "-n", "default", "--request-timeout=5s", check=False)
    assert failed.returncode != 0
    assert "ServiceUnavailable" in failed.stderr or "unable to handle" in failed.stderr


async def test_lightkube_raises_api_error_for_injected_500(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    kube.faults.fail(verb="get", message="etcd is on fire")
    with pytest.raises(LightkubeApiError) as failed:
        await client.get(ConfigMap, "x", namespace="default")
    assert failed.value.status.message == "etcd is on fire"
