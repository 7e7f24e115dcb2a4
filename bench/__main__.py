"""``python -m bench``: run the benchmarks and write BENCHMARKS.md (and, on request, JSON).

Defaults are the issue's: discovery at 1,000, 5,000 and 10,000 pods (20 pods per
namespace, 5 per workload, 50 images), 3 runs each, plus the 10,000-pod cluster listed
namespace by namespace; the real cycle with 60 workloads over 12 images at concurrency 4,
5 runs. ``--heavy-runs`` adds the cycle once more with heavier images. Smaller values keep
the harness quick to smoke-test.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agentproc import REPO_ROOT
from bench.cluster import ClusterShape
from bench.discovery import DiscoveryResult, run_discovery
from bench.machine import describe
from bench.realcycle import RealCycleResult, run_real_cycle
from bench.report import render, verdicts


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[1000, 5000, 10000],
        help="pod counts of the discovery benchmark (comma-separated)",
    )
    parser.add_argument("--images", type=int, default=50, help="images of the discovery clusters")
    parser.add_argument("--runs", type=int, default=3, help="runs per discovery size")
    parser.add_argument(
        "--no-namespace-scope",
        action="store_true",
        help="skip the largest cluster listed namespace by namespace",
    )
    parser.add_argument("--cycle-workloads", type=int, default=60)
    parser.add_argument("--cycle-images", type=int, default=12)
    parser.add_argument("--cycle-namespaces", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--cycle-runs", type=int, default=5, help="0 skips the real cycle")
    parser.add_argument(
        "--heavy-files",
        type=int,
        default=10_000,
        help="npm manifests per image of the heavier-image cycle",
    )
    parser.add_argument(
        "--heavy-runs",
        type=int,
        default=0,
        help="runs of a second cycle (ocscan and the lower bound) with heavier images",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also profile one agent run of each measurement into DIR (pyinstrument)",
    )
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    discovery: list[DiscoveryResult] = []
    for index, pods in enumerate(args.sizes):
        shape = ClusterShape.scaled(pods, images=args.images)
        largest = index == len(args.sizes) - 1
        scopes = (
            ("cluster",) if args.no_namespace_scope or not largest else ("cluster", "namespaces")
        )
        log(
            f"discovery: {shape.pods} pods, {shape.namespaces} namespaces, "
            f"{shape.workloads} workloads, {shape.images} images"
        )
        discovery += run_discovery(
            shape, runs=args.runs, scopes=scopes, profile_dir=args.profile, log=log
        )
    cycle: RealCycleResult | None = None
    heavy: RealCycleResult | None = None
    cycle_options: dict[str, Any] = {
        "workloads": args.cycle_workloads,
        "images": args.cycle_images,
        "concurrency": args.concurrency,
        "namespaces": args.cycle_namespaces,
        "profile_dir": args.profile,
    }
    if args.cycle_runs > 0:
        log(
            f"real cycle: {args.cycle_workloads} workloads, {args.cycle_images} images, "
            f"concurrency {args.concurrency}, {args.cycle_runs} runs"
        )
        with tempfile.TemporaryDirectory(prefix="ocscan-bench-") as directory:
            cycle = run_real_cycle(Path(directory), runs=args.cycle_runs, log=log, **cycle_options)
        if args.heavy_runs > 0:
            log(
                f"real cycle with heavier images ({args.heavy_files} npm manifests each), "
                f"{args.heavy_runs} runs"
            )
            with tempfile.TemporaryDirectory(prefix="ocscan-bench-") as directory:
                heavy = run_real_cycle(
                    Path(directory),
                    runs=args.heavy_runs,
                    log=log,
                    image_files=args.heavy_files,
                    modes=("ocscan", "lower_bound"),
                    **cycle_options,
                )
    given = sys.argv[1:] if argv is None else argv
    command = f"python -m bench {shlex.join(given)}" if given else "make bench"
    machine = describe(REPO_ROOT)
    args.output.write_text(render(machine, discovery, cycle, heavy, command))
    log(f"wrote {args.output} in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        document = {
            "machine": machine,
            "discovery": [result.as_json() for result in discovery],
            "real_cycle": cycle.as_json() if cycle is not None else None,
            "heavy_cycle": heavy.as_json() if heavy is not None else None,
            "targets": [vars(v) for v in verdicts(discovery, cycle, heavy)],
        }
        args.json.write_text(json.dumps(document, indent=2))
    for verdict in verdicts(discovery, cycle, heavy):
        log(f"  {verdict.mark:>12}: {verdict.target} ({verdict.measured})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
