"""What a scanner pod's state says: started, stuck, done, and what it produced. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightkube.resources.core_v1 import Pod

from ocscan.scan.failure import FailureKind, ScanFailure, classify_failure, redact
from ocscan.scan.podspec import SCANNER_CONTAINER
from ocscan.scan.report import ReportError, ScanResult, parse_report
from ocscan.scan.transport import REPORT_TOO_LARGE_EXIT, TransportError, unframe_report

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


def started_or_done(pod: Pod) -> bool:
    """Whether the scanner container has started (its env, and so its Secret, was read)."""
    status = pod.status
    if status is None:
        return False
    if status.phase in ("Succeeded", "Failed"):
        return True
    return any(
        cs.state is not None and (cs.state.running or cs.state.terminated)
        for cs in status.containerStatuses or ()
    )


def stuck(pod: Pod) -> str | None:
    """``reason: message`` when the scanner container cannot start by itself."""
    for cs in (pod.status and pod.status.containerStatuses) or ():
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason in STUCK_REASONS:
            return f"{waiting.reason}: {waiting.message or ''}".strip()
    return None


def started_done_or_stuck(pod: Pod) -> bool:
    """Whether waiting for the start is over, one way or another."""
    return started_or_done(pod) or stuck(pod) is not None


def done(pod: Pod) -> bool:
    """Whether the pod has ended."""
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
