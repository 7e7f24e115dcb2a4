"""Shared test configuration.

Under CI (``CI=true``) a missing prerequisite is a failure, never a skip: use
:func:`require_binary` instead of ``pytest.skip`` for anything the suite needs installed.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_binary(name: str) -> str:
    """The path of ``name`` on PATH; skip locally, fail in CI, when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
