"""Rules of the real API server that clients most easily get wrong, kept by the emulator:
Lease writes (MicroTime, versioned updates, spec bounds) and "new" Event fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kube_support import admin_http
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from ocscan.sandbox.kube.server import KubeEmulator

_LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


def _lease(name: str, renew: datetime, **spec: int) -> Lease:
    return Lease(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=LeaseSpec(holderIdentity="a", renewTime=renew, acquireTime=renew, **spec),
    )


async def test_a_micro_time_without_its_six_digits_does_not_decode(client: AsyncClient) -> None:
    """metav1.MicroTime parses with RFC3339Micro only: a whole second, as Python writes a
    datetime without microseconds, is a 400 before any validation."""
    whole_second = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    with pytest.raises(ApiError) as refused:
        await client.create(_lease("whole", whole_second, leaseDurationSeconds=15))
    status = refused.value.status
    assert (status.code, status.reason) == (400, "BadRequest")
    assert status.message == (
        'Lease in version "v1" cannot be handled as a Lease: parsing time '
        '"2024-05-01T12:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": '
        'cannot parse "Z" as ".000000"'
    )
    created = await client.create(
        _lease("micro", whole_second.replace(microsecond=7), leaseDurationSeconds=15)
    )
    assert created.spec is not None and created.spec.renewTime == whole_second.replace(
        microsecond=7
    )


def test_micro_time_digits_and_zone_are_checked_over_http(kube: KubeEmulator) -> None:
    def lease(name: str, renew: str) -> dict[str, object]:
        return {"metadata": {"name": name}, "spec": {"renewTime": renew}}

    with admin_http(kube) as http:
        millis = http.post(_LEASES, json=lease("millis", "2024-05-01T12:00:00.123Z"))
        assert millis.status_code == 400
        assert millis.json()["message"].endswith('cannot parse ".123Z" as ".000000"')
        offset = http.post(_LEASES, json=lease("offset", "2024-05-01T12:00:00.123456+02:00"))
        assert offset.status_code == 201, offset.text


async def test_a_lease_is_replaced_only_with_its_resource_version(client: AsyncClient) -> None:
    """Lease's strategy allows no unconditional update, unlike most built-in types."""
    now = datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
    created = await client.create(_lease("leader", now, leaseDurationSeconds=15))
    unversioned = _lease("leader", now, leaseDurationSeconds=30)
    with pytest.raises(ApiError) as refused:
        await client.replace(unversioned)
    status = refused.value.status
    assert (status.code, status.reason) == (422, "Invalid")
    assert status.message == (
        'leases.coordination.k8s.io "leader" is invalid: metadata.resourceVersion: '
        "Invalid value: 0x0: must be specified for an update"
    )
    assert created.metadata is not None
    unversioned.metadata.resourceVersion = created.metadata.resourceVersion  # type: ignore[union-attr]
    replaced = await client.replace(unversioned)
    assert replaced.spec is not None and replaced.spec.leaseDurationSeconds == 30


async def test_lease_duration_and_transitions_are_bounded(client: AsyncClient) -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
    with pytest.raises(ApiError) as refused:
        await client.create(_lease("bad", now, leaseDurationSeconds=0, leaseTransitions=-1))
    status = refused.value.status
    assert status.code == 422
    assert status.message == (
        'Lease.coordination.k8s.io "bad" is invalid: ['
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0, "
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0]"
    )


def test_an_event_with_event_time_needs_its_reporting_fields(kube: KubeEmulator) -> None:
    """core/v1 checks the fields of a "new" Event (one with eventTime) only."""
    event = {
        "metadata": {"name": "new-style"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "eventTime": "2024-05-01T12:00:00.000001Z",
        "reportingComponent": "not a name",
        "message": "m" * 1025,
        "type": "Warning",
    }
    with admin_http(kube) as http:
        refused = http.post("/api/v1/namespaces/default/events", json=event)
        assert refused.status_code == 422
        causes = [(c["field"], c["message"]) for c in refused.json()["details"]["causes"]]
        assert causes == [
            (
                "reportingController",
                'Invalid value: "not a name": name part must consist of alphanumeric '
                "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character",
            ),
            ("reportingInstance", "Required value"),
            ("action", "Required value"),
            ("reason", "Required value"),
            ("message", 'Invalid value: "": can have at most 1024 characters'),
        ]
        # The same Event without eventTime is an old-style one: none of this is checked.
        del event["eventTime"]
        accepted = http.post("/api/v1/namespaces/default/events", json=event)
        assert accepted.status_code == 201, accepted.text


def _job(resources: dict[str, object], size_limit: str = "1Gi") -> dict[str, object]:
    container = {"name": "scanner", "image": "registry.test/scanner:1", "resources": resources}
    return {
        "metadata": {"name": "scan"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": size_limit}}],
                }
            }
        },
    }


def test_a_request_above_its_limit_is_invalid(kube: KubeEmulator) -> None:
    """ValidateResourceRequirements compares quantities, whatever their units."""
    jobs = "/apis/batch/v1/namespaces/default/jobs"
    too_much = {"requests": {"memory": "2Gi", "cpu": "100m"}, "limits": {"memory": "1536Mi"}}
    with admin_http(kube) as http:
        refused = http.post(jobs, json=_job(too_much))
        assert refused.status_code == 422
        assert refused.json()["message"] == (
            'Job.batch "scan" is invalid: spec.template.spec.containers[0].resources.requests: '
            'Invalid value: "2Gi": must be less than or equal to memory limit of 1536Mi'
        )
        negative = http.post(jobs, json=_job({"requests": {"cpu": "-1"}}))
        assert negative.status_code == 422
        assert negative.json()["details"]["causes"][0]["field"] == (
            "spec.template.spec.containers[0].resources.requests[cpu]"
        )
        fits = {"requests": {"memory": "1536Mi", "cpu": "0.1"}, "limits": {"memory": "1.5Gi"}}
        accepted = http.post(jobs, json=_job(fits))
        assert accepted.status_code == 201, accepted.text


def test_a_malformed_quantity_does_not_decode(kube: KubeEmulator) -> None:
    jobs = "/apis/batch/v1/namespaces/default/jobs"
    with admin_http(kube) as http:
        for resources, size_limit in (({"limits": {"memory": "1GB"}}, "1Gi"), ({}, "4 Gi")):
            refused = http.post(jobs, json=_job(resources, size_limit))
            assert refused.status_code == 400
            assert refused.json()["message"] == (
                'Job in version "v1" cannot be handled as a Job: quantities must match the '
                "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            )
