"""Kubernetes Events that make scan failures visible where operators already look."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from ocscan.kube.retry import describe, retrying
from ocscan.kube.workloads import WorkloadRef

log = logging.getLogger(__name__)

REPORTING_COMPONENT = "ocscan"
MESSAGE_LIMIT = 1024  # the API server truncates longer event messages anyway


def scan_failed_event(workload: WorkloadRef, container: str, kind: str, message: str) -> Event:
    """A Warning ``ScanFailed`` event on ``workload``; ``message`` must already be redacted."""
    now = datetime.now(UTC).replace(microsecond=0)  # metav1.Time has whole seconds
    text = f"container {container}: {kind}: {message}"[:MESSAGE_LIMIT]
    return Event(
        metadata=ObjectMeta(
            generateName=f"{workload.name[:40]}.ocscan-", namespace=workload.namespace
        ),
        involvedObject=ObjectReference(
            apiVersion=workload.resolved_api_version or None,
            kind=workload.kind,
            name=workload.name,
            namespace=workload.namespace,
            uid=workload.uid or None,
        ),
        type="Warning",
        reason="ScanFailed",
        message=text,
        source=EventSource(component=REPORTING_COMPONENT),
        reportingComponent=REPORTING_COMPONENT,
        reportingInstance=REPORTING_COMPONENT,
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )


async def emit(client: AsyncClient, event: Event) -> bool:
    """Create ``event``; a refusal is logged, never fatal to the cycle."""
    target = event.involvedObject.name
    try:
        await retrying(lambda: client.create(event), what=f"create event on {target}")
    except ApiError as error:
        log.warning("could not record event on %s: %s", target, error.status.message)
        return False
    except httpx2.HTTPError as error:
        log.warning("could not record event on %s: %s", target, describe(error))
        return False
    return True
