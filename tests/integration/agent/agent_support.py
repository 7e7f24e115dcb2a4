"""Helpers of the agent tests (a module, not conftest: conftest modules do not import well).

The GitLab agent token and KAS secret, and every registry password, are canaries: tests
assert that none of them ever shows up in the agent's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ocscan.agent.runner import Agent
from ocscan.config import Config, parse_config
from ocscan.deliver import Delivery
from ocscan.kube.client import make_client
from ocscan.report.model import CycleReport
from ocscan.sandbox.gitlab import GitLabEmulator
from ocscan.sandbox.kube.auth import AUTHENTICATED, MASTERS, Identity
from ocscan.sandbox.stack import AGENT_NAMESPACE, Sandbox

AGENT_ID = "7"
AGENT_TOKEN = "glagent-CANARY-agent-token-5d1c9e"
KAS_SECRET = b"CANARY-kas-secret-of-the-agent-t!"
MANAGED = "app.kubernetes.io/managed-by=ocscan"


@dataclass(frozen=True)
class GitLabFiles:
    """A running GitLab emulator and the files the agent reads its credentials from."""

    emulator: GitLabEmulator
    token_file: Path
    kas_secret_file: Path

    def sink(self) -> dict[str, str]:
        """The ``sinks.gitlab`` section for this emulator."""
        return {
            "url": self.emulator.url,
            "agent_id": AGENT_ID,
            "token_file": str(self.token_file),
            "kas_secret_file": str(self.kas_secret_file),
        }


def agent_document(
    sandbox: Sandbox,
    namespaces: list[str],
    *,
    lease: str,
    schedule: str = "* * * * * *",
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """A configuration for the sandbox: scan ``namespaces`` every second by default, serve
    on a free loopback port, lead with a short lease; ``sections`` update it."""
    document = sandbox.ocscan_config()
    document["targets"] = {"namespaces": namespaces}
    document["agent"] = {
        "schedule": schedule,
        "run_at_start": True,
        "listen_host": "127.0.0.1",
        "listen_port": 0,
        "shutdown_grace_seconds": 10,
    }
    document["leader_election"] = {
        "lease_name": lease,
        "lease_duration_seconds": 4,
        "renew_seconds": 0.5,
    }
    document["sinks"] = {"vulnerability_reports": False}
    for section, values in sections.items():
        document.setdefault(section, {}).update(values)
    return document


def agent_config(sandbox: Sandbox, namespaces: list[str], **kwargs: Any) -> Config:
    return parse_config(agent_document(sandbox, namespaces, **kwargs))


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def user_kubeconfig(sandbox: Sandbox, user: str, path: Path) -> Path:
    """A kubeconfig of its own for ``user`` (an admin), so the request log tells who did what."""
    assert sandbox.kube is not None
    token = sandbox.kube.auth.issue(Identity(user, (MASTERS, AUTHENTICATED)))
    sandbox.kube.write_kubeconfig(path, token=token)
    return path


def lease_spec(sandbox: Sandbox, name: str) -> dict[str, Any]:
    assert sandbox.kube is not None
    store = sandbox.kube.store
    rtype = store.registry.for_kind("coordination.k8s.io/v1", "Lease")
    assert rtype is not None
    spec: dict[str, Any] = store.get(rtype, AGENT_NAMESPACE, name).get("spec", {})
    return spec


def delete(sandbox: Sandbox, kind: str, namespace: str, name: str) -> None:
    """Delete a workload as ``kubectl delete`` does (background propagation)."""
    assert sandbox.kube is not None
    store = sandbox.kube.store
    api_version = "apps/v1" if kind in ("Deployment", "StatefulSet", "DaemonSet") else "v1"
    rtype = store.registry.for_kind(api_version, kind)
    assert rtype is not None
    store.delete(rtype, namespace, name)


def pod_count(sandbox: Sandbox, namespace: str) -> int:
    assert sandbox.kube is not None
    store = sandbox.kube.store
    rtype = store.registry.for_kind("v1", "Pod")
    assert rtype is not None
    return len(store.list(rtype, namespace))


async def eventually(predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Wait until ``predicate()`` holds; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """The blocking twin of :func:`eventually`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Delivered:
    report: CycleReport
    sinks: dict[str, bool]


@dataclass
class AgentRun:
    """An in-process agent running in a task, and every cycle it delivered."""

    agent: Agent
    stop: asyncio.Event
    task: asyncio.Task[None]
    delivered: list[Delivered] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.agent.http_port is not None
        return self.agent.http_port

    async def cycle_started_after(self, moment: datetime, within: float = 30.0) -> Delivered:
        """The first delivered cycle that started after ``moment``."""

        def found() -> Delivered | None:
            return next((d for d in self.delivered if d.report.cycle.started_at > moment), None)

        await eventually(lambda: found() is not None, f"a cycle started after {moment}", within)
        result = found()
        assert result is not None
        return result

    async def cycles(self, count: int, within: float = 30.0) -> list[Delivered]:
        await eventually(lambda: len(self.delivered) >= count, f"{count} cycles", within)
        return self.delivered[:count]

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.shield(self.task), 30)


@asynccontextmanager
async def running_agent(
    kubeconfig: Path, config: Config, *, identity: str
) -> AsyncIterator[AgentRun]:
    """Run an :class:`Agent` with every sink of ``config``; stopped and awaited on exit."""
    client = make_client(kubeconfig)
    delivery = Delivery(client, config)
    delivered: list[Delivered] = []

    async def deliver(report: CycleReport) -> dict[str, bool]:
        sinks = await delivery.deliver(report)
        delivered.append(Delivered(report, sinks))
        return sinks

    agent = Agent(client, config, deliver=deliver, identity=identity)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name=f"agent-{identity}")
    run = AgentRun(agent, stop, task, delivered)
    try:
        await eventually(lambda: agent.http_port is not None or task.done(), "the endpoints")
        if task.done():
            task.result()  # raises what stopped it
        yield run
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await client.close()


class Metrics:
    """One scrape of ``/metrics``, parsed by the Prometheus client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self._samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self._samples.get((name, frozenset(labels.items())))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Every sample of ``name`` keyed by the value of ``label``."""
        return {
            dict(labels)[label]: value
            for (sample, labels), value in self._samples.items()
            if sample == name and label in dict(labels)
        }


async def scrape(port: int) -> Metrics:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return Metrics(response.text)


async def probe(port: int, path: str) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
    return response.status_code


def expected_scans(reports: list[CycleReport]) -> dict[str, float]:
    """``ocscan_scans_total`` by result after ``reports``: containers by status, summed."""
    totals: dict[str, float] = {}
    for report in reports:
        for status, count in report.cycle.by_status.items():
            totals[status] = totals.get(status, 0) + count
    return totals


class AgentProcess:
    """``python -m ocscan agent`` in a process of its own; stderr parsed line by line.

    Use as a context manager: the process is killed by its PID on exit if still running.
    """

    def __init__(self, config_file: Path, kubeconfig: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ocscan", "agent", "--config", str(config_file),
             "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def entries(self) -> list[dict[str, Any]]:
        """The log lines parsed as JSON (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in list(self.lines)]

    def wait_for_entry(self, predicate: Callable[[dict[str, Any]], bool], what: str,
                       timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        def found() -> dict[str, Any] | None:
            for line in list(self.lines):
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and predicate(entry):
                        return entry
            return None

        def ready() -> bool:
            if found() is None and self.process.poll() is not None:
                self._reader.join(5)
                if found() is None:
                    raise AssertionError(
                        f"the agent exited ({self.process.returncode}) before {what}:\n"
                        + "\n".join(self.lines)
                    )
            return found() is not None

        wait_until(ready, what, timeout)
        entry = found()
        assert entry is not None
        return entry

    @property
    def port(self) -> int:
        entry = self.wait_for_entry(lambda e: "port" in e, "the endpoints")
        return int(entry["port"])

    def signal(self, signum: signal.Signals = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def stdout(self) -> bytes:
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
