"""BENCHMARKS.md: the measurements as tables, each target met or missed."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.discovery import CLUSTER_LISTS, LISTED_KINDS, DiscoveryResult
from bench.realcycle import RealCycleResult

WALL_TARGET_SECONDS = 2.0
RSS_TARGET_MIB = 300.0
TARGET_PODS = 10_000
OVERHEAD_TARGET = 1.25
NOTES = Path(__file__).resolve().parent / "NOTES.md"


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def mark(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def verdicts(
    discovery: list[DiscoveryResult],
    cycle: RealCycleResult | None,
    heavy: RealCycleResult | None = None,
) -> list[Verdict]:
    """Each target of the issue against this run's numbers."""
    found: list[Verdict] = []
    big = [r for r in discovery if r.scope == "cluster" and r.shape.pods >= TARGET_PODS]
    if big:
        result = big[-1]
        wall, rss = result.median("wall_seconds"), result.maximum("peak_rss_mib")
        found.append(
            Verdict(
                f"discovery + planning of {result.shape.pods:,} pods within "
                f"{WALL_TARGET_SECONDS:g} s wall and {RSS_TARGET_MIB:g} MiB RSS",
                f"{wall:.2f} s, {rss:.0f} MiB",
                wall <= WALL_TARGET_SECONDS and rss <= RSS_TARGET_MIB,
            )
        )
    else:
        found.append(Verdict(f"discovery + planning of {TARGET_PODS:,} pods", "", None))
    if discovery:
        worst = max(discovery, key=lambda r: r.requests / r.request_bound)
        found.append(
            Verdict(
                "API requests per cycle <= (listed kinds x namespaces) + the Node list "
                "+ one GET per pull secret",
                f"at most {worst.requests:,} of {worst.request_bound:,} "
                f"({worst.shape.pods:,} pods, {worst.scope} scope)",
                all(r.requests <= r.request_bound for r in discovery),
            )
        )
    scans_ok = [int(r.median("targets")) == r.expected_targets for r in discovery]
    measured = [
        f"discovery: {int(r.median('targets'))} of {r.expected_targets}" for r in discovery[-1:]
    ]
    if cycle is not None:
        scans_ok.append(cycle.scans["ocscan"] == cycle.images)
        measured.append(f"real cycle: {cycle.scans['ocscan']} scans of {cycle.images} images")
    found.append(
        Verdict(
            "scans = unique running digests",
            "; ".join(measured),
            all(scans_ok) if scans_ok else None,
        )
    )
    if cycle is not None:
        ratio = cycle.ratio("ocscan", "lower_bound")
        measured_ratio = f"ocscan / lower bound = {ratio:.2f}"
        if heavy is not None:
            measured_ratio += (
                f" ({heavy.ratio('ocscan', 'lower_bound'):.2f} with the heavier images below)"
            )
        found.append(
            Verdict(
                f"real cycle at most {OVERHEAD_TARGET - 1:.0%} above the lower bound",
                measured_ratio,
                ratio <= OVERHEAD_TARGET,
            )
        )
    else:
        found.append(Verdict("real cycle overhead", "", None))
    return found


def _discovery_table(results: list[DiscoveryResult]) -> list[str]:
    lines = [
        "| pods | namespaces | workloads | images | scope "
        "| API requests (list pages + secret GETs) | bound | wall (median) | agent CPU "
        "| API server time | peak RSS (max) | scan targets / unique digests |",
        "|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        run = r.runs[0]
        lines.append(
            f"| {r.shape.pods:,} | {r.shape.namespaces:,} | {r.shape.workloads:,} "
            f"| {r.shape.images} | {r.scope} | {r.requests:,} ({run['list_pages']:,} + "
            f"{run['secret_gets']:,}) | {r.request_bound:,} | {r.median('wall_seconds'):.2f} s "
            f"| {r.median('cpu_seconds'):.2f} s | {r.median('server_seconds'):.2f} s "
            f"| {r.maximum('peak_rss_mib'):.0f} MiB | {int(r.median('targets'))} / "
            f"{r.expected_targets} |"
        )
    return lines


_MODE_NAMES = {
    "ocscan": "ocscan (one scan per digest and credentials)",
    "per_workload": "per-workload baseline (one scan per workload)",
    "lower_bound": "lower bound (direct `trivy image` client runs)",
}


def _cycle_table(cycle: RealCycleResult) -> list[str]:
    lines = [
        "| mode | scans | wall (median) | runs (s) | / lower bound (median of the runs) |",
        "|---|---:|---:|---|---:|",
    ]
    for mode in cycle.modes:
        runs = ", ".join(f"{s:.2f}" for s in cycle.seconds(mode))
        lines.append(
            f"| {_MODE_NAMES[mode]} | {cycle.scans[mode]} | {cycle.median(mode):.2f} s "
            f"| {runs} | {cycle.ratio(mode, 'lower_bound'):.2f} |"
        )
    return lines


def _cpu_table(cycle: RealCycleResult) -> list[str]:
    parts = ("scanners", "agent", "cluster", "trivy_server", "registry")
    lines = [
        "| mode | Trivy clients (scanners) | agent | emulated cluster (API server, "
        "controllers, kubelet) | Trivy server | registry | total |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in cycle.modes:
        cells = [cycle.median(mode, f"cpu_{part}") for part in parts]
        total = statistics.median(sum(run[f"cpu_{p}"] for p in parts) for run in cycle.runs[mode])
        lines.append(
            f"| {mode} | " + " | ".join(f"{c:.2f} s" for c in cells) + f" | {total:.2f} s |"
        )
    return lines


def _phases(cycle: RealCycleResult) -> list[str]:
    lines = [
        "| mode | scanner pods | pod start | scan in pod | teardown | temporary Secret alive |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, phases in cycle.phases.items():
        lines.append(
            f"| {mode} | {phases.pods} | {phases.start * 1000:.0f} ms | {phases.run * 1000:.0f} ms "
            f"| {phases.teardown * 1000:.0f} ms | {phases.secret_alive * 1000:.0f} ms |"
        )
    direct = statistics.median(cycle.direct_scan_seconds)
    lines.append(f"| lower bound | - | - | {direct * 1000:.0f} ms (one direct run) | - | - |")
    return lines


def render(
    machine: dict[str, str],
    discovery: list[DiscoveryResult],
    cycle: RealCycleResult | None,
    heavy: RealCycleResult | None,
    command: str,
) -> str:
    """The whole BENCHMARKS.md."""
    out = [
        "# Benchmarks",
        "",
        f"Written by `{command}` (`bench/`); every number below comes from that run.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *(f"| {v.target} | {v.measured} | {v.mark} |" for v in verdicts(discovery, cycle, heavy)),
        "",
    ]
    if discovery:
        shape = discovery[-1].shape
        out += [
            "## Discovery and planning at scale",
            "",
            "A synthetic cluster in the Kubernetes emulator (seeded through its object store), "
            "discovered by the agent's own code over lightkube and real HTTP, in a separate "
            "process: Deployments (via ReplicaSets), StatefulSets, DaemonSets and CronJobs "
            "(via Jobs) with sidecars and init containers; one in ten images a public Docker "
            f"Hub sidecar, the rest on {shape.registries} private registries with one username "
            "and password each; half the workloads name their pull secrets in the pod spec, "
            "half get them from their service account; half the namespaces hold one pull "
            "secret for every registry, half one per registry. `cluster` scope lists each "
            "kind once for all namespaces (the default); `namespaces` scope lists them "
            "namespace by namespace (`targets.namespaces`). Bound: "
            f"{len(LISTED_KINDS)} listed kinds ({', '.join(LISTED_KINDS)}) x namespaces + "
            f"{len(CLUSTER_LISTS)} cluster-wide list ({', '.join(CLUSTER_LISTS)}) + "
            "one GET per distinct pull secret. Wall time: discover, read the pull secrets, "
            "plan (process start, imports and client set-up excluded). Agent CPU: the agent "
            "process's CPU seconds in that time. API server time: the emulator's handling "
            "time summed over the requests (they overlap). Peak RSS: the agent process's "
            "high-water mark (VmHWM), interpreter and imports included.",
            "",
            *_discovery_table(discovery),
            "",
            "Every run is checked: the planned digests are exactly the running ones, every "
            "private image carries credentials, no pull secret is reported missing, every "
            "pull secret is read once by name and Secrets are never listed.",
            "",
        ]
    if cycle is not None:
        out += [
            "## A real cycle: ocscan, the per-workload baseline, the lower bound",
            "",
            f"The sandbox: real docker-registry, real Trivy server, the emulator with its "
            f"process kubelet, all on this machine. {cycle.workloads} Deployments over "
            f"{cycle.images} private images (the vulnerable sample image, each with a file of "
            f"its own) in {cycle.namespaces} namespaces ({cycle.pod_level_workloads} with a pod "
            f"pull secret, the others through their service account), scanner concurrency "
            f"{cycle.concurrency}. Every run of every mode in a fresh agent process, the order "
            f"rotating between runs; wall time from the cycle's start to its report (the "
            f"agent's client set-up excluded, as the long-running agent keeps its client). "
            f"Ratios are medians of the per-run ratios.",
            "",
            *_cycle_table(cycle),
            "",
            f"- ocscan / per-workload baseline: **{cycle.ratio('ocscan', 'per_workload'):.2f}**"
            f" (the baseline still shares one Trivy server; the peers also download the DB "
            f"per scan or namespace, which is not counted here)",
            f"- ocscan / lower bound: **{cycle.ratio('ocscan', 'lower_bound'):.2f}**",
            "",
            "CPU seconds of each party per cycle (medians; two cores in all):",
            "",
            *_cpu_table(cycle),
            "",
            "Where a scan's time goes (medians over every scanner pod, from the API's events):",
            "",
            *_phases(cycle),
            "",
        ]
    if heavy is not None:
        out += [
            "### The same cycle with heavier images",
            "",
            f"As above, but each image also holds {heavy.image_files:,} npm package manifests "
            f"(a Node.js application's dependencies) for Trivy to analyse: a direct scan takes "
            f"{statistics.median(heavy.direct_scan_seconds):.1f} s. The per-workload "
            f"baseline is left out.",
            "",
            *_cycle_table(heavy),
            "",
            f"- ocscan / lower bound: **{heavy.ratio('ocscan', 'lower_bound'):.2f}**",
            "",
            *_cpu_table(heavy),
            "",
            *_phases(heavy),
            "",
        ]
    if NOTES.is_file():
        out += [NOTES.read_text().rstrip(), ""]
    return "\n".join(out)
