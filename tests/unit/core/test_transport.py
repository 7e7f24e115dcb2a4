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
    DEFAULT_LOG_MAX,
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
        "OCSCAN_LOG_MAX": str(DEFAULT_LOG_MAX),
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


def _script_log(
    tmp_path: Path, report_bytes: int, messages: int, log_max: int
) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """Run the script over a fake Trivy writing ``report_bytes`` of random report and
    ``messages`` lines of stderr; the run, and what its output takes in a CRI log file."""
    fake = tmp_path / "fake-trivy"
    fake.write_text(
        "#!/bin/sh\n"
        f'head -c {report_bytes} /dev/urandom > "$TRIVY_OUTPUT"\n'  # incompressible
        f'i=0; while [ $i -lt {messages} ]; do echo "INFO message $i" >&2; i=$((i+1)); done\n'
    )
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "OCSCAN_SCRATCH": str(tmp_path),
           "OCSCAN_REPORT_CAP": str(64 * 1024 * 1024), "OCSCAN_LOG_MAX": str(log_max)}  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", SCANNER_SCRIPT, "ocscan-scanner", str(fake)],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    return done, _on_disk(done.stdout) + _on_disk(done.stderr)


# The longest CRI line prefix: CRI-O's conmon writes the time with a zone offset.
CRIO_PREFIX = len("1997-03-25T13:20:42.999999999+01:00 stdout F ")


def _on_disk(text: bytes) -> int:
    return sum(len(line) + CRIO_PREFIX + 1 for line in text.splitlines())


@pytest.mark.parametrize("messages", [0, 1000])
def test_a_report_is_framed_only_when_the_whole_log_fits_one_log_file(
    tmp_path: Path, messages: int
) -> None:
    """Whatever the script frames fits (no rotation can cut it, even with CRI-O's longer line
    prefix); what it refuses would not have fitted with more than 2 % to spare; Trivy's
    messages stay in the log either way."""
    log_max = 256 * 1024
    outcomes = set()
    for report_bytes in range(40 * 1024, 200 * 1024, 6 * 1024):
        done, on_disk = _script_log(tmp_path, report_bytes, messages, log_max)
        assert done.stderr.count(b"INFO message") == messages
        if done.returncode == 0:
            assert on_disk < log_max
            unframe_report(done.stdout.decode())
        else:
            assert done.returncode == REPORT_TOO_LARGE_EXIT, done.stderr[-300:]
            assert b"containerLogMaxSize" in done.stderr
            assert b"ocscan-report-begin" not in done.stdout
            would_be = on_disk + _on_disk(frame_report(os.urandom(report_bytes)).encode())
            assert would_be > log_max * 0.98
        outcomes.add(done.returncode)
    assert outcomes == {0, REPORT_TOO_LARGE_EXIT}  # the range crosses the limit


def test_an_unrecorded_exit_status_fails_instead_of_framing_a_stale_report(
    tmp_path: Path,
) -> None:
    """A full scratch volume can leave the status file empty: never frame what lies there."""
    (tmp_path / "report.json").write_text('{"Results": []}')  # from nobody knows when
    fake = tmp_path / "fake-trivy"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    status = tmp_path / "status"
    status.mkdir()  # the script's `echo > status` fails, as on a full volume
    env = {"PATH": os.environ["PATH"], "OCSCAN_SCRATCH": str(tmp_path),
           "OCSCAN_REPORT_CAP": "100000", "OCSCAN_LOG_MAX": str(DEFAULT_LOG_MAX)}  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", SCANNER_SCRIPT, "ocscan-scanner", str(fake)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 70, done.stderr
    assert "exit status was not recorded" in done.stderr
    assert "ocscan-report-begin" not in done.stdout
