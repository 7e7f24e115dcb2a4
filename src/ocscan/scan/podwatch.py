"""One watch on the scanner pods of the agent namespace, shared by every running scan.

Pods are known by their scan (the ``ocscan.io/scan`` label: the name of their Job), since
the Job controller names them. API calls stay flat however many scans run: one watch
stream (re-opened when it drops), plus a rare list of one scan's pods when no event
arrived for a while, so a stuck stream can never hang a scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import OnErrorAction, OnErrorResult, on_error_retry

from ocscan.errors import OcscanError
from ocscan.kube.retry import is_transient
from ocscan.scan.podspec import SCAN_LABEL, SCANNER_SELECTOR
from ocscan.scan.podstate import pod_summary
from ocscan.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RECHECK_SECONDS = 10.0
WATCH_RETRY_SECONDS = 1.0


def _refused(error: Exception) -> int | None:
    """The HTTP status when the API refuses the watch itself (RBAC, authentication)."""
    if isinstance(error, httpx2.HTTPStatusError) and error.response.status_code in (401, 403):
        return error.response.status_code
    return None


def _retry_after_pause(error: Exception, count: int) -> OnErrorResult:
    if _refused(error):  # retrying cannot fix permissions: let _run say what is missing
        return OnErrorResult(OnErrorAction.RAISE)
    result = on_error_retry(error, count)
    result.sleep = min(WATCH_RETRY_SECONDS * count, 10.0)
    return result


class ScannerPodGoneError(OcscanError):
    """A scanner pod was deleted before its scan finished."""

    def __init__(self, namespace: str, name: str, last_state: str) -> None:
        super().__init__(
            f"scanner pod {namespace}/{name} was deleted before it finished "
            f"(evicted, preempted or removed); its last state: {last_state}"
        )


def scan_of(pod: Pod) -> str | None:
    """The scan (Job) a scanner pod belongs to."""
    labels = (pod.metadata.labels if pod.metadata else None) or {}
    return labels.get(SCAN_LABEL)


@dataclass(slots=True)
class _Scan:
    """What the tracker knows of one scan: the pod it follows (the first one seen)."""

    pod: Pod | None = None
    gone: bool = False  # that pod was deleted; ``pod`` is its last state
    read_at: float = 0.0  # when its pods were last listed


class PodTracker:
    """The latest known state of each tracked scan's pod, and a way to wait for a condition.

    A scan follows one pod: the first of its Job that the tracker sees. Events about any
    other pod of the Job, or about scans not tracked (any more), are ignored.
    """

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._scans: dict[str, _Scan] = {}
        self._heard_at = time.monotonic()  # the watch's last event, about any pod
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodTracker:
        self._task = asyncio.create_task(self._run(), name="ocscan-pod-watch")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            try:
                stream = self._client.watch(
                    Pod,
                    namespace=self._namespace,
                    labels=SCANNER_SELECTOR,
                    on_error=_retry_after_pause,
                )
                async for event, pod in stream:
                    self._heard_at = time.monotonic()
                    await self._record(pod, deleted=event == "DELETED")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the stream itself failed: reopen it from scratch
                if code := _refused(error):
                    # lightkube drops the API's message for watches: name the call instead.
                    log.warning('cannot watch resource "pods" in namespace "%s" (HTTP %d); '
                                "scanner pods are read every %gs instead", self._namespace, code,
                                RECHECK_SECONDS)  # fmt: skip
                    await asyncio.sleep(RECHECK_SECONDS)
                    continue
                log.warning("scanner pod watch failed, reopening: %s", error)
                await asyncio.sleep(WATCH_RETRY_SECONDS)

    def track(self, name: str) -> None:
        """Follow scan ``name`` from now on (before its Job exists: no event is missed)."""
        self._scans.setdefault(name, _Scan())

    def forget(self, name: str) -> None:
        """Stop following scan ``name``."""
        self._scans.pop(name, None)

    def latest(self, name: str) -> Pod | None:
        """The last known state of scan ``name``'s pod (deleted or not), if it has one."""
        scan = self._scans.get(name)
        return scan.pod if scan is not None else None

    async def _record(self, pod: Pod, *, deleted: bool) -> None:
        scan = self._scans.get(scan_of(pod) or "")
        if scan is None or scan.gone:
            return
        if scan.pod is not None and _uid(scan.pod) != _uid(pod):
            return  # another pod of the Job: not the one this scan follows
        async with self._changed:
            # Deleted while the scan follows it (evicted, preempted, removed by hand): keep
            # its last state so the scan ends now, saying so.
            scan.pod, scan.gone = pod, deleted
            self._changed.notify_all()

    async def refresh(self, name: str) -> None:
        """Read scan ``name``'s pod from the API now (the watch may have missed it).

        The pod the scan follows counts as deleted when it is no longer there.
        """
        scan = self._scans.get(name)
        if scan is None:
            return
        scan.read_at = time.monotonic()
        try:
            listed = self._client.list(
                Pod, namespace=self._namespace, labels={**SCANNER_SELECTOR, SCAN_LABEL: name}
            )
            pods = {_uid(pod): pod async for pod in listed}
        except Exception as error:
            if not is_transient(error):  # refused: say so, waiting would not help
                raise
            log.debug("listing the pod of scan %s failed: %s", name, error)
            return  # the next recheck tries again
        if scan.pod is None:
            if pods:
                await self._record(min(pods.values(), key=_created), deleted=False)
        elif (current := pods.get(_uid(scan.pod))) is not None:
            await self._record(current, deleted=False)
        else:
            await self._record(scan.pod, deleted=True)

    async def wait_for(self, name: str, condition: Callable[[Pod], bool]) -> Pod:
        """Wait until scan ``name``'s pod satisfies ``condition``; the caller bounds the wait.

        Raises :class:`ScannerPodGoneError` once that pod has been deleted. When the watch
        has been quiet for ``RECHECK_SECONDS`` (however often this wait was interrupted),
        the pod is read from the API.
        """
        self.track(name)
        while True:
            async with self._changed:
                scan = self._scans[name]
                if scan.gone and scan.pod is not None:
                    pod_name = (scan.pod.metadata and scan.pod.metadata.name) or name
                    raise ScannerPodGoneError(self._namespace, pod_name, pod_summary(scan.pod))
                if scan.pod is not None and condition(scan.pod):
                    return scan.pod
                quiet = time.monotonic() - max(self._heard_at, scan.read_at)
                if quiet < RECHECK_SECONDS:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), RECHECK_SECONDS - quiet)
                    continue
            await self.refresh(name)


def _uid(pod: Pod) -> str | None:
    return pod.metadata.uid if pod.metadata else None


def _created(pod: Pod) -> tuple[str, str]:
    meta = pod.metadata
    stamp = meta.creationTimestamp if meta else None
    return (stamp.isoformat() if stamp is not None else "", (meta and meta.name) or "")
