"""Prometheus metrics of the agent, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ocscan.report.model import SCANNED, CycleReport
from ocscan.scan.outcome import ScanOutcome
from ocscan.scan.report import Severity

DURATION_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class AgentMetrics:
    """Every metric the agent exports; :meth:`observe_cycle` updates them from a report."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.scans = Counter(
            "ocscan_scans",
            "Containers by scan result: scanned, or the failure kind.",
            ["result"],
            registry=self.registry,
        )
        self.scan_duration = Histogram(
            "ocscan_scan_duration_seconds",
            "Wall time of one image scan in its scanner pod.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.cycle_duration = Histogram(
            "ocscan_cycle_duration_seconds",
            "Wall time of a whole scan cycle.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.vulnerabilities = Gauge(
            "ocscan_vulnerabilities",
            "Vulnerabilities found in the last cycle, by severity.",
            ["severity"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "ocscan_last_successful_cycle_timestamp_seconds",
            "Unix time at which the last cycle that scanned every namespace fully ended.",
            registry=self.registry,
        )
        self.temporary_secrets = Gauge(
            "ocscan_temporary_secrets",
            "Temporary credential Secrets alive right now.",
            registry=self.registry,
        )
        self.leader = Gauge(
            "ocscan_leader", "1 while this replica holds the lease.", registry=self.registry
        )
        for severity in Severity:
            self.vulnerabilities.labels(severity=severity.value).set(0)
        self.scans.labels(result=SCANNED)

    def scan_finished(self, outcome: ScanOutcome) -> None:
        self.scan_duration.observe(outcome.seconds)

    def secret_count(self, alive: int) -> None:
        self.temporary_secrets.set(alive)

    def observe_cycle(self, report: CycleReport) -> None:
        cycle = report.cycle
        for result, count in cycle.by_status.items():
            self.scans.labels(result=result).inc(count)
        for severity in Severity:
            self.vulnerabilities.labels(severity=severity.value).set(
                cycle.by_severity.get(severity.value, 0)
            )
        self.cycle_duration.observe(cycle.duration_seconds)
        if cycle.complete:
            self.last_success.set(cycle.finished_at.timestamp())
