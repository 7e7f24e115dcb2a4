"""The container process runtime, on real processes (sh, python, env)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from ocscan.sandbox.kube.runtime import (
    ContainerLog,
    ContainerProcess,
    ExitStatus,
    ProcessSpec,
    StartError,
    resolve_executable,
)

PATH = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])


def run(
    argv: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    memory_limit: int | None = None,
) -> ContainerProcess:
    spec = ProcessSpec(argv, {"PATH": PATH, **(env or {})}, cwd, memory_limit)
    return ContainerProcess.start(spec)


def finish(process: ContainerProcess, timeout: float = 10) -> ExitStatus:
    try:
        status = process.wait(timeout)
    finally:
        process.kill()
    assert status is not None, "the process did not finish in time"
    return status


def test_exit_code(tmp_path: Path) -> None:
    status = finish(run(["sh", "-c", "exit 3"], tmp_path))
    assert status.exit_code == 3
    assert not status.oom_killed
    assert status.finished_at >= status.started_at


def test_log_keeps_arrival_order_and_streams(tmp_path: Path) -> None:
    process = run(
        ["sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three"], tmp_path
    )
    finish(process)
    lines = process.log.lines()
    assert [(line.stream, line.data) for line in lines] == [
        ("stdout", b"one\n"),
        ("stderr", b"two\n"),
        ("stdout", b"three\n"),
    ]
    assert process.log.closed
    assert lines[0].timestamp.endswith("Z") and len(lines[0].timestamp) == 30


def test_environment_is_only_what_the_spec_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMULATOR_CANARY", "must-not-leak")
    process = run(["env"], tmp_path, env={"GREETING": "hello world"})
    assert finish(process).exit_code == 0
    assert sorted(process.log.text().splitlines()) == sorted(
        [f"PATH={PATH}", "GREETING=hello world"]
    )


def test_working_directory(tmp_path: Path) -> None:
    process = run(["pwd"], tmp_path)
    finish(process)
    assert process.log.text() == f"{tmp_path}\n"


def test_missing_executable_is_a_start_error_in_runc_words(tmp_path: Path) -> None:
    with pytest.raises(StartError) as caught:
        run(["no-such-binary-xyz", "--flag"], tmp_path)
    assert 'exec: "no-such-binary-xyz": executable file not found in $PATH' in str(caught.value)
    with pytest.raises(StartError, match="no such file or directory"):
        resolve_executable("/nonexistent/tool", PATH)


def test_missing_working_directory_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(StartError, match="chdir to cwd"):
        run(["true"], tmp_path / "absent")


def test_memory_limit_kills_the_tree_with_oom(tmp_path: Path) -> None:
    # A child process does the allocating: the limit covers the whole tree.
    grow = "import time\nchunks = []\nwhile True:\n    chunks.append(b'x' * 4194304)\n"
    grow += "    time.sleep(0.01)\n"
    started = time.monotonic()
    process = run(["sh", "-c", f'python -c "{grow}"; echo survived'], tmp_path,
                  memory_limit=64 * 1024 * 1024)  # fmt: skip
    status = finish(process, timeout=30)
    assert status.oom_killed
    assert status.exit_code == 137
    assert status.signal == signal.SIGKILL
    assert "survived" not in process.log.text()
    assert time.monotonic() - started < 10


def test_a_peak_between_two_samples_is_an_oom_kill_all_the_same(tmp_path: Path) -> None:
    # 200 MB for a moment, freed before the next sample can see it resident: a cgroup would
    # not have let it happen.
    spike = "import time; x = b'x' * 200_000_000; del x; time.sleep(1)"
    status = finish(run(["python", "-c", spike], tmp_path, memory_limit=64 * 1024 * 1024))
    assert status.oom_killed
    assert (status.exit_code, status.signal) == (137, signal.SIGKILL)


def test_process_below_memory_limit_is_left_alone(tmp_path: Path) -> None:
    status = finish(
        run(["python", "-c", "x = b'x' * 1048576"], tmp_path, memory_limit=256 * 1024 * 1024)
    )
    assert (status.exit_code, status.oom_killed) == (0, False)


def test_stop_delivers_sigterm_to_a_process_that_handles_it(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('got term', flush=True), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = run(["python", "-c", code], tmp_path)
    wait_for_output(process.log, "ready")
    status = process.stop(grace_seconds=10)
    assert status is not None
    assert status.exit_code == 0
    assert "got term" in process.log.text()


def test_stop_kills_a_pid1_that_ignores_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    # `sleep` has no SIGTERM handler: as a container's PID 1 it would not die of SIGTERM.
    process = run(["sleep", "60"], tmp_path)
    time.sleep(0.1)
    started = time.monotonic()
    status = process.stop(grace_seconds=0.5)
    elapsed = time.monotonic() - started
    assert status is not None
    assert status.exit_code == 137
    assert 0.5 <= elapsed < 5


def test_exit_of_the_main_process_kills_what_it_left_behind(tmp_path: Path) -> None:
    process = run(["sh", "-c", "sleep 60 & echo $!"], tmp_path)
    finish(process)
    orphan = int(process.log.text().strip())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{orphan}").exists() and not is_zombie(orphan):
        assert time.monotonic() < deadline, "the background sleep survived its container"
        time.sleep(0.05)


def test_follow_streams_lines_before_the_process_ends(tmp_path: Path) -> None:
    process = run(["sh", "-c", "echo first; sleep 0.5; echo second"], tmp_path)
    received: list[tuple[float, bytes]] = []
    for line in process.log.follow():
        received.append((time.monotonic(), line.data))
    finish(process)
    assert [data for _, data in received] == [b"first\n", b"second\n"]
    assert received[1][0] - received[0][0] >= 0.3, "lines were not streamed as they came"


def test_follow_stops_when_asked(tmp_path: Path) -> None:
    process = run(["sh", "-c", "echo only; sleep 30"], tmp_path)
    stop = threading.Event()
    seen = []
    try:
        for line in process.log.follow(stop=stop, poll=0.05):
            seen.append(line.data)
            stop.set()
    finally:
        process.kill()
    assert seen == [b"only\n"]


def test_long_lines_are_split_and_unterminated_output_is_kept(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('a' * 40000 + '\\n' + 'tail-without-newline')"
    process = run(["python", "-c", code], tmp_path)
    finish(process)
    sizes = [len(line.data) for line in process.log.lines()]
    assert sizes == [16384, 16384, 40001 - 32768, len("tail-without-newline")]
    assert process.log.text().endswith("\ntail-without-newline")


def test_tail_for_termination_messages() -> None:
    log = ContainerLog()
    for number in range(100):
        log.append("stdout", f"line {number}\n".encode())
    assert log.tail(max_lines=3, max_bytes=2048) == "line 97\nline 98\nline 99\n"
    assert log.tail(max_lines=80, max_bytes=10) == "8\nline 99\n"


# "line N\n" as one record of a CRI log file.
RECORD = len("2006-01-02T15:04:05.000000000Z stdout F line 0\n")


def test_log_rotates_at_its_size_and_reads_only_the_current_file() -> None:
    log = ContainerLog(max_size=3 * RECORD, max_files=2)
    for number in range(8):
        log.append("stdout", f"line {number}\n".encode())
    # Files: [0 1 2] [3 4 5] [6 7]; the write that fills a file rotates it.
    assert log.text() == "line 6\nline 7\n"
    assert log.tail(max_lines=80, max_bytes=2048) == "line 6\nline 7\n"
    log.append("stdout", b"line 8\n")
    assert log.text() == ""


def test_partial_lines_count_their_cri_newline() -> None:
    log = ContainerLog(max_size=2 * RECORD)
    log.append("stdout", b"line 0")  # a partial record: the CRI file adds its newline
    log.append("stderr", b"line 1\n")
    log.append("stdout", b"line 2\n")
    assert log.text() == "line 2\n"


def test_follow_starts_at_the_current_file_and_continues_across_rotations() -> None:
    log = ContainerLog(max_size=3 * RECORD)
    for number in range(4):
        log.append("stdout", f"line {number}\n".encode())
    follower = log.follow(poll=0.01)
    assert next(follower).data == b"line 3\n"
    for number in range(4, 10):
        log.append("stdout", f"line {number}\n".encode())
    log.close()
    assert [line.data for line in follower] == [f"line {n}\n".encode() for n in range(4, 10)]
    assert log.text() == "line 9\n"


def test_log_needs_two_files_like_the_kubelet() -> None:
    with pytest.raises(ValueError, match="invalid MaxFiles 1, must be > 1"):
        ContainerLog(max_files=1)


def test_on_exit_is_called_with_the_status(tmp_path: Path) -> None:
    called = threading.Event()
    statuses: list[ExitStatus] = []

    def on_exit(status: ExitStatus) -> None:
        statuses.append(status)
        called.set()

    spec = ProcessSpec(argv=["sh", "-c", "exit 7"], env={"PATH": PATH}, cwd=tmp_path)
    process = ContainerProcess.start(spec, on_exit=on_exit)
    assert called.wait(10)
    process.kill()
    assert [status.exit_code for status in statuses] == [7]


def test_spec_repr_hides_the_environment(tmp_path: Path) -> None:
    spec = ProcessSpec(argv=["env"], env={"PASSWORD": "canary-Pa55"}, cwd=tmp_path)
    assert "canary-Pa55" not in repr(spec)


def wait_for_output(log: ContainerLog, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in the log"
        time.sleep(0.02)


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
