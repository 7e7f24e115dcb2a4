"""Background processes that are always stopped by their PID.

:class:`BackgroundProcess` starts a server with its output in a log file and stops it by PID
(terminate, wait, kill). :class:`ProcessRecord` identifies a process across Python processes
(PID plus kernel start time), so a later ``sandbox down`` can stop what ``sandbox up`` started
from a PID file without ever signalling a recycled PID.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from ocscan.sandbox.errors import ProcessStartError, SandboxError
from ocscan.sandbox.lifecycle import StopsOnExit

LOOPBACK = "127.0.0.1"
_POLL_SECONDS = 0.02


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the starting process dies, even by SIGKILL,
    so a killed test run or sandbox leaves no registry or Trivy server behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start_ticks)`` of ``pid`` from /proc, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


@dataclass(frozen=True)
class ProcessRecord:
    """A started process: its PID plus what tells it apart from a later process with that PID."""

    pid: int
    start_ticks: int
    argv: tuple[str, ...]

    @classmethod
    def of(cls, pid: int, argv: Sequence[str]) -> ProcessRecord:
        """The record of the live process ``pid`` (started with ``argv``)."""
        stat = _proc_stat(pid)
        if stat is None:
            raise SandboxError(f"process {pid} ({argv[0]}) is not running")
        return cls(pid=pid, start_ticks=stat[1], argv=tuple(argv))

    def is_running(self) -> bool:
        """Whether this very process is alive (not exited, not a zombie, PID not reused)."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == self.start_ticks

    def write(self, path: Path) -> None:
        """Store the record as JSON in ``path`` (a PID file)."""
        data = {"pid": self.pid, "start_ticks": self.start_ticks, "argv": list(self.argv)}
        path.write_text(json.dumps(data) + "\n")

    @classmethod
    def read(cls, path: Path) -> ProcessRecord:
        """The record stored in the PID file ``path``."""
        try:
            data = json.loads(path.read_text())
            return cls(
                pid=int(data["pid"]),
                start_ticks=int(data["start_ticks"]),
                argv=tuple(str(arg) for arg in data["argv"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SandboxError(f"unreadable PID file {path}: {error}") from error


def stop_pid(record: ProcessRecord, timeout: float = 5.0) -> bool:
    """Stop the recorded process: SIGTERM, wait up to ``timeout``, then SIGKILL.

    Works for processes this Python did not start (they are reaped by their parent or init).
    Returns False, signalling nothing, when the process is already gone or its PID now belongs
    to another process.
    """
    try:
        # A pidfd pins this very process: once its identity is checked, no signal sent
        # through it can reach a later process that reuses the PID.
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return False
    try:
        if not record.is_running():
            return False
        _signal(pidfd, signal.SIGTERM)
        if _wait_gone(record, timeout):
            return True
        _signal(pidfd, signal.SIGKILL)
        if not _wait_gone(record, timeout):
            raise SandboxError(f"process {record.pid} ({record.argv[0]}) survived SIGKILL")
        return True
    finally:
        os.close(pidfd)


def _signal(pidfd: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signum)


def _wait_gone(record: ProcessRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while record.is_running():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


class BackgroundProcess(StopsOnExit):
    """A server process with its stdout and stderr in a log file; a context manager.

    Still-running processes are stopped when the interpreter exits, unless :meth:`detach`
    handed them over to a PID file owner (``sandbox up``).
    """

    def __init__(
        self,
        name: str,
        popen: subprocess.Popen[bytes],
        argv: Sequence[str],
        log_file: Path,
        pid_file: Path | None,
    ) -> None:
        self.name = name
        self.log_file = log_file
        self.pid_file = pid_file
        self._popen = popen
        self.record = ProcessRecord.of(popen.pid, argv)

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_file: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        pid_file: Path | None = None,
        die_with_parent: bool = True,
    ) -> BackgroundProcess:
        """Start ``argv`` in its own session, appending its output to ``log_file``.

        ``env`` replaces the environment entirely when given. ``pid_file`` receives the
        :class:`ProcessRecord` for :func:`stop_pid`. ``die_with_parent``: SIGTERM it when
        this process dies, even by SIGKILL; False for one that must outlive it (:meth:`detach`).
        """
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only the test runner
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        try:
            process = cls(name, popen, argv, log_file, pid_file)
        except SandboxError:
            popen.wait()
            raise ProcessStartError(name, "exited at once", _tail(log_file)) from None
        if pid_file is not None:
            process.record.write(pid_file)
        _LIVE.add(process)
        return process

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_running(self) -> None:
        """Raise :class:`ProcessStartError` (with the log tail) if the process has exited."""
        code = self._popen.poll()
        if code is not None:
            raise ProcessStartError(self.name, f"exited with code {code}", _tail(self.log_file))

    def wait_for_port(self, port: int, host: str = LOOPBACK, timeout: float = 15.0) -> None:
        """Wait until ``host:port`` accepts TCP connections; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessStartError(
                    self.name, f"nothing listened on {host}:{port} after {timeout}s", self.tail()
                )
            time.sleep(_POLL_SECONDS)

    def wait_for_http(
        self, url: str, *, verify: ssl.SSLContext | bool = True, timeout: float = 15.0
    ) -> httpx.Response:
        """Wait until ``url`` answers with any HTTP status; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        with httpx.Client(verify=verify, timeout=1.0, trust_env=False) as client:
            while True:
                self.check_running()
                try:
                    return client.get(url)
                except httpx.TransportError as error:
                    if time.monotonic() > deadline:
                        self.stop()
                        reason = f"{url} did not answer after {timeout}s: {error}"
                        raise ProcessStartError(self.name, reason, self.tail()) from None
                time.sleep(_POLL_SECONDS)

    def tail(self, lines: int = 20) -> str:
        return _tail(self.log_file, lines)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Terminate, wait up to ``timeout``, kill; reap it and remove its PID file.

        Idempotent. Returns the exit code.
        """
        _LIVE.discard(self)
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.terminate()
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self._popen.kill()
                self._popen.wait(timeout)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        return self._popen.returncode

    def detach(self) -> ProcessRecord:
        """Leave the process running past this interpreter; stop it later with :func:`stop_pid`."""
        _LIVE.discard(self)
        return self.record

    def __repr__(self) -> str:
        return f"BackgroundProcess({self.name!r}, pid={self.pid})"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _LiveProcesses:
    """Processes to stop at interpreter exit, a safety net behind every ``finally``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: set[BackgroundProcess] = set()

    def add(self, process: BackgroundProcess) -> None:
        with self._lock:
            self._processes.add(process)

    def discard(self, process: BackgroundProcess) -> None:
        with self._lock:
            self._processes.discard(process)

    def stop_all(self) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            process.stop()


_LIVE = _LiveProcesses()
atexit.register(_LIVE.stop_all)


class ProcessServer(StopsOnExit):
    """A server that one :class:`BackgroundProcess` runs: its PID, log, stop by PID, and use
    as a context manager that stops it."""

    process: BackgroundProcess

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        """The server's output so far."""
        return self.process.log_text()

    def stop(self) -> None:
        """Stop the server process by its PID. Idempotent."""
        self.process.stop()


_Server = TypeVar("_Server", bound=ProcessServer)
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it


def start_on_free_port(
    launch: Callable[[int], _Server], ready: Callable[[_Server], None]
) -> _Server:
    """``launch(port)`` on a free port and wait for ``ready``; on another port when the
    chosen one was taken in between ("address already in use")."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = launch(free_port())
        try:
            ready(server)
        except ProcessStartError:
            server.stop()
            if attempt < START_ATTEMPTS and "address already in use" in server.log_text():
                continue
            raise
        return server
    raise AssertionError("unreachable")
