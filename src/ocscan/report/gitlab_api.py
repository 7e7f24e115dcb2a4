"""Deliver a cycle's findings to a self-managed GitLab through the agent API.

One PUT per GitLab vulnerability collects the finding uuids; then ``POST /scan_result``
resolves every open finding of the agent that this cycle did not report. Resolution only
happens after a cycle in which every targeted namespace was fully scanned and every upload
succeeded, and it also happens when there are no findings at all, so a cluster that became
clean gets its old findings resolved (both are defects of GitLab's own agent).

Every request carries the agent token and a freshly signed ``Gitlab-Kas-Api-Request`` JWT.
Neither ever appears in a log line, an exception message or a result.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import random
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, SecretBytes, SecretStr

from ocscan.errors import OcscanError
from ocscan.report.gitlab_report import identifier, shorten
from ocscan.report.model import CycleReport
from ocscan.report.records import VulnerabilityRecord, records
from ocscan.scan.report import Severity

API_PATH = "/api/v4/internal/kubernetes/modules/starboard_vulnerability"
KAS_HEADER = "Gitlab-Kas-Api-Request"
JWT_ISSUER = "gitlab-kas"
JWT_AUDIENCE = "gitlab"
JWT_LIFETIME_SECONDS = 30
JWT_NOT_BEFORE_SKEW_SECONDS = 5

SEVERITIES: dict[Severity, str] = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "high",
    Severity.MEDIUM: "medium",
    Severity.LOW: "low",
    Severity.UNKNOWN: "unknown",
}
# GitLab keeps a vulnerability title to 255 characters and a description to 15,000.
_NAME_MAX = 255
_DESCRIPTION_MAX = 15_000
# Answers that mean the agent's configuration is wrong: every further call would fail alike.
_FATAL_STATUSES = frozenset({401, 403, 404})
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDACTED = "**********"

logger = logging.getLogger(__name__)


class GitLabConfigError(OcscanError):
    """The agent token or the KAS shared secret cannot be read from its file."""


class GitLabApiError(OcscanError):
    """A call to the GitLab agent API failed; the message is GitLab's own where it sent one.

    ``status_code`` is None when no answer arrived (timeout, connection error).
    """

    def __init__(
        self, method: str, path: str, status_code: int | None, reason: str, *, attempts: int = 1
    ) -> None:
        self.method = method
        self.path = path
        self.status_code = status_code
        self.reason = reason
        self.attempts = attempts
        answer = f"HTTP {status_code}" if status_code is not None else "no answer"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        hint = ""
        if status_code == 401:
            hint = " (check the agent token and the KAS shared secret)"
        super().__init__(f"GitLab {method} {path}: {answer}{tries}: {reason}{hint}")

    @property
    def fatal(self) -> bool:
        """The agent's configuration is refused: further calls would fail the same way."""
        return self.status_code in _FATAL_STATUSES

    @property
    def retryable(self) -> bool:
        return self.status_code is None or self.status_code in _RETRYABLE_STATUSES


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    The delay before retry ``n`` (from 0) is uniform in ``[0, min(max_delay, base_delay *
    2**n)]``, and never shorter than a ``Retry-After`` GitLab sent; a ``Retry-After`` longer
    than ``max_retry_after`` ends the retries.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")

    def backoff(self, retry: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2**retry)
        return _jitter.uniform(0, ceiling)


_jitter = random.Random()  # noqa: S311  # spreads retries; no security role


class UploadFailure(BaseModel):
    """A finding GitLab did not accept, and GitLab's reason."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    workload_kind: str
    workload_name: str
    container: str
    package_name: str
    vulnerability_id: str
    message: str

    @property
    def label(self) -> str:
        return (
            f"{self.vulnerability_id} in {self.package_name} of {self.namespace}/"
            f"{self.workload_kind}/{self.workload_name} container {self.container}: {self.message}"
        )


class DeliveryResult(BaseModel):
    """What one delivery did. ``resolution`` says whether old findings were resolved."""

    findings: int
    """Findings sent to GitLab (records merged by GitLab's own identity)."""
    uuids: list[str]
    """GitLab's uuids of the accepted findings, unique, in upload order."""
    uploaded: int
    failures: list[UploadFailure]
    not_attempted: int
    """Uploads left out after GitLab stopped answering."""
    incomplete_namespaces: list[str]
    resolution: Literal["resolved", "skipped", "failed"]
    reason: str | None = None
    """Why resolution was skipped or failed."""

    @property
    def ok(self) -> bool:
        return self.resolution == "resolved"


def read_agent_token(path: Path) -> SecretStr:
    """The agent token stored in ``path`` (surrounding whitespace ignored)."""
    text = _read_text(path, "agent token")
    if not text:
        raise GitLabConfigError(f"agent token file {path} is empty")
    return SecretStr(text)


def read_kas_secret(path: Path) -> bytes:
    """The KAS shared secret in ``path``, decoded from base64 as GitLab stores it."""
    text = _read_text(path, "KAS shared secret")
    if not text:
        raise GitLabConfigError(f"KAS shared secret file {path} is empty")
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # The content is a secret: say what is wrong, never quote it.
        raise GitLabConfigError(
            f"KAS shared secret file {path} is not valid base64 "
            "(expected the content of GitLab's gitlab_kas.secret_file)"
        ) from None
    return secret


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise GitLabConfigError(f"cannot read the {what} file {path}: {reason}") from None


def kas_jwt(secret: bytes, *, now: float | None = None) -> str:
    """A ``Gitlab-Kas-Api-Request`` token: HS256, valid from 5 s ago for 30 s."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": issued,
        "nbf": issued - JWT_NOT_BEFORE_SKEW_SECONDS,
        "exp": issued + JWT_LIFETIME_SECONDS,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class _AgentAuth(httpx.Auth):
    """Both headers, with a JWT minted for each request (retries included)."""

    def __init__(self, token: SecretStr, secret: SecretBytes) -> None:
        self._token = token
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        request.headers[KAS_HEADER] = kas_jwt(self._secret.get_secret_value())
        yield request


def vulnerability_payload(
    record: VulnerabilityRecord, agent_id: str, *, scanner_version: str | None = None
) -> dict[str, Any]:
    """The PUT body for one finding."""
    name = shorten(f"{record.vulnerability_id} in {record.package_name}", _NAME_MAX)
    dependency: dict[str, Any] = {"package": {"name": record.package_name}}
    if record.installed_version:
        dependency["version"] = record.installed_version
    location: dict[str, Any] = {
        "image": record.image,
        "dependency": dependency,
        "kubernetes_resource": {
            "namespace": record.namespace,
            "name": record.workload_name,
            "kind": record.workload_kind,
            "container_name": record.container,
            "agent_id": agent_id,
        },
    }
    if record.os is not None:
        location["operating_system"] = f"{record.os.family} {record.os.name}".strip()
    vulnerability: dict[str, Any] = {
        "name": name,
        "severity": SEVERITIES[record.severity],
        "confidence": "unknown",  # Trivy states none
        "message": shorten(record.title, _NAME_MAX) if record.title else name,
        "identifiers": [identifier(record.vulnerability_id, record.primary_url)],
        "location": location,
    }
    description = record.description or record.title
    if description:
        vulnerability["description"] = shorten(description, _DESCRIPTION_MAX)
    if record.fixed_version:
        vulnerability["solution"] = f"Upgrade {record.package_name} to {record.fixed_version}"
    links = list(dict.fromkeys(u for u in (record.primary_url, *record.references) if u))
    if links:
        vulnerability["links"] = [{"url": url} for url in links]
    scanner: dict[str, Any] = {"id": "trivy", "name": "Trivy", "vendor": {"name": "Aqua Security"}}
    if scanner_version:
        scanner["version"] = scanner_version
    return {"vulnerability": vulnerability, "scanner": scanner}


def gitlab_findings(report: CycleReport) -> list[VulnerabilityRecord]:
    """The report's records, one per finding as GitLab identifies it.

    GitLab's identity leaves out the container, so one package's vulnerability in two
    containers of a workload is one GitLab finding: the most severe record stands for it
    (then the first container by name), and the duplicate PUT that would race it is saved.
    """
    kept: dict[tuple[str, str, str, str, str], VulnerabilityRecord] = {}
    for record in records(report):
        key = (
            record.namespace,
            record.workload_kind,
            record.workload_name,
            record.package_name,
            record.vulnerability_id,
        )
        current = kept.get(key)
        if current is None or (record.severity.rank, record.container) < (
            current.severity.rank,
            current.container,
        ):
            kept[key] = record
    return list(kept.values())


class GitLabAgentSink:
    """The GitLab agent API of one agent. Use as an async context manager, or ``aclose()``.

    ``kas_secret`` is the shared secret already decoded from base64 (:func:`read_kas_secret`).
    A ``client`` passed in (custom CA, proxy) stays open; one made here is closed by
    :meth:`aclose`. PUTs run ``concurrency`` at a time.
    """

    def __init__(
        self,
        gitlab_url: str,
        agent_id: str,
        agent_token: SecretStr,
        kas_secret: bytes,
        *,
        client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        scanner_version: str | None = None,
    ) -> None:
        if not agent_id:
            raise GitLabConfigError("the GitLab agent id is empty")
        if not kas_secret:
            raise GitLabConfigError("the KAS shared secret is empty")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._base = gitlab_url.rstrip("/") + API_PATH
        self._agent_id = agent_id
        self._token = agent_token
        self._auth = _AgentAuth(agent_token, SecretBytes(kas_secret))
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        self._retry = retry or RetryPolicy()
        self._concurrency = concurrency
        self._scanner_version = scanner_version

    @classmethod
    def from_files(
        cls,
        gitlab_url: str,
        agent_id: str,
        *,
        token_file: Path,
        kas_secret_file: Path,
        client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        scanner_version: str | None = None,
    ) -> GitLabAgentSink:
        """A sink whose token and KAS secret are read from their files."""
        return cls(
            gitlab_url,
            agent_id,
            read_agent_token(token_file),
            read_kas_secret(kas_secret_file),
            client=client,
            retry=retry,
            concurrency=concurrency,
            scanner_version=scanner_version,
        )

    def __repr__(self) -> str:
        return f"GitLabAgentSink({self._base!r}, agent_id={self._agent_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def deliver(self, report: CycleReport) -> DeliveryResult:
        """Upload every finding of ``report``, then resolve the rest when the cycle allows it.

        Raises :class:`GitLabApiError` when GitLab refuses the agent itself (401, 403, 404).
        """
        findings = gitlab_findings(report)
        incomplete = sorted(ns for ns, scanned in report.cycle.namespaces.items() if not scanned)
        uuids, failures, not_attempted = await self._upload(findings)
        unique = list(dict.fromkeys(uuids))
        result = DeliveryResult(
            findings=len(findings),
            uuids=unique,
            uploaded=len(uuids),
            failures=failures,
            not_attempted=not_attempted,
            incomplete_namespaces=incomplete,
            resolution="skipped",
        )
        reasons = []
        if incomplete:
            reasons.append(f"namespaces not fully scanned: {', '.join(incomplete)}")
        if failures or not_attempted:
            reasons.append(f"{len(findings) - len(uuids)} of {len(findings)} uploads failed")
        if reasons:
            result.reason = "; ".join(reasons)
            logger.warning("GitLab: old findings left open this cycle: %s", result.reason)
            return result
        try:
            await self.resolve(unique)
        except GitLabApiError as exc:
            if exc.fatal:
                raise
            result.resolution, result.reason = "failed", str(exc)
            logger.warning("GitLab: resolving old findings failed: %s", exc)
            return result
        result.resolution = "resolved"
        logger.info(
            "GitLab: %d findings uploaded, every other open finding of agent %s resolved",
            len(unique),
            self._agent_id,
        )
        return result

    async def put_vulnerability(self, record: VulnerabilityRecord) -> str:
        """Create or update one finding; GitLab's uuid for it."""
        body = vulnerability_payload(record, self._agent_id, scanner_version=self._scanner_version)
        response = await self._call("PUT", "/", body)
        try:
            uuid = response.json()["uuid"]
        except (ValueError, KeyError, TypeError):
            uuid = None
        if not isinstance(uuid, str) or not uuid:
            raise GitLabApiError(
                "PUT", response.url.path, response.status_code, "the answer carries no uuid"
            )
        return uuid

    async def resolve(self, uuids: Sequence[str]) -> None:
        """Resolve every open finding of this agent whose uuid is not in ``uuids``."""
        await self._call("POST", "/scan_result", {"uuids": list(uuids)})

    async def policies_configuration(self) -> list[dict[str, Any]] | None:
        """The project's operational scan policies; None when GitLab has no licence for them."""
        try:
            response = await self._call("GET", "/policies_configuration")
        except GitLabApiError as exc:
            if exc.status_code == 402:
                return None
            raise
        try:
            configurations = response.json()["configurations"]
        except (ValueError, KeyError, TypeError):
            configurations = None
        if not isinstance(configurations, list):
            raise GitLabApiError(
                "GET", response.url.path, response.status_code, "the answer has no configurations"
            )
        return configurations

    async def _upload(
        self, findings: Sequence[VulnerabilityRecord]
    ) -> tuple[list[str], list[UploadFailure], int]:
        uuids: dict[int, str] = {}
        failures: list[UploadFailure] = []
        pending: Iterator[tuple[int, VulnerabilityRecord]] = iter(enumerate(findings))
        stop: list[GitLabApiError] = []  # the error that ends all uploads

        async def worker() -> None:
            for index, record in pending:
                if stop:
                    return
                try:
                    uuids[index] = await self.put_vulnerability(record)
                except GitLabApiError as exc:
                    if exc.fatal or exc.retryable:
                        stop.append(exc)
                    failure = _failure(record, exc)
                    failures.append(failure)
                    if not exc.fatal:
                        logger.warning("GitLab did not accept %s", failure.label)

        workers = min(self._concurrency, len(findings))
        await asyncio.gather(*(worker() for _ in range(workers)))
        fatal = [exc for exc in stop if exc.fatal]
        if fatal:
            raise fatal[0]
        if stop:
            logger.warning("GitLab: uploads stopped: %s", stop[0])
        not_attempted = len(findings) - len(uuids) - len(failures)
        return [uuids[i] for i in sorted(uuids)], failures, not_attempted

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        url = self._base + ("" if path == "/" else path)
        policy = self._retry
        for attempt in range(1, policy.attempts + 1):
            retry_after: float | None = None
            try:
                response = await self._client.request(method, url, json=body, auth=self._auth)
            except httpx.TransportError as exc:
                error = GitLabApiError(
                    method, httpx.URL(url).path, None, self._scrub(_describe(exc)), attempts=attempt
                )
            else:
                if response.is_success:
                    return response
                error = GitLabApiError(
                    method,
                    response.url.path,
                    response.status_code,
                    self._scrub(_gitlab_message(response)),
                    attempts=attempt,
                )
                retry_after = _retry_after(response)
            if not error.retryable or attempt == policy.attempts:
                raise error
            delay = policy.backoff(attempt - 1)
            if retry_after is not None:
                if retry_after > policy.max_retry_after:
                    raise GitLabApiError(
                        error.method,
                        error.path,
                        error.status_code,
                        f"{error.reason} (GitLab asked to retry after {retry_after:g} s)",
                        attempts=attempt,
                    )
                delay = max(delay, retry_after)
            logger.info(
                "%s; retrying in %.2f s (attempt %d of %d)",
                error,
                delay,
                attempt + 1,
                policy.attempts,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _scrub(self, text: str) -> str:
        # GitLab does not echo credentials; this guards against a proxy that would.
        token = self._token.get_secret_value()
        return text.replace(token, _REDACTED) if token else text


def _failure(record: VulnerabilityRecord, exc: GitLabApiError) -> UploadFailure:
    return UploadFailure(
        namespace=record.namespace,
        workload_kind=record.workload_kind,
        workload_name=record.workload_name,
        container=record.container,
        package_name=record.package_name,
        vulnerability_id=record.vulnerability_id,
        message=str(exc),
    )


def _describe(exc: httpx.TransportError) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    detail = str(exc)
    return f"{kind}: {detail}" if detail else f"{kind} ({type(exc).__name__})"


def _gitlab_message(response: httpx.Response) -> str:
    """GitLab's reason: ``message`` (API errors) or ``error`` (parameter validation)."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    if isinstance(data, dict):
        for key in ("message", "error"):
            if key in data:
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return json.dumps(data, sort_keys=True)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), when GitLab sent one."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
