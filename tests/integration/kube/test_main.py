"""``python -m ocscan.sandbox.kube`` serves in its own process until SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml


def test_module_entry_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "ocscan.sandbox.kube", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == url
        assert kubeconfig.stat().st_mode & 0o077 == 0  # it holds a token
        token = config["users"][0]["user"]["token"]
        answer = httpx.get(f"{url}/api/v1/namespaces", headers={"Authorization": f"Bearer {token}"})
        assert {i["metadata"]["name"] for i in answer.json()["items"]} >= {"default"}
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
