"""The background process of ``ocscan sandbox up``: serve the stack until SIGTERM.

``python -m ocscan.sandbox.daemon --dir D [--advisories FILE]``. It writes ``D/sandbox.json``
once everything answers; ``ocscan sandbox down`` stops it by the PID in ``D/sandbox.pid``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ocscan.sandbox.errors import SandboxError
from ocscan.sandbox.stack import Sandbox
from ocscan.sandbox.state import STATE_FILE
from ocscan.sandbox.trivydb import SAMPLE_ADVISORIES, Advisory


class AdvisoriesError(SandboxError):
    """An advisories file cannot be used; the message names each bad entry and field."""


def load_advisories(path: Path | None) -> list[Advisory]:
    """The advisories of FILE (a JSON list), or the built-in sample set."""
    if path is None:
        return list(SAMPLE_ADVISORIES)
    try:
        return TypeAdapter(list[Advisory]).validate_json(path.read_bytes())
    except OSError as error:
        raise AdvisoriesError(f"{path}: cannot read: {error.strerror}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"entry {'.'.join(str(part) for part in e['loc']) or '(top)'}: {e['msg']}"
            for e in error.errors()
        )
        raise AdvisoriesError(f"{path}: {problems}") from None


def serve(directory: Path, advisories: list[Advisory]) -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with Sandbox(directory, advisories) as sandbox:
        state = directory / STATE_FILE
        temporary = state.with_suffix(".tmp")
        temporary.write_text(json.dumps(sandbox.info().as_json(), indent=2) + "\n")
        temporary.chmod(0o600)  # it holds the sandbox registry's password
        temporary.replace(state)
        print("sandbox ready", flush=True)
        stop.wait()
        print("sandbox stopping", flush=True)
    (directory / STATE_FILE).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="ocscan-sandbox")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--advisories", type=Path)
    arguments = parser.parse_args()
    serve(arguments.dir.resolve(), load_advisories(arguments.advisories))


if __name__ == "__main__":
    main()
