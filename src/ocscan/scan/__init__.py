"""Scanning one image with Trivy: command lines, a local runner, reports and failures."""

from ocscan.scan.failure import FailureKind, ScanFailed, ScanFailure, classify_failure
from ocscan.scan.report import (
    Cvss,
    Finding,
    ImageInfo,
    OperatingSystem,
    ReportError,
    ScanResult,
    Severity,
    parse_report,
)
from ocscan.scan.runner import find_trivy, scan_image
from ocscan.scan.trivy_command import (
    DEFAULT_TIMEOUT,
    ClientServer,
    ScanMode,
    Standalone,
    TrivyCommand,
    build_trivy_command,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientServer",
    "Cvss",
    "FailureKind",
    "Finding",
    "ImageInfo",
    "OperatingSystem",
    "ReportError",
    "ScanFailed",
    "ScanFailure",
    "ScanMode",
    "ScanResult",
    "Severity",
    "Standalone",
    "TrivyCommand",
    "build_trivy_command",
    "classify_failure",
    "find_trivy",
    "parse_report",
    "scan_image",
]
