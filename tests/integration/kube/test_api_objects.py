"""Object basics over HTTP, with lightkube and kubectl: system fields, errors, validation."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from kube_support import Kubectl, admin_http
from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod, Secret

from ocscan.sandbox.kube.server import KubeEmulator


def _pod(name: str | None = None, generate_name: str | None = None, **labels: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, generateName=generate_name, labels=labels or None),
        spec=PodSpec(containers=[Container(name="app", image="registry.test/app:1.0")]),
    )


async def test_create_fills_system_fields_and_generate_name(client: AsyncClient) -> None:
    first = await client.create(_pod(generate_name="web-"), namespace="default")
    second = await client.create(_pod(generate_name="web-"), namespace="default")

    assert first.metadata.name.startswith("web-") and len(first.metadata.name) == len("web-") + 5
    assert first.metadata.name != second.metadata.name
    assert first.metadata.uid and first.metadata.uid != second.metadata.uid
    assert first.metadata.creationTimestamp is not None
    # one global counter, as etcd's revision
    assert int(second.metadata.resourceVersion) > int(first.metadata.resourceVersion)
    assert first.status.phase == "Pending"
    fetched = await client.get(Pod, first.metadata.name, namespace="default")
    assert fetched.metadata.uid == first.metadata.uid


async def test_errors_are_status_objects_with_exact_content_type(kube: KubeEmulator) -> None:
    with admin_http(kube) as http:
        missing = http.get("/api/v1/namespaces/default/pods/nope")
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/json"
        assert missing.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'pods "nope" not found',
            "reason": "NotFound",
            "details": {"name": "nope", "kind": "pods"},
            "code": 404,
        }
        bad_selector = http.get("/api/v1/pods", params={"labelSelector": "a in ("})
        assert bad_selector.status_code == 400
        assert bad_selector.json()["reason"] == "BadRequest"
        unknown = http.get("/apis/nope.example.com/v1/things")
        assert unknown.status_code == 404
        assert unknown.headers["Content-Type"] == "application/json"


async def test_lightkube_sees_api_errors(client: AsyncClient) -> None:
    await client.create(_pod("twin"), namespace="default")

    with pytest.raises(ApiError) as exists:
        await client.create(_pod("twin"), namespace="default")
    assert exists.value.status.code == 409
    assert exists.value.status.reason == "AlreadyExists"
    assert exists.value.status.message == 'pods "twin" already exists'

    with pytest.raises(ApiError) as no_namespace:
        await client.create(_pod("lonely"), namespace="missing")
    assert no_namespace.value.status.code == 404
    assert no_namespace.value.status.message == 'namespaces "missing" not found'

    with pytest.raises(ApiError) as missing:
        await client.get(Deployment, "ghost", namespace="default")
    assert missing.value.status.message == 'deployments.apps "ghost" not found'


async def test_stale_resource_version_is_a_conflict(client: AsyncClient) -> None:
    created = await client.create(
        ConfigMap(metadata=ObjectMeta(name="cfg"), data={"a": "1"}), namespace="default"
    )
    created.data = {"a": "2"}
    updated = await client.replace(created)
    assert int(updated.metadata.resourceVersion) > int(created.metadata.resourceVersion)

    created.data = {"a": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiError) as conflict:
        await client.replace(created)
    assert conflict.value.status.code == 409
    assert conflict.value.status.reason == "Conflict"
    assert "the object has been modified" in conflict.value.status.message
    current = await client.get(ConfigMap, "cfg", namespace="default")
    assert current.data == {"a": "2"}


async def test_noop_update_keeps_resource_version(client: AsyncClient) -> None:
    created = await client.create(
        ConfigMap(metadata=ObjectMeta(name="same"), data={"a": "1"}), namespace="default"
    )
    again = await client.replace(created)
    assert again.metadata.resourceVersion == created.metadata.resourceVersion


async def test_generation_counts_spec_changes_only(client: AsyncClient) -> None:
    deployment = Deployment.from_dict(
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
                },
            },
        }
    )
    created = await client.create(deployment, namespace="default")
    assert created.metadata.generation == 1
    assert created.spec.replicas == 1  # defaulted
    labelled = await client.patch(
        Deployment, "web", {"metadata": {"labels": {"x": "y"}}}, namespace="default"
    )
    assert labelled.metadata.generation == 1
    scaled = await client.patch(Deployment, "web", {"spec": {"replicas": 3}}, namespace="default")
    assert scaled.metadata.generation == 2


async def test_secret_string_data_is_merged_and_never_returned(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    secret = Secret(
        metadata=ObjectMeta(name="creds"),
        data={"kept": base64.b64encode(b"old").decode()},
        stringData={"password": "s3cr3t", "kept": "new"},
    )
    created = await client.create(secret, namespace="default")
    assert created.stringData is None
    assert created.type == "Opaque"
    assert base64.b64decode(created.data["password"]) == b"s3cr3t"
    assert base64.b64decode(created.data["kept"]) == b"new"  # stringData wins
    with admin_http(kube) as http:
        raw = http.get("/api/v1/namespaces/default/secrets/creds").json()
    assert "stringData" not in raw


def _event(name: str, involved_namespace: str | None, **fields: str) -> Event:
    return Event.from_dict(
        {
            "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": involved_namespace},
            "reason": "Tested",
            "message": "a test event",
            **fields,
        }
    )


async def test_an_event_about_an_object_in_another_namespace_is_invalid(
    client: AsyncClient,
) -> None:
    with pytest.raises(ApiError) as invalid:
        await client.create(_event("elsewhere", "team-a"), namespace="default")
    status = invalid.value.status
    assert (status.code, status.reason) == (422, "Invalid")
    assert status.message == (
        'Event "elsewhere" is invalid: involvedObject.namespace: '
        'Invalid value: "team-a": does not match event.namespace'
    )
    assert [cause.field for cause in status.details.causes] == ["involvedObject.namespace"]
    # An empty one (a cluster-scoped object) only goes to "default"...
    await client.create(_event("cluster-scoped", None), namespace="default")
    with pytest.raises(ApiError) as empty:
        await client.create(_event("cluster-scoped", None), namespace="kube-system")
    assert 'Invalid value: "": does not match event.namespace' in empty.value.status.message
    # ...or, for an Event with eventTime, also to kube-system; a mismatch is not checked then.
    new_style = {
        "eventTime": "2024-01-01T00:00:00.000001Z",  # lightkube drops a zero fraction
        "action": "Test",
        "reportingComponent": "tester",
        "reportingInstance": "tester-1",
    }
    await client.create(_event("new-style", None, **new_style), namespace="kube-system")
    await client.create(_event("new-mismatch", "team-a", **new_style), namespace="default")
    await client.create(_event("same", "default"), namespace="default")


async def test_invalid_objects_get_422_with_field_paths(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    no_image = Pod.from_dict({"metadata": {"name": "bad"}, "spec": {"containers": [{"name": "a"}]}})
    with pytest.raises(ApiError) as invalid:
        await client.create(no_image, namespace="default")
    status = invalid.value.status
    assert status.code == 422
    assert status.reason == "Invalid"
    assert status.message == 'Pod "bad" is invalid: spec.containers[0].image: Required value'
    assert [cause.field for cause in status.details.causes] == ["spec.containers[0].image"]

    wrong_type = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad"},
        "spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": "web"}]}]},
    }
    with admin_http(kube) as http:
        answer = http.post("/api/v1/namespaces/default/pods", json=wrong_type)
    assert answer.status_code == 422
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert body["details"]["causes"][0]["field"] == "spec.containers[0].ports[0].containerPort"
    assert "must be of type integer" in body["message"]

    with pytest.raises(ApiError) as bad_name:
        await client.create(_pod("Not_A_Name"), namespace="default")
    assert bad_name.value.status.code == 422
    assert "metadata.name" in bad_name.value.status.message


async def test_workload_selector_must_match_template(client: AsyncClient) -> None:
    mismatched = Deployment.from_dict(
        {
            "metadata": {"name": "odd"},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {
                    "metadata": {"labels": {"app": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        }
    )
    with pytest.raises(ApiError) as invalid:
        await client.create(mismatched, namespace="default")
    assert "`selector` does not match template `labels`" in invalid.value.status.message


async def test_kubectl_rejects_invalid_and_unknown_fields(kubectl: Kubectl) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "default"},
        "data": {"a": "1"},
        "extra": True,
    }
    strict = kubectl.run("create", "-f", "-", stdin=json.dumps(manifest), check=False)
    assert strict.returncode != 0
    assert 'strict decoding error: unknown field "extra"' in strict.stderr

    lenient = kubectl.run(
        "create", "--validate=false", "-f", "-", "-o", "json", stdin=json.dumps(manifest)
    )
    assert "extra" not in json.loads(lenient.stdout)  # dropped, as decoding drops it


async def test_namespaces_end_with_their_content(client: AsyncClient) -> None:
    await client.create(Namespace(metadata=ObjectMeta(name="team")))
    assert (await client.get(Namespace, "team")).status.phase == "Active"
    await client.create(_pod("p1"), namespace="team")
    await client.create(ConfigMap(metadata=ObjectMeta(name="c1")), namespace="team")

    await client.delete(Namespace, "team")

    # Terminating at first; the namespace controller empties it a moment later.
    assert (await client.get(Namespace, "team")).status.phase == "Terminating"
    deadline = time.monotonic() + 5
    while True:
        try:
            await client.get(Namespace, "team")
        except ApiError as gone:
            assert gone.status.code == 404
            break
        assert time.monotonic() < deadline, "the namespace was never removed"
        await asyncio.sleep(0.05)
    assert [p async for p in client.list(Pod, namespace="team")] == []
    assert [c async for c in client.list(ConfigMap, namespace="team")] == []


async def test_terminating_namespace_refuses_new_content(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    kube.store.namespace_deletion_delay = 0  # empty it at once: only the finalizer holds it
    await client.create(Namespace(metadata=ObjectMeta(name="closing")))
    await client.create(
        ConfigMap(metadata=ObjectMeta(name="held", finalizers=["example.com/hold"])),
        namespace="closing",
    )
    await client.delete(Namespace, "closing")
    namespace = await client.get(Namespace, "closing")
    assert namespace.status.phase == "Terminating"
    with pytest.raises(ApiError) as refused:
        await client.create(_pod("late"), namespace="closing")
    assert refused.value.status.code == 403
    assert "because it is being terminated" in refused.value.status.message
    held = await client.get(ConfigMap, "held", namespace="closing")
    assert held.metadata.deletionTimestamp is not None

    await client.patch(ConfigMap, "held", {"metadata": {"finalizers": None}}, namespace="closing")
    with pytest.raises(ApiError):
        await client.get(Namespace, "closing")


async def test_default_namespace_may_not_be_deleted(client: AsyncClient) -> None:
    with pytest.raises(ApiError) as refused:
        await client.delete(Namespace, "default")
    assert refused.value.status.code == 403
