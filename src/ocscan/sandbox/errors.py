"""Errors of the local sandbox stack."""

from __future__ import annotations

from ocscan.errors import OcscanError


class SandboxError(OcscanError):
    """A sandbox part could not be built, started, reached or stopped."""


class ProcessStartError(SandboxError):
    """A background process exited or never answered while starting."""

    def __init__(self, name: str, reason: str, log_tail: str = "") -> None:
        self.name = name
        self.reason = reason
        self.log_tail = log_tail
        detail = f"\n--- last lines of its log ---\n{log_tail}" if log_tail else ""
        super().__init__(f"{name} did not start: {reason}{detail}")


class RegistryRequestError(SandboxError):
    """A registry answered an HTTP request with an error; the message is the registry's own."""

    def __init__(self, action: str, status_code: int, registry_message: str) -> None:
        self.action = action
        self.status_code = status_code
        self.registry_message = registry_message
        super().__init__(f"{action} failed: HTTP {status_code}: {registry_message}")


class TrivyNotFoundError(SandboxError):
    """No ``trivy`` binary on PATH nor next to the running Python."""
