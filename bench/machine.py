"""Where and on what a benchmark ran: machine, software versions, date and commit."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from ocscan.sandbox.trivy import find_trivy


def _first(path: str, prefix: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix)), None)


def _run(argv: list[str], cwd: Path) -> str | None:
    try:
        process = subprocess.run(
            argv, capture_output=True, text=True, cwd=cwd, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return process.stdout.strip() if process.returncode == 0 else None


def commit(repo: Path) -> str:
    """The checked-out commit, marked ``+ uncommitted changes`` when the tree differs."""
    head = _run(["git", "rev-parse", "HEAD"], repo)
    if head is None:
        return "unknown (not a git checkout)"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], repo)
    return head + (" + uncommitted changes" if dirty else "")


def describe(repo: Path) -> dict[str, str]:
    """Facts about this machine and checkout, for the report's header."""
    memory = _first("/proc/meminfo", "MemTotal")
    cores = len(os.sched_getaffinity(0))
    trivy = find_trivy()
    version = _run([str(trivy), "--version"], repo) or "unknown"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(repo),
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": f"{cores} usable ({os.cpu_count()} online)",
        "memory": f"{int(memory.split()[0]) // 1024} MiB" if memory else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "trivy": version.splitlines()[0],
    }
