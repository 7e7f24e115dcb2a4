"""Background processes: started with a log, always stopped by PID, also from a PID file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocscan.sandbox.errors import ProcessStartError, SandboxError
from ocscan.sandbox.processes import (
    BackgroundProcess,
    ProcessRecord,
    free_port,
    stop_pid,
)

IGNORE_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def records() -> Iterator[list[ProcessRecord]]:
    """Processes a test leaves behind on purpose: stopped by PID whatever happens."""
    started: list[ProcessRecord] = []
    yield started
    for record in started:
        stop_pid(record, timeout=1)


def wait_for_log(process: BackgroundProcess, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in process.log_text():
        process.check_running()
        assert time.monotonic() < deadline, process.log_text()
        time.sleep(0.01)


def test_server_answers_then_stop_leaves_no_process(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with BackgroundProcess.start("http", argv, log_file=tmp_path / "http.log") as process:
        process.wait_for_http(f"http://127.0.0.1:{port}/")
        record = process.record
        assert record.is_running()

    assert not process.running
    assert not record.is_running()
    assert not Path(f"/proc/{record.pid}").exists()  # reaped, not a zombie
    assert "GET / HTTP" in process.log_text()


def test_context_manager_stops_the_process_when_the_body_fails(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        BackgroundProcess.start("sleep", ["sleep", "60"], log_file=tmp_path / "log") as process,
    ):
        raise RuntimeError("test body failed")

    assert not process.record.is_running()
    assert process.returncode == -15


def test_process_that_exits_reports_its_code_and_log(tmp_path: Path) -> None:
    argv = ["sh", "-c", "echo 'listen: address already in use' >&2; exit 3"]
    process = BackgroundProcess.start("broken", argv, log_file=tmp_path / "log")

    with pytest.raises(ProcessStartError) as caught:
        process.wait_for_port(free_port(), timeout=10)

    assert "broken did not start: exited with code 3" in str(caught.value)
    assert "address already in use" in caught.value.log_tail


def test_silent_process_times_out_and_is_stopped(tmp_path: Path) -> None:
    process = BackgroundProcess.start("mute", ["sleep", "60"], log_file=tmp_path / "log")

    with pytest.raises(ProcessStartError, match="nothing listened on"):
        process.wait_for_port(free_port(), timeout=0.2)

    assert not process.record.is_running()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", IGNORE_SIGTERM]
    process = BackgroundProcess.start("stubborn", argv, log_file=tmp_path / "log")
    wait_for_log(process, "ready")

    assert process.stop(timeout=0.3) == -9
    assert not process.record.is_running()


def test_stop_pid_from_another_python_process(tmp_path: Path, records: list[ProcessRecord]) -> None:
    """What ``sandbox up`` / ``sandbox down`` do: start, detach, exit; later stop by PID file."""
    pid_file = tmp_path / "sleep.pid"
    up = (
        "import sys; from pathlib import Path\n"
        "from ocscan.sandbox.processes import BackgroundProcess\n"
        "p = BackgroundProcess.start('sleep', ['sleep', '60'], log_file=Path(sys.argv[1]),"
        " pid_file=Path(sys.argv[2]), die_with_parent=False)\n"
        "p.detach()\n"
    )
    subprocess.run([sys.executable, "-c", up, str(tmp_path / "log"), str(pid_file)], check=True)
    record = ProcessRecord.read(pid_file)
    records.append(record)
    assert record.argv == ("sleep", "60")
    assert record.is_running()  # detach kept it alive past its starter's exit

    assert stop_pid(record) is True

    assert not record.is_running()
    assert stop_pid(record) is False  # already gone: nothing is signalled


def test_stop_pid_never_signals_a_reused_pid(tmp_path: Path) -> None:
    with BackgroundProcess.start("sleep", ["sleep", "60"], log_file=tmp_path / "log") as process:
        real = process.record
        recycled = ProcessRecord(pid=real.pid, start_ticks=real.start_ticks - 1, argv=real.argv)

        assert not recycled.is_running()
        assert stop_pid(recycled) is False
        assert process.running


def test_stop_pid_kills_after_the_timeout(tmp_path: Path, records: list[ProcessRecord]) -> None:
    argv = [sys.executable, "-c", IGNORE_SIGTERM]
    process = BackgroundProcess.start("stubborn", argv, log_file=tmp_path / "log")
    wait_for_log(process, "ready")
    record = process.detach()
    records.append(record)

    assert stop_pid(record, timeout=0.3) is True

    assert process.returncode == -9  # Popen reaps the zombie of its own child


def test_unreadable_pid_file_is_a_clear_error(tmp_path: Path) -> None:
    pid_file = tmp_path / "bad.pid"
    pid_file.write_text("12 not json")

    with pytest.raises(SandboxError, match=r"unreadable PID file .*bad\.pid"):
        ProcessRecord.read(pid_file)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_process_dies_with_its_starter_even_when_that_is_killed(
    tmp_path: Path, records: list[ProcessRecord]
) -> None:
    """A SIGKILLed test run or sandbox leaves no registry or Trivy server behind."""
    pid_file = tmp_path / "sleep.pid"
    starter = (
        "import sys, time; from pathlib import Path\n"
        "from ocscan.sandbox.processes import BackgroundProcess\n"
        "BackgroundProcess.start('sleep', ['sleep', '60'], log_file=Path(sys.argv[1]),"
        " pid_file=Path(sys.argv[2]))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter, str(tmp_path / "log"), str(pid_file)])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.02)
        record = ProcessRecord.read(pid_file)
        records.append(record)
        assert record.is_running()
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while record.is_running():
        assert time.monotonic() < deadline, "the child outlived its killed starter"
        time.sleep(0.02)
