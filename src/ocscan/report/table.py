"""Human-readable rendering of a cycle report for a terminal (rich)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ocscan.report.model import SCANNED, CycleReport
from ocscan.scan.report import ScanResult, Severity

SEVERITY_STYLES = {
    "CRITICAL": "bold red",
    "HIGH": "red",
    "MEDIUM": "yellow",
    "LOW": "cyan",
    "UNKNOWN": "dim",
}


def workloads_table(report: CycleReport) -> Table:
    """One row per (workload, container): status and vulnerability counts by severity."""
    table = Table(title="Workloads", title_justify="left", expand=False)
    for column in ("Namespace", "Workload", "Container", "Image", "Status"):
        table.add_column(column, overflow="fold")
    for severity in Severity:
        table.add_column(severity.value[:4], justify="right", style=SEVERITY_STYLES[severity])
    for workload in report.workloads:
        for container in workload.containers:
            counts = {s: 0 for s in Severity}
            for finding in container.vulnerabilities:
                counts[finding.severity] += 1
            style = "green" if container.status == SCANNED else "bold red"
            status = f"[{style}]{container.status}[/]"
            table.add_row(
                workload.namespace,
                f"{workload.kind}/{workload.name}",
                container.name,
                container.image,
                status,
                *(str(counts[s]) if container.status == SCANNED else "-" for s in Severity),
            )
    return table


def summary_tables(report: CycleReport) -> Group:
    """The cycle's totals by severity and by status (failure kind)."""
    cycle = report.cycle
    severities = Table(title="Vulnerabilities by severity", title_justify="left")
    severities.add_column("Severity")
    severities.add_column("Findings", justify="right")
    for severity in Severity:
        count = cycle.by_severity.get(severity.value, 0)
        severities.add_row(f"[{SEVERITY_STYLES[severity]}]{severity.value}[/]", str(count))
    statuses = Table(title="Containers by status", title_justify="left")
    statuses.add_column("Status")
    statuses.add_column("Containers", justify="right")
    for status, count in cycle.by_status.items():
        style = "green" if status == SCANNED else "bold red"
        statuses.add_row(f"[{style}]{status}[/]", str(count))
    return Group(severities, statuses)


def failures_text(report: CycleReport) -> list[str]:
    """One line per container that was not scanned: where, why, in the scanner's words."""
    return [
        f"[bold red]{container.status}[/] "
        + escape(
            f"{workload.namespace}/{workload.kind}/{workload.name} container {container.name}: "
            f"{container.error.message if container.error else ''}"
        )
        for workload in report.workloads
        for container in workload.containers
        if container.status != SCANNED
    ]


def print_report(report: CycleReport, console: Console) -> None:
    cycle = report.cycle
    console.print(workloads_table(report))
    failures = failures_text(report)
    if failures:
        console.print("\n[bold]Not scanned[/]")
        for line in failures:
            console.print(line, highlight=False)
        console.print()
    console.print(summary_tables(report))
    incomplete = [ns for ns, full in cycle.namespaces.items() if not full]
    coverage = (
        f"not fully scanned: {', '.join(incomplete)}"
        if incomplete
        else "every namespace fully scanned"
    )
    console.print(
        f"{cycle.workloads} workloads, {cycle.containers} containers, {cycle.images} images, "
        f"{cycle.scans} scans in {cycle.duration_seconds:.1f}s; {coverage}.",
        highlight=False,
    )


def print_findings(result: ScanResult, console: Console) -> None:
    """The findings of ``result`` as a table, most severe first, and a count line."""
    image = result.image
    console.print(Text.assemble(("Image: ", "bold"), image.reference))
    console.print(Text.assemble(("Digest: ", "bold"), image.digest or "unknown"))
    os_text = f"{image.os.family} {image.os.name}".strip() if image.os else "not detected"
    console.print(Text.assemble(("OS: ", "bold"), os_text))
    if result.findings:
        table = Table(show_lines=False, header_style="bold")
        for column in ("Severity", "Vulnerability", "Package", "Installed", "Fixed", "Title"):
            table.add_column(column, overflow="fold")
        for finding in sorted(result.findings, key=lambda f: f.severity.rank):
            table.add_row(
                Text(finding.severity.value, style=SEVERITY_STYLES[finding.severity]),
                # Text, not markup: advisory texts may hold brackets.
                Text(finding.vulnerability_id),
                Text(finding.package_name),
                Text(finding.installed_version),
                Text(finding.fixed_version or ""),
                Text(finding.title or ""),
            )
        console.print(table)
    counts = {s: sum(f.severity is s for f in result.findings) for s in Severity}
    breakdown = ", ".join(f"{s.value}: {n}" for s, n in counts.items())
    console.print(f"Total: {len(result.findings)} ({breakdown})")
