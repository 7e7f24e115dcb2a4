"""``ocscan agent`` refuses a bad configuration before it starts: exit status 2, and a JSON log
line naming the key's path. Nothing reaches the cluster (no Lease) and nothing listens."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_support import agent_document, lease_spec, write_yaml

from ocscan.sandbox.stack import Sandbox

EXIT_BAD_CONFIG = 2


def run_agent(config_file: Path, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocscan", "agent", "--config", str(config_file),
         "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def error_of(done: subprocess.CompletedProcess[str]) -> str:
    """The message of the single log line: every line must be JSON."""
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    (entry,) = entries
    assert entry["level"] == "ERROR"
    message: str = entry["message"]
    return message


def break_key(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, key = path.split(".")
    for parent in parents:
        document = document.setdefault(parent, {})
    document[key] = value


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("agent.schedul", "0 * * * *", "Extra inputs are not permitted"),
        ("agent.listen_port", 70000, "less than or equal to 65535"),
        ("agent.schedule", "*/5 * * *", "has 4 fields"),
        ("agent.schedule", "0 0 30 2 *", "not a valid cron expression"),
        ("leader_election.renew_seconds", 3, "more than half of lease_duration_seconds"),
        ("sinks.gitlab", {"url": "https://gitlab.example"}, None),
        ("scanner.concurrency", "many", "valid integer"),
    ],
)
def test_a_bad_key_stops_the_agent_naming_its_path(
    sandbox: Sandbox, tmp_path: Path, path: str, value: Any, reason: str | None
) -> None:
    lease = f"config-{abs(hash((path, str(value)))) % 10**8}"
    document = agent_document(sandbox, ["nowhere"], lease=lease)
    break_key(document, path, value)
    config_file = write_yaml(tmp_path / "agent.yaml", document)

    done = run_agent(config_file, sandbox.kubeconfig)

    assert done.returncode == EXIT_BAD_CONFIG, done.stderr
    message = error_of(done)
    assert message.startswith(f"bad configuration: {config_file}: ")
    if path == "sinks.gitlab":  # every missing key is named
        for key in ("agent_id", "token_file", "kas_secret_file"):
            assert f"sinks.gitlab.{key}: Field required" in message
    else:
        assert f"{path}: " in message and reason in message  # type: ignore[operator]
    assert done.stdout == ""
    with pytest.raises(Exception, match="not found"):
        lease_spec(sandbox, lease)  # never started


def test_missing_files_and_a_busy_port_are_configuration_errors(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    missing = run_agent(tmp_path / "absent.yaml", sandbox.kubeconfig)
    assert missing.returncode == EXIT_BAD_CONFIG
    assert "absent.yaml: cannot read: No such file or directory" in error_of(missing)

    document = agent_document(sandbox, ["nowhere"], lease="config-folder")
    document["sinks"]["json_file"] = str(tmp_path / "no-such-folder" / "cycle.json")
    done = run_agent(write_yaml(tmp_path / "folder.yaml", document), sandbox.kubeconfig)
    assert done.returncode == EXIT_BAD_CONFIG
    assert "sinks.json_file: folder" in error_of(done)

    document = agent_document(sandbox, ["nowhere"], lease="config-token")
    document["sinks"]["gitlab"] = {
        "url": "https://gitlab.example", "agent_id": "1",
        "token_file": str(tmp_path / "no-token"), "kas_secret_file": str(tmp_path / "no-kas"),
    }  # fmt: skip
    done = run_agent(write_yaml(tmp_path / "gitlab.yaml", document), sandbox.kubeconfig)
    assert done.returncode == EXIT_BAD_CONFIG
    assert "sinks.gitlab: cannot read the agent token file" in error_of(done)

    with socket.create_server(("127.0.0.1", 0)) as busy:
        document = agent_document(sandbox, ["nowhere"], lease="config-port")
        document["agent"]["listen_port"] = busy.getsockname()[1]
        done = run_agent(write_yaml(tmp_path / "port.yaml", document), sandbox.kubeconfig)
    assert done.returncode == EXIT_BAD_CONFIG
    message = error_of(done)
    assert "agent.listen_port" in message and "Address already in use" in message
    with pytest.raises(Exception, match="not found"):
        lease_spec(sandbox, "config-port")
