"""Why a scan failed: a small set of kinds, classified from Trivy's exit status and output.

Trivy reports registry errors in the registry's own words (``MANIFEST_UNKNOWN: manifest
unknown``), often several of them for one scan: with explicit credentials it retries
anonymously, and for ``127.0.0.1``/``localhost`` it tries HTTPS and HTTP. The classification
picks the most specific error, not the last one, and keeps its words as the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ocscan.errors import OcscanError

MESSAGE_LIMIT = 400
"""Longest message kept; Trivy's error chains can run to kilobytes."""

REDACTED = "***"


class FailureKind(StrEnum):
    """Why an image could not be scanned. The values are part of every output format."""

    AUTH = "auth"
    NOT_FOUND = "not_found"
    UNREACHABLE = "unreachable"
    TLS = "tls"
    TIMEOUT = "timeout"
    SCANNER_ERROR = "scanner_error"
    OOM = "oom"
    REPORT_TOO_LARGE = "report_too_large"
    SECRET_MISSING = "secret_missing"
    SECRET_INVALID = "secret_invalid"


class ScanFailure(BaseModel):
    """The kind of a failed scan and a short message, never carrying a credential."""

    model_config = ConfigDict(frozen=True)

    kind: FailureKind
    message: str


class ScanFailed(OcscanError):
    """A scan of ``image`` did not produce a report."""

    def __init__(self, image: str, failure: ScanFailure) -> None:
        self.image = image
        self.failure = failure
        super().__init__(f"scan of {image} failed ({failure.kind}): {failure.message}")


# The most specific kind wins: a deadline explains every error after it; a TLS failure
# explains the plain-HTTP fallback's 400; "manifest unknown" from the credentialed try
# explains the anonymous retry's 401.
_PRIORITY = (
    FailureKind.TIMEOUT,
    FailureKind.TLS,
    FailureKind.NOT_FOUND,
    FailureKind.AUTH,
    FailureKind.UNREACHABLE,
)

_PATTERNS: dict[FailureKind, re.Pattern[str]] = {
    FailureKind.TIMEOUT: re.compile(
        r"context deadline exceeded|Provide a higher timeout value", re.IGNORECASE
    ),
    FailureKind.TLS: re.compile(
        r"x509:|tls: |certificate|server gave HTTP response to HTTPS client"
        r"|Client sent an HTTP request to an HTTPS server",
        re.IGNORECASE,
    ),
    FailureKind.NOT_FOUND: re.compile(
        r"MANIFEST_UNKNOWN|NAME_UNKNOWN|BLOB_UNKNOWN|status code 404|no child with platform"
    ),
    FailureKind.AUTH: re.compile(
        r"UNAUTHORIZED|DENIED|status code 401|status code 403|authentication required"
    ),
    FailureKind.UNREACHABLE: re.compile(
        r"connection refused|no such host|i/o timeout|network is unreachable|no route to host"
        r"|connection reset by peer|server misbehaving|status code 50[234]",
        re.IGNORECASE,
    ),
}

_TIMEOUT_CAUSE = re.compile(r"deadline exceeded|i/o timeout", re.IGNORECASE)
# Errors from Trivy's own server (Twirp RPC) are scanner errors, whatever their wording: a
# refused connection to the Trivy server says nothing about the registry.
_SCANNER_RPC = re.compile(r"twirp error", re.IGNORECASE)
_LOG_LINE = re.compile(r"^\S+\s+(?P<level>FATAL|ERROR|WARN)\s+(?P<text>.*)$")
_BULLET = re.compile(r"^\s*\*\s+(?P<text>.+)$")
# Trivy joins the HTTPS and HTTP attempts of one request with "; ".
_NEXT_REQUEST = re.compile(r";\s+(?=(?:GET|Get|HEAD|Head|POST|Post)\s)")
_WRAPPERS = re.compile(
    r"^(?:Fatal error\s+|run error: |image scan error: |scan error: |remote error: )+"
)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``.

    Also replaces each secret with its whitespace collapsed, and repeats until no secret is
    left, since a replacement can complete another occurrence (``a*`` in ``aa**``). A
    secret made only of ``*`` is indistinguishable from the mask and left alone.
    """
    forms = {form for s in secrets for form in (s, " ".join(s.split())) if form.strip("*")}
    ordered = sorted(forms, key=len, reverse=True)
    # Ends: each pass turns at least one character other than "*" into "***".
    while any(form in text for form in ordered):
        for form in ordered:
            text = text.replace(form, REDACTED)
    return text


def classify_failure(
    exit_code: int | None, output: str, *, secrets: Iterable[str] = ()
) -> ScanFailure:
    """Classify a failed Trivy run from its exit status and its log output (stderr).

    ``secrets`` (password, username, tokens) are scrubbed from the message, whatever Trivy
    printed.
    """
    reported = _reported_errors(output)
    for kind in _PRIORITY:
        if any(_matches(kind, error) for error in reported):
            return _failure(kind, _message(kind, reported), secrets)
    errors = [e.text for e in reported if e.level != "WARN"]
    if errors:
        text = next((e.text for e in reported if e.level == "FATAL"), errors[-1])
    elif exit_code is not None and exit_code < 0:
        text = f"trivy was killed by signal {-exit_code}"
    elif not reported and (last_line := _last_line(output)):
        # Not Trivy's own log format (e.g. the shell could not start it): its last words.
        text = f"exit status {exit_code}: {last_line}"
    else:
        text = f"trivy exited with status {exit_code} and reported no error"
    return _failure(FailureKind.SCANNER_ERROR, text, secrets)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class _Reported:
    level: str
    text: str


def _reported_errors(output: str) -> list[_Reported]:
    """Each error Trivy logged, in order; a multi-error line is followed by its items."""
    reported: list[_Reported] = []
    level = "FATAL"
    for line in output.splitlines():
        if log := _LOG_LINE.match(line):
            level = log["level"]
            reported.append(_Reported(level, _WRAPPERS.sub("", log["text"].strip())))
        elif item := _BULLET.match(line):
            text = _WRAPPERS.sub("", item["text"].strip())
            reported.extend(_Reported(level, part) for part in _NEXT_REQUEST.split(text))
    return reported


def _matches(kind: FailureKind, error: _Reported) -> bool:
    if kind is FailureKind.TIMEOUT:
        return _PATTERNS[kind].search(error.text) is not None
    if error.level == "WARN" or _SCANNER_RPC.search(error.text):
        return False
    return _PATTERNS[kind].search(error.text) is not None


def _message(kind: FailureKind, reported: list[_Reported]) -> str:
    """The words of the first error of ``kind``; for a timeout, the error the deadline caused."""
    if kind is FailureKind.TIMEOUT:
        causes = [e for e in reported if e.level != "WARN" and _TIMEOUT_CAUSE.search(e.text)]
        fatal = [e for e in reported if e.level == "FATAL"]
        cause = (causes or fatal or reported)[0].text
        return f"the scan did not finish within its time limit: {cause}"
    return next(e.text for e in reported if _matches(kind, e))


def _failure(kind: FailureKind, text: str, secrets: Iterable[str]) -> ScanFailure:
    secrets = tuple(secrets)
    text = redact(" ".join(text.split()), secrets)
    if len(text) > MESSAGE_LIMIT:
        text = redact(text[: MESSAGE_LIMIT - 1] + "…", secrets)
    return ScanFailure(kind=kind, message=text)
