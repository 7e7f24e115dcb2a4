"""Running one scan target in its own scanner pod, with a temporary credential Secret.

Each scan is a Job of one pod. With credentials, the order makes an unowned Secret
impossible and the pod never waits for it: the Job is created suspended, then the Secret,
already owned by that Job, then the Job is resumed and its controller creates the pod. (A
pod created before its Secret would sit in ``CreateContainerConfigError`` for the kubelet's
10-15 s retry back-off.) The Secret is deleted as soon as the container has started (its
env is resolved by then) or has ended, and again on every exit path; the Job, and with it
the pod, after the log was read. Should the agent die in between, Kubernetes' garbage
collector removes the Secret with its Job, and :meth:`ScanExecutor.sweep` removes leftovers
at start-up and every cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Event, Pod, Secret
from lightkube.types import CascadeType, PatchType

from ocscan.config import ScannerConfig
from ocscan.kube.retry import describe, retrying
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.keyring import CredentialMatch
from ocscan.registry.reference import ImageReference
from ocscan.scan.failure import FailureKind, ScanFailure, redact
from ocscan.scan.outcome import ScanOutcome
from ocscan.scan.plan import ScanTarget
from ocscan.scan.podspec import (
    SCANNER_CONTAINER,
    SCANNER_SELECTOR,
    credential_secret,
    scanner_job,
)
from ocscan.scan.podstate import (
    done,
    interpret,
    pod_summary,
    started_done_or_stuck,
    started_or_done,
    stuck,
)
from ocscan.scan.podwatch import PodTracker, ScannerPodGoneError
from ocscan.scan.report import ScanResult
from ocscan.scan.trivy_command import ClientServer, build_trivy_command

log = logging.getLogger(__name__)

_Created = TypeVar("_Created", Job, Secret)

# While a scan's Job has no pod yet, how often to look for the reason in its Events.
JOB_CHECK_SECONDS = 5.0


def target_key(reference: ImageReference) -> str:
    """A short, label-safe id of a target."""
    return hashlib.sha256(str(reference).encode()).hexdigest()[:16]


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
                    answer = await self._scan_once(target, credential)
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
        self, target: ScanTarget, credential: RegistryCredential | None
    ) -> ScanResult | ScanFailure:
        reference = target.reference
        key = target_key(reference)
        name = f"ocscan-scan-{key[:10]}-{secrets.token_hex(3)}"
        # The server token comes from its own Secret via secretKeyRef, not from here.
        command = build_trivy_command(
            str(reference),
            ClientServer(server_url=self._config.trivy_server),
            credential=credential,
            timeout=self._config.timeout_seconds,
            platform=target.platform,
        )
        manifest = scanner_job(
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
        self._tracker.track(name)
        try:
            job = await self._create(cast(Job, Job.from_dict(manifest)), name)
            if command.needs_secret:
                secret = credential_secret(
                    name=name,
                    namespace=self.namespace,
                    target_key=key,
                    owner_job=job.to_dict(),
                    command=command,
                )
                secret_attempted = True
                await self._create(cast(Secret, Secret.from_dict(secret)), name)
                self._count_secret(name, +1)
                await self._resume(name)
            async with asyncio.timeout(deadline):
                started = await self._wait_for_start(name)
                if isinstance(started, ScanFailure):
                    return ScanFailure(kind=started.kind, message=redact(started.message, scrub))
                pod = started
                if not started_or_done(pod):
                    return ScanFailure(
                        kind=FailureKind.SCANNER_ERROR,
                        message=f"scanner pod {self.namespace}/{_name_of(pod)} did not start: "
                        + redact(stuck(pod) or pod_summary(pod), scrub),
                    )
                if secret_attempted:
                    secret_attempted = not await self._delete_secret(name)
                pod = await self._tracker.wait_for(name, done)
            pod_name = _name_of(pod)
            log_text = await retrying(
                lambda: self._read_log(pod_name), what=f"read log of {self.namespace}/{pod_name}"
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
                message=f"scanner job {self.namespace}/{name} did not finish within {deadline}s",
            )
        except ScannerPodGoneError as error:
            return ScanFailure(kind=FailureKind.SCANNER_ERROR, message=redact(str(error), scrub))
        except ApiError as error:
            if error.status.code == 404:  # removed under the scan, as the watch would have told
                message = str(ScannerPodGoneError(self.namespace, name, "gone"))
                return ScanFailure(kind=FailureKind.SCANNER_ERROR, message=message)
            return ScanFailure(
                kind=FailureKind.SCANNER_ERROR,
                message=f"Kubernetes API refused the scanner job {self.namespace}/{name}: "
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
            # A Job without a pod is never kept: its controller would go on trying.
            keep = failed and self._tracker.latest(name) is not None
            cleanup = asyncio.create_task(self._cleanup(name, secret_attempted, keep_pod=keep))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)

    async def _resume(self, name: str) -> None:
        """Let the Job controller create the pod of Job ``name`` (its Secret exists now)."""
        await retrying(
            lambda: self._client.patch(
                Job,
                name,
                {"spec": {"suspend": False}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            ),
            what=f"resume job {self.namespace}/{name}",
        )

    async def _wait_for_start(self, name: str) -> Pod | ScanFailure:
        """The pod of Job ``name`` once it has started, ended or got stuck.

        A failure when the Job controller could not create the pod (its FailedCreate
        events say why, e.g. a missing service account or an exhausted quota) at two checks
        in a row, as it retries; or when none came within ``start_timeout_seconds``. The
        pod as it is when it came but did not start in time.
        """
        problem_before: str | None = None
        try:
            async with asyncio.timeout(self._config.start_timeout_seconds):
                while True:
                    try:
                        async with asyncio.timeout(JOB_CHECK_SECONDS):
                            return await self._tracker.wait_for(name, started_done_or_stuck)
                    except TimeoutError:
                        if self._tracker.latest(name) is not None:
                            continue  # it has a pod: wait_for follows it
                        await self._tracker.refresh(name)  # the watch may have missed it
                        if self._tracker.latest(name) is not None:
                            continue
                        problem = None
                        with contextlib.suppress(ApiError, httpx2.HTTPError):
                            problem = await self._job_problem(name)
                        if problem and problem_before:
                            return self._no_pod(name, problem)
                        problem_before = problem
        except TimeoutError:
            pass
        await self._tracker.refresh(name)
        if (pod := self._tracker.latest(name)) is not None:
            return pod
        try:
            problem = await self._job_problem(name) or "no event says why"
        except (ApiError, httpx2.HTTPError) as error:
            problem = f"its events could not be read: {describe(error)}"
        waited = self._config.start_timeout_seconds
        return self._no_pod(name, f"none within {waited}s; {problem}")

    def _no_pod(self, name: str, problem: str) -> ScanFailure:
        message = f"scanner job {self.namespace}/{name} created no pod: {problem}"
        return ScanFailure(kind=FailureKind.SCANNER_ERROR, message=message)

    async def _job_problem(self, name: str) -> str | None:
        """Why Job ``name`` could not create its pod: ``FailedCreate: <the API's words>``."""

        async def failed_creates() -> list[Event]:
            fields: dict[str, Any] = {"involvedObject.kind": "Job", "involvedObject.name": name}
            events = self._client.list(Event, namespace=self.namespace, fields=fields)
            return [event async for event in events if event.reason == "FailedCreate"]

        found = await retrying(failed_creates, what=f"list events of job {self.namespace}/{name}")
        if not found:
            return None
        newest = max(found, key=_event_time)
        return f"{newest.reason}: {newest.message}"

    async def _create(self, obj: _Created, name: str) -> _Created:
        """Create ``obj``; a retry that meets 409 finds the object its lost answer made.

        Names end in random characters, so an object of that name is this scan's own. It is
        found through the grants the agent has anyway: a Job by listing it by name (the
        cluster-wide list of Jobs), a Secret not at all (Secrets are never read back).
        """
        kind = type(obj).__name__

        async def attempt() -> _Created:
            try:
                return await self._client.create(obj)
            except ApiError as error:
                if error.status.code != 409:
                    raise
                if isinstance(obj, Secret):
                    return obj
                listed = self._client.list(
                    Job, namespace=self.namespace, fields={"metadata.name": name}
                )
                found = [job async for job in listed]
                if not found:
                    raise
                return found[0]

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
        # Should this fail, the next sweep tries again (and the Secret goes with the Job).
        await self._delete_job(name)

    async def _delete_job(self, name: str) -> bool:
        """True once the scanner Job is gone (deleted now, or already); else a warning.

        Its pod goes with it: the API's default for Jobs would orphan the pod.
        """
        try:
            await retrying(
                lambda: self._client.delete(
                    Job, name, namespace=self.namespace, cascade=CascadeType.BACKGROUND
                ),
                what=f"delete job {self.namespace}/{name}",
            )
        except ApiError as error:
            if error.status.code != 404:
                log.warning("could not delete scanner job %s/%s: %s",
                            self.namespace, name, error.status.message)  # fmt: skip
                return False
        except httpx2.HTTPError as error:
            log.warning("could not delete scanner job %s/%s: %s",
                        self.namespace, name, describe(error))  # fmt: skip
            return False
        return True

    async def sweep(self) -> int:
        """Delete the scanner Jobs (with their pods) and Secrets a crashed agent left behind.

        Each Secret has its Job's name and is owned by it, so listing managed Jobs finds
        them all without ever listing Secrets; one whose Job is already gone is removed by
        Kubernetes' garbage collector.
        """

        async def managed_jobs() -> list[str]:
            jobs = self._client.list(Job, namespace=self.namespace, labels=SCANNER_SELECTOR)
            return [_name_of(job) async for job in jobs]

        names = await retrying(managed_jobs, what=f"list scanner jobs in {self.namespace}")
        removed = 0
        for name in names:
            # Should the Secret stay, the garbage collector removes it with its Job.
            await self._delete_secret(name)
            removed += await self._delete_job(name)
        return removed


def _name_of(obj: Pod | Job) -> str:
    assert obj.metadata is not None and obj.metadata.name is not None
    return obj.metadata.name


def _event_time(event: Event) -> str:
    stamp = event.lastTimestamp or event.eventTime or event.firstTimestamp
    return stamp.isoformat() if stamp is not None else ""
