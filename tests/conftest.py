"""Shared test configuration. Prerequisite checks live in ``prerequisites.py``."""

from __future__ import annotations

from hypothesis import settings

from prerequisites import IN_CI

# A loaded 2-core CI machine must not fail a property on timing, and CI must be repeatable.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")
