"""Run Trivy as a local process, isolated from the invoking user's credentials.

Trivy falls back to Docker and Podman credential files, and honours ``TRIVY_*``, proxy and
certificate variables. Each scan therefore gets a fresh private folder as ``HOME``,
``DOCKER_CONFIG``, ``XDG_*`` and ``TMPDIR``, an environment built from an allow-list, and
exactly the credentials its command carries. The folder is removed when the scan ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ocscan.registry.credential import RegistryCredential
from ocscan.scan.failure import FailureKind, ScanFailed, ScanFailure, classify_failure, redact
from ocscan.scan.report import ReportError, ScanResult, parse_report
from ocscan.scan.trivy_command import (
    DEFAULT_TIMEOUT,
    ScanMode,
    Standalone,
    TrivyCommand,
    build_trivy_command,
)

GRACE_SECONDS = 5.0
"""How much longer than Trivy's own ``--timeout`` the process may run before it is killed."""

# Only what a Go program needs to run and format text; everything else is dropped.
_INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "GOMAXPROCS", "GOMEMLIMIT", "GOGC")


def find_trivy() -> str | None:
    """Trivy on ``PATH``, else the one installed next to this Python (the PyPI wheel)."""
    found = shutil.which("trivy")
    if found is None:
        candidate = Path(sysconfig.get_path("scripts")) / "trivy"
        found = str(candidate) if os.access(candidate, os.X_OK) else None
    return found


def isolated_environment(workdir: Path, parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for Trivy whose every config and cache location is inside ``workdir``."""
    parent = os.environ if parent is None else parent
    env = {name: parent[name] for name in _INHERITED if name in parent}
    env |= {
        "HOME": str(workdir / "home"),
        "DOCKER_CONFIG": str(workdir / "docker"),
        "XDG_RUNTIME_DIR": str(workdir / "run"),
        "XDG_CONFIG_HOME": str(workdir / "home" / ".config"),
        "XDG_CACHE_HOME": str(workdir / "home" / ".cache"),
        "XDG_DATA_HOME": str(workdir / "home" / ".local" / "share"),
        "TMPDIR": str(workdir / "tmp"),
    }
    return env


async def scan_image(
    image: str,
    mode: ScanMode,
    *,
    credential: RegistryCredential | None = None,
    ca_file: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - Trivy enforces it too, see GRACE_SECONDS
    trivy: str | None = None,
) -> ScanResult:
    """Scan ``image`` with Trivy; raise :class:`ScanFailed` when it cannot be scanned.

    ``credential`` must belong to the registry of ``image``; it is the only one Trivy sees.
    """
    trivy = trivy or find_trivy()
    if trivy is None:
        failure = ScanFailure(kind=FailureKind.SCANNER_ERROR, message="trivy is not installed")
        raise ScanFailed(image, failure)
    if isinstance(mode, Standalone):
        _check_database(image, Path(mode.cache_dir))
    command = build_trivy_command(
        image, mode, credential=credential, ca_file=ca_file, timeout=timeout, trivy=trivy
    )
    secrets = command.secret_values()
    with _workspace(command) as (workdir, env):
        returncode, stdout, stderr = await _run(command.argv, workdir, env, timeout + GRACE_SECONDS)
    if returncode is None:
        message = f"the scan did not finish within {timeout:g}s; trivy was killed"
        raise ScanFailed(image, ScanFailure(kind=FailureKind.TIMEOUT, message=message))
    if returncode != 0:
        log = stderr.decode(errors="replace")
        raise ScanFailed(image, classify_failure(returncode, log, secrets=secrets))
    try:
        return parse_report(stdout, image=image)
    except ReportError as exc:
        message = redact(str(exc), secrets)
        raise ScanFailed(
            image, ScanFailure(kind=FailureKind.SCANNER_ERROR, message=message)
        ) from None


def _check_database(image: str, cache_dir: Path) -> None:
    database = cache_dir / "db" / "trivy.db"
    if not database.is_file():
        message = f"no vulnerability DB at {database} (ocscan never downloads one)"
        raise ScanFailed(image, ScanFailure(kind=FailureKind.SCANNER_ERROR, message=message))


@contextlib.contextmanager
def _workspace(command: TrivyCommand) -> Iterator[tuple[Path, dict[str, str]]]:
    """A private folder (0700) and the environment that confines Trivy to it."""
    workdir = Path(tempfile.mkdtemp(prefix="ocscan-trivy-"))
    try:
        env = isolated_environment(workdir)
        for name in ("HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "TMPDIR"):
            Path(env[name]).mkdir(mode=0o700, exist_ok=True)
        env |= {name: value.get_secret_value() for name, value in command.secret_env.items()}
        if command.docker_config is not None:
            config = Path(env["DOCKER_CONFIG"]) / "config.json"
            descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(command.docker_config.get_secret_value())
        yield workdir, env
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _run(
    argv: tuple[str, ...], workdir: Path, env: dict[str, str], deadline: float
) -> tuple[int | None, bytes, bytes]:
    """Exit status (``None`` when killed at ``deadline`` seconds), stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so a kill reaches every child
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), deadline)
    except TimeoutError:
        await _kill(process)
        return None, b"", b""
    except BaseException:
        await _kill(process)
        raise
    assert process.returncode is not None
    return process.returncode, stdout, stderr


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
