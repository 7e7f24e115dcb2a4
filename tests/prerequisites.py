"""What the suite needs installed. Under CI (``CI=true``) a missing prerequisite is a
failure, never a skip; locally it skips, with the reason.

Import it as ``from prerequisites import require_binary`` (``tests/`` is on the path).
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_prerequisite(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str) -> str:
    """The path of ``name`` on PATH (``make test`` installs every one the suite uses)."""
    path = shutil.which(name)
    if path is None:
        missing_prerequisite(f"{name} is not installed (make test installs it)")
    return path
