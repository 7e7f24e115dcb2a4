"""The scanner's report frame survives the log, and every corruption is caught."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocscan.scan.transport import (
    REPORT_TOO_LARGE_EXIT,
    SCANNER_SCRIPT,
    TransportError,
    frame_report,
    unframe_report,
)


@given(st.binary(max_size=5000), st.text(max_size=200).filter(lambda t: "ocscan-report" not in t))
def test_round_trip_with_noise_around(report: bytes, noise: str) -> None:
    log = f"{noise}\n{frame_report(report)}trailing words\n"
    assert unframe_report(log) == report


def test_missing_frame_is_a_scanner_error() -> None:
    with pytest.raises(TransportError) as caught:
        unframe_report("FATAL something went wrong\n")
    assert caught.value.kind == "scanner_error"


def test_truncated_frame() -> None:
    framed = frame_report(os.urandom(10_000))  # incompressible: a long body
    with pytest.raises(TransportError, match="truncated"):
        unframe_report(framed[: len(framed) // 2])


def test_checksum_mismatch() -> None:
    framed = re.sub(r"sha256=[0-9a-f]{64}", "sha256=" + "0" * 64, frame_report(b"{}"))
    with pytest.raises(TransportError, match="integrity"):
        unframe_report(framed)


def test_announced_size_above_cap_is_report_too_large() -> None:
    with pytest.raises(TransportError) as caught:
        unframe_report(frame_report(b"y" * 2048), cap=1024)
    assert caught.value.kind == "report_too_large"


def test_lying_size_cannot_inflate_past_the_announcement() -> None:
    # A frame that announces 10 bytes but carries 1 MB (a decompression bomb) is rejected.
    framed = frame_report(b"z" * 1_000_000).replace("bytes=1000000", "bytes=10")
    with pytest.raises(TransportError, match="integrity"):
        unframe_report(framed)


def _run_script(tmp_path: Path, cap: int, payload: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake-trivy"
    fake.write_text(f'#!/bin/sh\nprintf %s \'{payload}\' > "$TRIVY_OUTPUT"\necho "INFO done" >&2\n')
    fake.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "OCSCAN_SCRATCH": str(tmp_path),
        "OCSCAN_REPORT_CAP": str(cap),
    }
    sh = shutil.which("sh") or "/bin/sh"
    return subprocess.run(
        [sh, "-c", SCANNER_SCRIPT, "ocscan-scanner", str(fake), "image", "--", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_script_frames_what_trivy_wrote(tmp_path: Path) -> None:
    done = _run_script(tmp_path, 10_000, '{"Results": []}')
    assert done.returncode == 0, done.stderr
    assert unframe_report(done.stdout) == b'{"Results": []}'


def test_script_refuses_a_report_above_the_cap(tmp_path: Path) -> None:
    done = _run_script(tmp_path, 5, '{"Results": []}')
    assert done.returncode == REPORT_TOO_LARGE_EXIT
    assert "report_too_large" in done.stderr
    assert "ocscan-report-begin" not in done.stdout


def test_script_refuses_a_frame_that_log_rotation_would_cut(tmp_path: Path) -> None:
    # Incompressible: 12 MB of random bytes frame to about 16 MB of base64.
    fake = tmp_path / "fake-trivy"
    fake.write_text('#!/bin/sh\nhead -c 12000000 /dev/urandom > "$TRIVY_OUTPUT"\n')
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "OCSCAN_SCRATCH": str(tmp_path),
           "OCSCAN_REPORT_CAP": str(64 * 1024 * 1024)}  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", SCANNER_SCRIPT, "ocscan-scanner", str(fake)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == REPORT_TOO_LARGE_EXIT
    assert "log rotation" in done.stderr
    assert "ocscan-report-begin" not in done.stdout
