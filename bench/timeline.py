"""When each scanner pod was created, started, finished and removed, as the API saw it.

Fed by the emulator's store subscription (in the thread that writes, so it stays tiny).
It splits ocscan's time per scan into what Kubernetes costs (pod start, teardown) and
what Trivy costs (the container's run).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

from ocscan.sandbox.kube.store import EventType, WatchEvent


@dataclass(frozen=True)
class Phases:
    """Medians in seconds over every scanner pod of the runs observed."""

    pods: int
    start: float  # created -> container running (kubelet sync, Secret, process start)
    run: float  # container running -> pod Succeeded/Failed (the scan itself)
    teardown: float  # Succeeded/Failed -> pod object gone (log read, delete)
    secret_alive: float  # temporary Secret created -> deleted


class ScannerTimeline:
    """A store subscriber for the Pods and Secrets of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._pods: dict[str, dict[str, float]] = {}
        self._secrets: dict[str, dict[str, float]] = {}

    def __call__(self, event: WatchEvent) -> None:
        obj = event.object
        meta = obj.get("metadata") or {}
        if meta.get("namespace") != self.namespace:
            return
        now = time.perf_counter()
        with self._lock:
            book = self._secrets if obj.get("kind") == "Secret" else self._pods
            marks = book.setdefault(meta.get("uid", ""), {})
            if event.type is EventType.ADDED:
                marks.setdefault("created", now)
            elif event.type is EventType.DELETED:
                marks.setdefault("deleted", now)
            status = obj.get("status") or {}
            for container in status.get("containerStatuses") or ():
                if set(container.get("state") or {}) & {"running", "terminated"}:
                    marks.setdefault("started", now)
            if status.get("phase") in ("Succeeded", "Failed"):
                marks.setdefault("finished", now)

    def phases(self) -> Phases:
        with self._lock:
            pods = [m for m in self._pods.values() if {"created", "deleted"} <= set(m)]
            secrets = [m for m in self._secrets.values() if {"created", "deleted"} <= set(m)]

        def median(marks: list[dict[str, float]], start: str, end: str) -> float:
            spans = [m[end] - m[start] for m in marks if start in m and end in m]
            return statistics.median(spans) if spans else float("nan")

        return Phases(
            pods=len(pods),
            start=median(pods, "created", "started"),
            run=median(pods, "started", "finished"),
            teardown=median(pods, "finished", "deleted"),
            secret_alive=median(secrets, "created", "deleted"),
        )
