"""``ocscan sandbox up|down``: the local stack (registry, Trivy server, Kubernetes emulator)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ocscan.sandbox.processes import ProcessRecord, stop_pid
from ocscan.sandbox.state import LOG_FILE, PID_FILE, STATE_FILE

START_TIMEOUT = 120.0

sandbox_app = typer.Typer(
    name="sandbox", help="Run the local sandbox: registry, Trivy server, Kubernetes emulator."
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"ocscan sandbox: {message}", err=True)
    raise typer.Exit(1)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@sandbox_app.command()
def up(
    directory: Annotated[Path, typer.Option("--dir", help="Folder of the sandbox's state.")],
    advisories: Annotated[
        Path | None,
        typer.Option(help="JSON list of advisories (os, package, fixed_version, id, severity)."),
    ] = None,
) -> None:
    """Start the sandbox in the background; returns once everything answers."""
    directory = directory.resolve()
    pid_file = directory / PID_FILE
    if pid_file.exists() and ProcessRecord.read(pid_file).is_running():
        _fail(f"a sandbox already runs in {directory}; `ocscan sandbox down --dir {directory}`")
    try:
        # The emulator's dependencies come with the extra: check before forking a server.
        from ocscan.sandbox.daemon import AdvisoriesError, load_advisories
    except ImportError as error:
        _fail(f"{error}; install the sandbox extra: pip install 'ocscan[sandbox]'")
    if advisories is not None:
        try:
            load_advisories(advisories)
        except AdvisoriesError as error:
            _fail(f"--advisories {error}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).unlink(missing_ok=True)
    argv = [sys.executable, "-m", "ocscan.sandbox.daemon", "--dir", str(directory)]
    if advisories is not None:
        argv += ["--advisories", str(advisories.resolve())]
    log_path = directory / LOG_FILE
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives this command and its terminal
        )
    ProcessRecord.of(process.pid, argv).write(pid_file)
    deadline = time.monotonic() + START_TIMEOUT
    state = directory / STATE_FILE
    while not state.exists():
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            _fail(f"the sandbox did not start:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            stop_pid(ProcessRecord.read(pid_file))
            pid_file.unlink(missing_ok=True)
            _fail(f"the sandbox did not answer within {START_TIMEOUT:.0f}s:\n{_tail(log_path)}")
        time.sleep(0.1)
    info = json.loads(state.read_text())
    typer.echo(f"sandbox up in {directory}")
    typer.echo(f"  kubeconfig: {info['kubeconfig']}")
    typer.echo(f"  registry:   {info['registry']['address']} (user {info['registry']['username']})")
    typer.echo(f"  trivy:      {info['trivy']['url']}")
    typer.echo(f"  try: kubectl --kubeconfig {info['kubeconfig']} get pods -A")


@sandbox_app.command()
def down(
    directory: Annotated[Path, typer.Option("--dir", help="Folder of the sandbox's state.")],
) -> None:
    """Stop the sandbox of ``--dir`` and every process it started."""
    directory = directory.resolve()
    pid_file = directory / PID_FILE
    if not pid_file.exists():
        _fail(f"no sandbox runs in {directory}")
    record = ProcessRecord.read(pid_file)
    if record.is_running():
        stop_pid(record, timeout=60.0)
    if record.is_running():
        _fail(f"the sandbox process {record.pid} did not stop")
    pid_file.unlink(missing_ok=True)
    (directory / STATE_FILE).unlink(missing_ok=True)
    typer.echo(f"sandbox in {directory} stopped")


def register(app: typer.Typer) -> None:
    """Add the ``sandbox`` command group to ``app``."""
    app.add_typer(sandbox_app)
