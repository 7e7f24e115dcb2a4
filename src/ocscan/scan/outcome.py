"""What scanning one target gave. Pure data shared by the executor and the reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocscan.scan.failure import ScanFailure
from ocscan.scan.report import ScanResult


@dataclass(slots=True)
class ScanOutcome:
    """A result, or a failure; and which credentials were tried, in order."""

    result: ScanResult | None = None
    failure: ScanFailure | None = None
    attempts: list[str] = field(default_factory=list)  # "secret ns/name (key host)" per try
    seconds: float = 0.0  # wall time of all attempts
