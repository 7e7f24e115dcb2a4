"""Running a measured agent in a fresh interpreter, optionally under pyinstrument."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchmarkError(Exception):
    """A measured run failed, or did not do what it measures."""


def run_agent(
    module: str,
    args: list[str] | None = None,
    *,
    stdin: dict[str, Any] | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """``python -m module args`` with ``stdin`` as JSON; its JSON answer on stdout.

    ``profile``: write pyinstrument's text profile of the run there (the dev extra installs
    pyinstrument; a profiled run is slower, so its timings are for reading, not reporting).
    """
    argv = [sys.executable, "-m"]
    if profile is not None:
        argv += ["pyinstrument", "--renderer", "text", "--outfile", str(profile), "-m"]
    process = subprocess.run(
        [*argv, module, *(args or [])],
        input=json.dumps(stdin) if stdin is not None else None,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        check=False,
    )
    if process.returncode != 0:
        raise BenchmarkError(f"{module} failed:\n{process.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(process.stdout)
    return answer
