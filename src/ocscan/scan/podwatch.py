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
from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import OnErrorAction, OnErrorResult, on_error_retry

from ocscan.errors import OcscanError
from ocscan.kube.retry import is_transient
from ocscan.scan.podspec import SCAN_LABEL, SCANNER_SELECTOR

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


class PodTracker:
    """The latest known state of each scan's pod, and a way to wait for a condition."""

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._pods: dict[str, Pod] = {}
        self._gone: dict[str, Pod] = {}  # deleted under a scan's feet: their last state
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodTracker:
        self._task = asyncio.create_task(self._run(), name="ocscan-pod-watch")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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

    async def _record(self, pod: Pod, *, deleted: bool) -> None:
        name = scan_of(pod)
        if not name:
            return
        async with self._changed:
            if deleted:
                # Deleted while a scan still tracked it (evicted, preempted, removed by hand):
                # keep its last state so the scan ends now, saying so.
                if self._pods.pop(name, None) is not None:
                    self._gone[name] = pod
            else:
                self._pods[name] = pod
            self._changed.notify_all()

    async def refresh(self, name: str) -> Pod | None:
        """Read scan ``name``'s pod from the API now; None while it has none.

        A pod that was known and is gone now counts as deleted under the scan.
        """
        try:
            listed = self._client.list(
                Pod, namespace=self._namespace, labels={**SCANNER_SELECTOR, SCAN_LABEL: name}
            )
            pods = [pod async for pod in listed]
        except Exception as error:
            if not is_transient(error):  # refused: say so, waiting would not help
                raise
            log.debug("listing the pod of scan %s failed: %s", name, error)
            return self.latest(name)  # the next recheck tries again
        if not pods:
            async with self._changed:
                if (last := self._pods.pop(name, None)) is not None:
                    self._gone[name] = last
                self._changed.notify_all()
            return None
        newest = max(pods, key=_created)
        await self._record(newest, deleted=False)
        return newest

    def latest(self, name: str) -> Pod | None:
        """The last known state of scan ``name``'s pod, if it has one."""
        return self._pods.get(name)

    async def wait_for(self, name: str, condition: Callable[[Pod], bool]) -> Pod:
        """Wait until scan ``name``'s pod satisfies ``condition``; the caller bounds the wait.

        Raises :class:`ScannerPodGoneError` once that pod has been deleted.
        """
        while True:
            async with self._changed:
                if (last := self._gone.get(name)) is not None:
                    pod_name = (last.metadata and last.metadata.name) or name
                    raise ScannerPodGoneError(self._namespace, pod_name, pod_summary(last))
                pod = self._pods.get(name)
                if pod is not None and condition(pod):
                    return pod
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), RECHECK_SECONDS)
                    continue
            await self.refresh(name)

    def forget(self, name: str) -> None:
        self._pods.pop(name, None)
        self._gone.pop(name, None)


def _created(pod: Pod) -> str:
    stamp = pod.metadata.creationTimestamp if pod.metadata else None
    return stamp.isoformat() if stamp is not None else ""


def pod_summary(pod: Any) -> str:
    """A short description of a pod's state for messages."""
    status = pod.status
    if status is None:
        return "no status yet"
    parts = [status.phase or "Unknown"]
    if status.reason:
        parts.append(status.reason)
    for cs in status.containerStatuses or ():
        state = cs.state
        if state and state.waiting:
            parts.append(f"{state.waiting.reason}: {state.waiting.message or ''}".strip())
        elif state and state.terminated:
            parts.append(f"terminated {state.terminated.reason} ({state.terminated.exitCode})")
    return ", ".join(parts)
