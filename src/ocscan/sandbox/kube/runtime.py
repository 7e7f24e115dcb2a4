"""Run one container as a local process, the way a container runtime would.

A :class:`ContainerProcess` is one container instance: it starts from a fully resolved
:class:`ProcessSpec` (argv, env, working directory, memory limit), captures stdout and
stderr line by line into a :class:`ContainerLog`, enforces the memory limit by sampling the
RSS of its process tree, and reports an :class:`ExitStatus` once it is gone.

Container semantics reproduced on a plain process:

- the environment is exactly the one given: nothing leaks from the emulator's own env;
- the process leads its own session, so the whole tree can be signalled at once, and when
  the main process exits every process left in its group is killed (as the kernel does to a
  PID namespace when its init exits);
- the main process is "PID 1": a stop request delivers SIGTERM only when the process
  catches it (an uncaught SIGTERM is ignored by a namespace init), then SIGKILL after the
  grace period;
- the memory limit kills the whole tree with SIGKILL (the kubelet sets ``memory.oom.group``)
  and the exit code is 137;
- a signal death is reported as ``128 + signal``, as containerd reports it.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ocscan.errors import OcscanError

Stream = Literal["stdout", "stderr"]

#: How often the memory of a limited process tree is sampled.
MEMORY_SAMPLE_INTERVAL = 0.1
#: Longest line kept in one log record; longer output is split into several, like the CRI.
MAX_LOG_LINE = 16 * 1024
#: The kubelet's defaults for ``containerLogMaxSize`` (10Mi) and ``containerLogMaxFiles``.
LOG_MAX_SIZE = 10 * 1024 * 1024
LOG_MAX_FILES = 5
#: What the CRI log format adds to each record on disk: ``<RFC 3339 time> <stream> <P|F> ``.
CRI_RECORD_OVERHEAD = len("2006-01-02T15:04:05.000000000Z stdout F ")

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_SIGTERM_MASK = 1 << (signal.SIGTERM - 1)


class StartError(OcscanError):
    """The container's process could not be started; ``message`` is the runtime's text."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- logs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One log record: a full line (ending in a newline) or a piece of a longer one."""

    time_ns: int
    stream: Stream
    data: bytes

    @property
    def timestamp(self) -> str:
        """RFC 3339 with nanoseconds, as ``kubectl logs --timestamps`` prints it."""
        seconds, nanos = divmod(self.time_ns, 1_000_000_000)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{stamp}.{nanos:09d}Z"

    @property
    def disk_size(self) -> int:
        """The record's size in a CRI log file (a partial line gets its own newline there)."""
        newline = 0 if self.data.endswith(b"\n") else 1
        return CRI_RECORD_OVERHEAD + len(self.data) + newline


class ContainerLog:
    """The log of one container instance: stdout and stderr interleaved in arrival order,
    rotated like the kubelet rotates a container's CRI log file.

    Records go to the current file. Once it reaches ``max_size`` bytes (counted as the CRI
    format stores them, see :attr:`LogLine.disk_size`) it is rotated: later records start a
    new current file, and only the newest ``max_files - 1`` rotated files are kept.
    :meth:`lines`, :meth:`text` and :meth:`tail` see only the current file, as ``kubectl
    logs`` (without ``--previous``) does; :meth:`follow` starts at the current file and keeps
    streaming across rotations.

    The real kubelet looks at the sizes every 10 s (``containerLogMonitorInterval``), and only
    of running containers: a real file overshoots ``max_size`` by what the container writes
    until the next look, and one that exits before it is never rotated. Here the write that
    reaches ``max_size`` rotates at once, so losing the beginning of a long output is
    deterministic instead of a matter of timing.

    Thread-safe; writers append, readers take a snapshot or follow until the log closes.
    """

    def __init__(self, max_size: int = LOG_MAX_SIZE, max_files: int = LOG_MAX_FILES) -> None:
        if max_files <= 1:
            raise ValueError(f"invalid MaxFiles {max_files}, must be > 1")  # the kubelet's words
        self._lines: deque[LogLine] = deque()
        self._dropped = 0  # records dropped from the front, so follow positions stay valid
        self._files: deque[int] = deque([0])  # absolute index of each kept file's first record
        self._current_size = 0
        self._max_size = max_size
        self._max_files = max_files
        self._closed = False
        self._changed = threading.Condition()

    def append(self, stream: Stream, data: bytes) -> None:
        """Record one line (or line piece) written by the container."""
        if not data:
            return
        line = LogLine(time.time_ns(), stream, data)
        with self._changed:
            self._lines.append(line)
            self._current_size += line.disk_size
            if self._current_size >= self._max_size:
                self._rotate()
            self._changed.notify_all()

    def _rotate(self) -> None:
        """Start a new current file; drop the oldest files past ``max_files``."""
        self._files.append(self._dropped + len(self._lines))
        self._current_size = 0
        while len(self._files) > self._max_files:
            self._files.popleft()
            while self._dropped < self._files[0]:
                self._lines.popleft()
                self._dropped += 1

    def close(self) -> None:
        """No more output will come: followers finish."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        with self._changed:
            return self._closed

    def lines(self) -> list[LogLine]:
        """A snapshot of the current file's records."""
        with self._changed:
            return list(itertools.islice(self._lines, self._files[-1] - self._dropped, None))

    def follow(self, stop: threading.Event | None = None, poll: float = 0.2) -> Iterator[LogLine]:
        """The current file's records, then new ones as they arrive (across rotations), until
        the log closes or ``stop`` is set."""
        for batch in self._batches(stop, poll):
            yield from batch

    def follow_bytes(
        self, stop: threading.Event | None = None, poll: float = 0.2
    ) -> Iterator[bytes]:
        """Like :meth:`follow`, as bytes, with an empty chunk after each idle ``poll``, so a
        reader can notice that its client went away while the container is silent."""
        for batch in self._batches(stop, poll):
            yield b"".join(line.data for line in batch)

    def _batches(self, stop: threading.Event | None, poll: float) -> Iterator[list[LogLine]]:
        with self._changed:
            position = self._files[-1]  # absolute index of the next record to hand out
        while stop is None or not stop.is_set():
            with self._changed:
                start = max(position - self._dropped, 0)
                batch = list(itertools.islice(self._lines, start, None))
                position = self._dropped + len(self._lines)
                if not batch:
                    if self._closed:
                        return
                    self._changed.wait(poll)
            yield batch

    def text(self) -> str:
        """The current file, decoded leniently."""
        return b"".join(line.data for line in self.lines()).decode(errors="replace")

    def tail(self, max_lines: int, max_bytes: int) -> str:
        """The current file's last ``max_lines`` lines, at most ``max_bytes`` (for
        termination messages)."""
        data = b"".join(line.data for line in self.lines())
        tail = b"\n".join(data.splitlines()[-max_lines:])
        if data.endswith(b"\n") and tail:
            tail += b"\n"
        return tail[-max_bytes:].decode(errors="replace")


class _LineSplitter:
    """Cuts a byte stream into log records at newlines (and at :data:`MAX_LOG_LINE`)."""

    def __init__(self, stream: Stream, log: ContainerLog) -> None:
        self._stream = stream
        self._log = log
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        while True:
            cut = data.find(b"\n")
            if cut < 0 or cut >= MAX_LOG_LINE:
                if len(data) >= MAX_LOG_LINE:
                    self._log.append(self._stream, data[:MAX_LOG_LINE])
                    data = data[MAX_LOG_LINE:]
                    continue
                break
            self._log.append(self._stream, data[: cut + 1])
            data = data[cut + 1 :]
        self._pending = data

    def flush(self) -> None:
        self._log.append(self._stream, self._pending)
        self._pending = b""


# --- /proc ------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain ")" or spaces.
    return raw[raw.rfind(b")") + 2 :].decode().split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def resident_bytes(pids: Sequence[int]) -> int:
    """The summed resident set size of ``pids`` (gone processes count zero)."""
    total = 0
    for pid in pids:
        try:
            resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident_pages * _PAGE_SIZE
    return total


def peak_resident_bytes(pids: Sequence[int]) -> int:
    """The largest peak resident set size (``VmHWM``) among ``pids`` since their exec."""
    peak = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)  # in kB
    return peak


def catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has a SIGTERM handler (a namespace init without one ignores SIGTERM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & _SIGTERM_MASK)
    except (OSError, ValueError):
        pass
    return True  # unknown: deliver the signal rather than wait out the grace period


# --- processes --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSpec:
    """Everything needed to start one container process; all paths are host paths."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    memory_limit: int | None = None  # bytes; the whole process tree counts

    def __repr__(self) -> str:
        # The env carries secret values: never print it.
        return f"ProcessSpec(argv[0]={self.argv[0]!r}, cwd={str(self.cwd)!r})"


@dataclass(frozen=True)
class ExitStatus:
    """How a container process ended."""

    exit_code: int
    oom_killed: bool
    started_at: datetime
    finished_at: datetime
    signal: int | None = None


def resolve_executable(argv0: str, path: str) -> str:
    """The host path of ``argv0``, looked up on ``path`` when it has no slash, like runc.

    Raises :class:`StartError` with runc's wording when there is nothing to execute.
    """
    if "/" in argv0:
        found = argv0 if os.access(argv0, os.X_OK) and os.path.isfile(argv0) else None
        reason = "no such file or directory" if not os.path.exists(argv0) else "permission denied"
    else:
        found = shutil.which(argv0, path=path)
        reason = "executable file not found in $PATH"
    if found is None:
        raise StartError(
            "failed to create containerd task: failed to create shim task: OCI runtime create "
            "failed: runc create failed: unable to start container process: "
            f'exec: "{argv0}": {reason}: unknown'
        )
    return found


_LIVE: weakref.WeakSet[ContainerProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE):
        process.kill()


class ContainerProcess:
    """One running container instance. Create with :meth:`start`."""

    def __init__(
        self,
        spec: ProcessSpec,
        log: ContainerLog,
        on_exit: Callable[[ExitStatus], None] | None,
    ) -> None:
        self.spec = spec
        self.log = log
        self.on_exit = on_exit
        self.started_at = now_utc()
        self.status: ExitStatus | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._oom_killed = False
        self._reaped = False

    @classmethod
    def start(
        cls,
        spec: ProcessSpec,
        log: ContainerLog | None = None,
        on_exit: Callable[[ExitStatus], None] | None = None,
    ) -> ContainerProcess:
        """Start the process and its supervisor; raise :class:`StartError` when it can't."""
        if not spec.argv:
            raise StartError(
                "failed to create containerd task: failed to create shim task: OCI runtime "
                "create failed: runc create failed: unable to start container process: "
                "exec: no command specified: unknown"
            )
        executable = resolve_executable(spec.argv[0], spec.env.get("PATH", ""))
        if not spec.cwd.is_dir():
            raise StartError(
                "failed to create containerd task: failed to create shim task: OCI runtime "
                "create failed: runc create failed: unable to start container process: "
                f"chdir to cwd ({str(spec.cwd)!r}) set in config.json failed: "
                "no such file or directory: unknown"
            )
        process = cls(spec, log or ContainerLog(), on_exit)
        try:
            process._popen = subprocess.Popen(
                list(spec.argv),
                executable=executable,
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            raise StartError(
                "failed to create containerd task: failed to create shim task: OCI runtime "
                "create failed: runc create failed: unable to start container process: "
                f'exec: "{spec.argv[0]}": {error.strerror}: unknown'
            ) from None
        process.started_at = now_utc()
        _LIVE.add(process)
        threading.Thread(
            target=process._supervise, name=f"container-{process.pid}", daemon=True
        ).start()
        return process

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Block until the process is gone and its output drained; ``None`` on timeout."""
        self._exited.wait(timeout)
        return self.status

    def stop(self, grace_seconds: float) -> ExitStatus | None:
        """SIGTERM (when the process handles it), then SIGKILL after ``grace_seconds``."""
        if self._exited.is_set():
            return self.status
        if grace_seconds > 0:
            if catches_sigterm(self.pid):
                self._signal_main(signal.SIGTERM)
            if self._exited.wait(grace_seconds):
                return self.status
        self.kill()
        return self.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group now (does not wait)."""
        self._signal_group(signal.SIGKILL)

    # -- internals --

    def _signal_main(self, signum: int) -> None:
        with self._lock:
            if not self._reaped:  # an unreaped pid cannot have been reused
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signum)

    def _signal_group(self, signum: int) -> None:
        with self._lock:
            if not self._reaped:  # the group id is this pid: safe while it is not reaped
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signum)

    def _main_exited(self) -> bool:
        """Whether the main process has exited, without reaping it."""
        result = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return result is not None

    def _check_memory(self) -> None:
        limit = self.spec.memory_limit
        if limit is None or self._oom_killed:
            return
        tree = process_tree(self.pid)
        # A cgroup limit holds at every instant: a process's own peak since its exec (less
        # than the tree's peak) above the limit is an OOM kill, even between two samples.
        if resident_bytes(tree) > limit or peak_resident_bytes(tree) > limit:
            self._oom_killed = True
            self.kill()

    def _supervise(self) -> None:
        popen = self._popen
        assert popen is not None and popen.stdout is not None and popen.stderr is not None
        splitters = {
            popen.stdout.fileno(): _LineSplitter("stdout", self.log),
            popen.stderr.fileno(): _LineSplitter("stderr", self.log),
        }
        selector = selectors.DefaultSelector()
        for pipe in (popen.stdout, popen.stderr):
            selector.register(pipe, selectors.EVENT_READ)
        drain_deadline: float | None = None
        while selector.get_map():
            for key, _ in selector.select(MEMORY_SAMPLE_INTERVAL):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    splitters[key.fd].feed(chunk)
                else:
                    selector.unregister(key.fileobj)
                    splitters[key.fd].flush()
            if drain_deadline is None:
                self._check_memory()
                if self._main_exited():
                    # The "PID 1" is gone: its namespace dies with it.
                    self._signal_group(signal.SIGKILL)
                    drain_deadline = time.monotonic() + 2.0
            elif time.monotonic() > drain_deadline:
                break  # an escaped process holds the pipe open: stop reading it
        for key in list(selector.get_map().values()):
            splitters[key.fd].flush()
        selector.close()
        popen.stdout.close()
        popen.stderr.close()
        while not self._main_exited():
            self._check_memory()
            time.sleep(MEMORY_SAMPLE_INTERVAL)
        self._signal_group(signal.SIGKILL)
        with self._lock:
            returncode = popen.wait()
            self._reaped = True
        self.log.close()
        self.status = ExitStatus(
            exit_code=128 - returncode if returncode < 0 else returncode,
            oom_killed=self._oom_killed,
            started_at=self.started_at,
            finished_at=now_utc(),
            signal=-returncode if returncode < 0 else None,
        )
        _LIVE.discard(self)
        self._exited.set()
        if self.on_exit is not None:
            self.on_exit(self.status)
