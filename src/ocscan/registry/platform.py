"""Image platforms: which variant of a multi-platform image (an OCI index) a node runs.

Pure. A platform is written ``os/architecture[/variant]`` (``linux/arm64``), as in OCI
index entries, ``docker --platform`` and Trivy's ``--platform``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocscan.errors import OcscanError

_PART = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class InvalidPlatformError(OcscanError):
    """A platform string that is not ``os/architecture[/variant]``."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid platform {text!r}: {reason}")


@dataclass(frozen=True, slots=True, order=True)
class Platform:
    """An OS and CPU architecture, and the CPU variant where it matters (``arm/v7``)."""

    os: str
    architecture: str
    variant: str | None = None

    def __post_init__(self) -> None:
        for part in (self.os, self.architecture, self.variant or "x"):
            if not _PART.match(part):
                raise InvalidPlatformError(str(self), f"{part!r} is not a platform name part")

    def __str__(self) -> str:
        parts = (self.os, self.architecture, self.variant)
        return "/".join(part for part in parts if part)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64`` or ``linux/arm/v7``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidPlatformError(text, "expected os/architecture[/variant]")
        return cls(*parts)
