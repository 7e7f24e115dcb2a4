"""Running one scan target in its own scanner pod, with a temporary credential Secret.

The order makes an unowned Secret impossible: the pod is created first (it waits in
``CreateContainerConfigError``), then the Secret, already owned by that pod. The Secret is
deleted as soon as the container has started (its env is resolved by then) or has ended,
and again on every exit path; the pod after its log was read. Should the agent die
in between, Kubernetes' garbage collector removes the Secret with its pod, and
:meth:`ScanExecutor.sweep` removes leftovers at start-up and every cycle.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Pod, Secret

from ocscan.config import ScannerConfig
from ocscan.kube.retry import describe, retrying
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.keyring import CredentialMatch
from ocscan.registry.reference import ImageReference
from ocscan.scan.failure import FailureKind, ScanFailure, classify_failure, redact
from ocscan.scan.outcome import ScanOutcome
from ocscan.scan.plan import ScanTarget
from ocscan.scan.podspec import (
    SCANNER_CONTAINER,
    SCANNER_SELECTOR,
    credential_secret,
    scanner_pod,
)
from ocscan.scan.podwatch import PodTracker, ScannerPodGoneError, pod_summary
from ocscan.scan.report import ReportError, ScanResult, parse_report
from ocscan.scan.transport import REPORT_TOO_LARGE_EXIT, TransportError, unframe_report
from ocscan.scan.trivy_command import ClientServer, build_trivy_command

log = logging.getLogger(__name__)

_Created = TypeVar("_Created", Pod, Secret)

# Waiting reasons that no amount of waiting fixes: fail the scan at once.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerError",
        "RunContainerError",
    }
)


def target_key(reference: ImageReference) -> str:
    """A short, label-safe id of a target."""
    return hashlib.sha256(str(reference).encode()).hexdigest()[:16]


def _started_or_done(pod: Pod) -> bool:
    status = pod.status
    if status is None:
        return False
    if status.phase in ("Succeeded", "Failed"):
        return True
    return any(
        cs.state is not None and (cs.state.running or cs.state.terminated)
        for cs in status.containerStatuses or ()
    )


def _stuck(pod: Pod) -> str | None:
    """``reason: message`` when the scanner container cannot start by itself."""
    for cs in (pod.status and pod.status.containerStatuses) or ():
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason in STUCK_REASONS:
            return f"{waiting.reason}: {waiting.message or ''}".strip()
    return None


def _started_done_or_stuck(pod: Pod) -> bool:
    return _started_or_done(pod) or _stuck(pod) is not None


def _done(pod: Pod) -> bool:
    return pod.status is not None and pod.status.phase in ("Succeeded", "Failed")


def _terminated(pod: Pod) -> Any:
    for cs in (pod.status and pod.status.containerStatuses) or ():
        if cs.name == SCANNER_CONTAINER and cs.state is not None and cs.state.terminated:
            return cs.state.terminated
    return None


def interpret(
    pod: Pod,
    log_text: str,
    *,
    image: str,
    report_cap: int,
    secrets: Sequence[str] = (),
) -> ScanResult | ScanFailure:
    """Turn a finished scanner pod and its log into a result or a classified failure."""
    status = pod.status
    terminated = _terminated(pod)
    if status is not None and status.reason == "DeadlineExceeded":
        message = f"scanner pod exceeded its deadline: {status.message or 'no message'}"
        return ScanFailure(kind=FailureKind.TIMEOUT, message=redact(message, secrets))
    if terminated is not None and terminated.reason == "OOMKilled":
        return ScanFailure(
            kind=FailureKind.OOM,
            message="the scanner ran out of memory (OOMKilled); raise scanner.limits.memory",
        )
    exit_code = terminated.exitCode if terminated is not None else None
    if exit_code == REPORT_TOO_LARGE_EXIT:
        line = next((ln for ln in log_text.splitlines() if "report_too_large" in ln), "")
        return ScanFailure(kind=FailureKind.REPORT_TOO_LARGE, message=line.strip())
    if exit_code != 0:
        return classify_failure(exit_code, log_text, secrets=secrets)
    try:
        return parse_report(unframe_report(log_text, cap=report_cap), image=image)
    except TransportError as error:
        return ScanFailure(kind=FailureKind(error.kind), message=redact(error.message, secrets))
    except ReportError as error:
        return ScanFailure(kind=FailureKind.SCANNER_ERROR, message=redact(str(error), secrets))


class ScanExecutor:
    """Scans targets in scanner pods of the agent namespace; at most ``concurrency`` at once."""

    def __init__(
        self,
        client: AsyncClient,
        config: ScannerConfig,
        tracker: PodTracker,
        *,
        on_secret_count: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self._config = config
        self._tracker = tracker
        self._gate = asyncio.Semaphore(config.concurrency)
        self._cleanups: set[asyncio.Task[None]] = set()
        self._on_secret_count = on_secret_count
        self._alive: set[str] = set()
        self.running = 0  # scans holding a concurrency slot right now

    @property
    def secrets_alive(self) -> int:
        """Temporary Secrets this executor created and has not deleted yet."""
        return len(self._alive)

    def _count_secret(self, name: str, delta: int) -> None:
        if delta > 0:
            self._alive.add(name)
        else:
            self._alive.discard(name)
        if self._on_secret_count is not None:
            self._on_secret_count(len(self._alive))

    @property
    def namespace(self) -> str:
        return self._config.namespace

    async def scan(self, target: ScanTarget) -> ScanOutcome:
        """Scan ``target``, trying its credentials in order while the registry says ``auth``."""
        outcome = ScanOutcome()
        candidates: list[CredentialMatch | None] = list(target.credentials) or [None]
        for match in candidates:
            credential = match.credential if match is not None else None
            label = f"secret {match.source} (key {match.key})" if match else "no credentials"
            outcome.attempts.append(label)
            async with self._gate:
                self.running += 1
                started = time.monotonic()  # the scan, not the wait for a slot
                try:
                    answer = await self._scan_once(target.reference, credential)
                finally:
                    self.running -= 1
                    outcome.seconds += time.monotonic() - started
            if isinstance(answer, ScanResult):
                outcome.result, outcome.failure = answer, None
                return outcome
            outcome.failure = answer
            if answer.kind != FailureKind.AUTH:
                break
        return outcome

    async def _scan_once(
        self, reference: ImageReference, credential: RegistryCredential | None
    ) -> ScanResult | ScanFailure:
        key = target_key(reference)
        name = f"ocscan-scan-{key[:10]}-{secrets.token_hex(3)}"
        # The server token comes from its own Secret via secretKeyRef, not from here.
        command = build_trivy_command(
            str(reference),
            ClientServer(server_url=self._config.trivy_server),
            credential=credential,
            timeout=self._config.timeout_seconds,
        )
        manifest = scanner_pod(
            name=name,
            target_key=key,
            image_ref=str(reference),
            command=command,
            config=self._config,
        )
        scrub = list(command.secret_values())
        failed = True
        # Set before the create call: a create whose answer was lost may still have worked.
        secret_attempted = False
        deadline = (
            self._config.start_timeout_seconds
            + self._config.timeout_seconds
            + self._config.deadline_margin_seconds
        )
        try:
            created = await self._create(cast(Pod, Pod.from_dict(manifest)), name)
            if credential is not None:
                secret = credential_secret(
                    name=name,
                    namespace=self.namespace,
                    target_key=key,
                    owner_pod=created.to_dict(),
                    command=command,
                )
                secret_attempted = True
                await self._create(cast(Secret, Secret.from_dict(secret)), name)
                self._count_secret(name, +1)
            async with asyncio.timeout(deadline):
                try:
                    async with asyncio.timeout(self._config.start_timeout_seconds):
                        pod = await self._tracker.wait_for(name, _started_done_or_stuck)
                except TimeoutError:
                    pod = await retrying(
                        lambda: self._client.get(Pod, name, namespace=self.namespace),
                        what=f"get pod {self.namespace}/{name}",
                    )
                if not _started_or_done(pod):
                    return ScanFailure(
                        kind=FailureKind.SCANNER_ERROR,
                        message=f"scanner pod {self.namespace}/{name} did not start: "
                        + redact(_stuck(pod) or pod_summary(pod), scrub),
                    )
                if secret_attempted:
                    secret_attempted = not await self._delete_secret(name)
                pod = await self._tracker.wait_for(name, _done)
            log_text = await retrying(
                lambda: self._read_log(name), what=f"read log of {self.namespace}/{name}"
            )
            answer = interpret(
                pod,
                log_text,
                image=str(reference),
                report_cap=self._config.report_cap_bytes,
                secrets=scrub,
            )
            failed = isinstance(answer, ScanFailure)
            return answer
        except TimeoutError:
            return ScanFailure(
                kind=FailureKind.TIMEOUT,
                message=f"scanner pod {self.namespace}/{name} did not finish within {deadline}s",
            )
        except ScannerPodGoneError as error:
            return ScanFailure(kind=FailureKind.SCANNER_ERROR, message=redact(str(error), scrub))
        except ApiError as error:
            if error.status.code == 404:  # removed under the scan, as the watch would have told
                message = str(ScannerPodGoneError(self.namespace, name, "gone"))
                return ScanFailure(kind=FailureKind.SCANNER_ERROR, message=message)
            return ScanFailure(
                kind=FailureKind.SCANNER_ERROR,
                message=f"Kubernetes API refused the scanner pod {self.namespace}/{name}: "
                + redact(error.status.message or str(error.status.code), scrub),
            )
        except httpx2.HTTPError as error:  # no JSON Status (a proxy's page), or no answer
            return ScanFailure(
                kind=FailureKind.SCANNER_ERROR,
                message=f"Kubernetes API failed while scanning in {self.namespace}/{name}: "
                f"{describe(error)}",
            )
        finally:
            # Starts now and runs to the end even if this scan is cancelled; the scan's
            # concurrency slot does not wait for the deletions, drain() does.
            cleanup = asyncio.create_task(self._cleanup(name, secret_attempted, keep_pod=failed))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)

    async def _create(self, obj: _Created, name: str) -> _Created:
        """Create ``obj``; a retry that meets 409 finds the object its lost answer made."""
        kind = type(obj).__name__

        async def attempt() -> _Created:
            try:
                return await self._client.create(obj)
            except ApiError as error:
                if error.status.code != 409:
                    raise
                return await self._client.get(type(obj), name, namespace=self.namespace)

        return await retrying(attempt, what=f"create {kind} {self.namespace}/{name}")

    async def drain(self) -> None:
        """Wait until every scan's pod and Secret deletions have finished.

        ``asyncio.wait`` (unlike ``gather``) leaves the deletions running should this wait
        itself be cancelled.
        """
        while self._cleanups:
            await asyncio.wait(set(self._cleanups))

    async def _read_log(self, name: str) -> str:
        lines = [
            line
            async for line in self._client.log(
                name, namespace=self.namespace, container=SCANNER_CONTAINER
            )
        ]
        return "".join(lines)

    async def _delete_secret(self, name: str) -> bool:
        """True once the Secret is gone (deleted now, or already)."""
        try:
            await retrying(
                lambda: self._client.delete(Secret, name, namespace=self.namespace),
                what=f"delete secret {self.namespace}/{name}",
            )
        except ApiError as error:
            if error.status.code != 404:
                log.warning(
                    "could not delete temporary secret %s/%s: %s",
                    self.namespace,
                    name,
                    error.status.message,
                )
                return False
        except httpx2.HTTPError as error:
            log.warning("could not delete temporary secret %s/%s: %s",
                        self.namespace, name, describe(error))  # fmt: skip
            return False
        self._count_secret(name, -1)
        return True

    async def _cleanup(self, name: str, secret_alive: bool, *, keep_pod: bool) -> None:
        if secret_alive:
            await self._delete_secret(name)
        self._tracker.forget(name)
        if keep_pod and self._config.keep_failed_pods:
            return
        # Should this fail, the next sweep tries again (and the Secret goes with the pod).
        await self._delete_pod(name)

    async def _delete_pod(self, name: str) -> bool:
        """True once the scanner pod is gone (deleted now, or already); else a warning."""
        try:
            # A scanner has nothing to shut down gracefully: remove it at once.
            await retrying(
                lambda: self._client.delete(Pod, name, namespace=self.namespace, grace_period=0),
                what=f"delete pod {self.namespace}/{name}",
            )
        except ApiError as error:
            if error.status.code != 404:
                log.warning("could not delete scanner pod %s/%s: %s",
                            self.namespace, name, error.status.message)  # fmt: skip
                return False
        except httpx2.HTTPError as error:
            log.warning("could not delete scanner pod %s/%s: %s",
                        self.namespace, name, describe(error))  # fmt: skip
            return False
        return True

    async def sweep(self) -> int:
        """Delete the scanner pods and Secrets that a crashed agent left behind.

        Each Secret has its pod's name and is owned by it, so listing managed pods finds
        them all without ever listing Secrets; one whose pod is already gone is removed by
        Kubernetes' garbage collector.
        """

        async def managed_pods() -> list[str]:
            pods = self._client.list(Pod, namespace=self.namespace, labels=SCANNER_SELECTOR)
            return [_name_of(pod) async for pod in pods]

        names = await retrying(managed_pods, what=f"list scanner pods in {self.namespace}")
        removed = 0
        for name in names:
            # Should the Secret stay, the garbage collector removes it with its pod.
            await self._delete_secret(name)
            removed += await self._delete_pod(name)
        return removed


def _name_of(obj: Pod) -> str:
    assert obj.metadata is not None and obj.metadata.name is not None
    return obj.metadata.name
