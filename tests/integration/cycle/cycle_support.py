"""Helpers of the cycle tests (a module, not conftest: conftest modules do not import well)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from ocscan.config import Config, parse_config
from ocscan.cycle import run_cycle
from ocscan.kube.client import make_client
from ocscan.report.model import CycleReport
from ocscan.sandbox.kube.store import WatchEvent
from ocscan.sandbox.stack import Sandbox


def sandbox_config(sandbox: Sandbox, **overrides: Any) -> Config:
    document = sandbox.ocscan_config()
    for section, values in overrides.items():
        document.setdefault(section, {}).update(values)
    return parse_config(document)


def run(sandbox: Sandbox, config: Config) -> CycleReport:
    """One cycle through lightkube over real HTTP, as ``ocscan scan`` runs it."""

    async def cycle() -> CycleReport:
        client = make_client(sandbox.kubeconfig)
        try:
            return await run_cycle(client, config)
        finally:
            await client.close()

    return asyncio.run(cycle())


def container(report: CycleReport, namespace: str, name: str) -> Any:
    """The single container entry of workload ``name`` in ``namespace``."""
    (workload,) = [w for w in report.workloads if (w.namespace, w.name) == (namespace, name)]
    (entry,) = workload.containers
    return entry


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


class ObjectRecorder:
    """Every object version written to the store, as JSON text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.versions: list[tuple[str, str]] = []  # (kind, json)

    def __call__(self, event: WatchEvent) -> None:
        text = json.dumps(event.object)
        with self._lock:
            self.versions.append((event.object.get("kind", ""), text))

    def of_kind(self, *kinds: str) -> list[str]:
        with self._lock:
            return [text for kind, text in self.versions if kind in kinds]

    def kinds(self) -> set[str]:
        with self._lock:
            return {kind for kind, _ in self.versions}
