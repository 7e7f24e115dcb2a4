"""A finished scanner pod and its log become a result or a failure with the right kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightkube.resources.core_v1 import Pod

from ocscan.scan.failure import FailureKind, ScanFailure
from ocscan.scan.podstate import interpret, started_done_or_stuck, stuck
from ocscan.scan.report import ScanResult
from ocscan.scan.transport import frame_report

STDERR = Path(__file__).parent / "trivy_stderr"  # recorded from the real Trivy
IMAGE = "registry.example/app@sha256:" + "a" * 64
CANARY = "canary-Pa55word-9c1d"
REPORT = {"SchemaVersion": 2, "ArtifactName": IMAGE, "ArtifactType": "container_image"}


def pod(*, phase: str, state: dict[str, Any], **status: Any) -> Pod:
    statuses = [{"name": "scanner", "image": "trivy", "imageID": "", "ready": False,
                 "restartCount": 0, "state": state}]  # fmt: skip
    document = {"metadata": {"name": "ocscan-scan-x-1"},
                "status": {"phase": phase, "containerStatuses": statuses, **status}}  # fmt: skip
    return Pod.from_dict(document)


def ended(code: int, reason: str = "Error") -> Pod:
    return pod(phase="Succeeded" if code == 0 else "Failed",
               state={"terminated": {"exitCode": code, "reason": reason}})  # fmt: skip


def test_a_framed_report_is_the_result() -> None:
    log = "INFO scanning\n" + frame_report(json.dumps(REPORT).encode())
    answer = interpret(ended(0, "Completed"), log, image=IMAGE, report_cap=1 << 20)
    assert isinstance(answer, ScanResult) and answer.image.reference == IMAGE


def test_success_without_a_frame_is_a_scanner_error() -> None:
    answer = interpret(ended(0, "Completed"), "INFO done\n", image=IMAGE, report_cap=1 << 20)
    assert answer == ScanFailure(
        kind=FailureKind.SCANNER_ERROR, message="the scanner log holds no report frame"
    )


def test_the_deadline_is_a_timeout_and_oom_is_oom() -> None:
    killed = {"terminated": {"exitCode": 137, "reason": "Error"}}
    message = f"Pod was active too long {CANARY}"
    deadline = pod(phase="Failed", state=killed, reason="DeadlineExceeded", message=message)
    timed_out = interpret(deadline, "", image=IMAGE, report_cap=1, secrets=[CANARY])
    assert isinstance(timed_out, ScanFailure) and timed_out.kind is FailureKind.TIMEOUT
    assert CANARY not in timed_out.message and "exceeded its deadline" in timed_out.message
    oom = interpret(ended(137, "OOMKilled"), "", image=IMAGE, report_cap=1)
    assert isinstance(oom, ScanFailure) and oom.kind is FailureKind.OOM


def test_report_too_large_keeps_the_scanners_words() -> None:
    log = "INFO x\nreport_too_large: Trivy wrote 9 bytes, above the cap of 5\n"
    answer = interpret(ended(65), log, image=IMAGE, report_cap=5)
    assert answer == ScanFailure(
        kind=FailureKind.REPORT_TOO_LARGE,
        message="report_too_large: Trivy wrote 9 bytes, above the cap of 5",
    )


def test_a_trivy_error_is_classified_and_scrubbed() -> None:
    recorded = STDERR / "not_found_tag_with_credentials.txt"
    log = recorded.read_text().replace("9.9", f"9.9-{CANARY}")  # as if Trivy echoed it
    answer = interpret(ended(1), log, image=IMAGE, report_cap=1, secrets=[CANARY])
    assert isinstance(answer, ScanFailure) and answer.kind is FailureKind.NOT_FOUND
    assert CANARY not in answer.message


def test_an_image_pull_error_of_the_scanner_is_stuck_at_once() -> None:
    backoff = {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}
    waiting = pod(phase="Pending", state=backoff)
    assert stuck(waiting) == "ImagePullBackOff: no such image"
    assert started_done_or_stuck(waiting)
    creating = pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating"}})
    assert stuck(creating) is None and not started_done_or_stuck(creating)
