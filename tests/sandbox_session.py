"""A running sandbox for a test session or module: its prerequisites checked (a failure
under CI, a skip elsewhere), and stopped by PID however the tests end.

Import it as ``from sandbox_session import running_sandbox`` (``tests/`` is on the path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ocscan.sandbox.stack import Sandbox
from prerequisites import require_binary

SANDBOX_BINARIES = ("docker-registry", "htpasswd")


@contextlib.contextmanager
def running_sandbox(directory: Path, **options: Any) -> Iterator[Sandbox]:
    """A started :class:`Sandbox` in ``directory`` (``options`` as for its constructor)."""
    for binary in SANDBOX_BINARIES:
        require_binary(binary)
    with Sandbox(directory, **options) as stack:
        yield stack
