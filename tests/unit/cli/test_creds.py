"""``ocscan creds match``: the CLI contract scripts depend on, through the real entry point."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ocscan.cli import app

CANARY_USER = "canary-user-51d0"
CANARY = "canary-pw-e8c2b7"
CANARY_AUTH = base64.b64encode(f"{CANARY_USER}:{CANARY}".encode()).decode()
OCSCAN = Path(sys.executable).with_name("ocscan")

runner = CliRunner()


def entry() -> dict[str, str]:
    return {"auth": CANARY_AUTH, "email": "ops@example.com"}


def write(tmp_path: Path, document: Any, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def match(config: Path, image: str) -> Any:
    result = runner.invoke(app, ["creds", "match", "--docker-config", str(config), image])
    assert CANARY not in result.output and CANARY_USER not in result.output
    assert CANARY_AUTH not in result.output
    return result


DOCKERCONFIGJSON = {
    "auths": {
        "https://index.docker.io/v1/": entry(),
        "registry.example.com:5000": entry(),
        "registry.example.com:5000/team": entry(),
        "*.example.com:5000": entry(),
        "quay.io": entry(),
    },
    "credsStore": "desktop",
}


@pytest.mark.parametrize(
    ("image", "keys"),
    [
        (
            "registry.example.com:5000/team/app:1.0",
            ["registry.example.com:5000/team", "registry.example.com:5000", "*.example.com:5000"],
        ),
        (
            "registry.example.com:5000/other/app",
            ["registry.example.com:5000", "*.example.com:5000"],
        ),
        ("mirror.example.com:5000/app", ["*.example.com:5000"]),
        ("nginx:1.25", ["https://index.docker.io/v1/"]),
        ("quay.io/coreos/etcd@sha256:" + "a" * 64, ["quay.io"]),
        ("registry.example.com/team/app", []),  # another port: nothing applies
        ("ghcr.io/org/app", []),
    ],
)
def test_prints_applicable_keys_as_written_in_try_order(
    tmp_path: Path, image: str, keys: list[str]
) -> None:
    result = match(write(tmp_path, DOCKERCONFIGJSON), image)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == keys
    assert result.stderr == ""


def test_empty_array_is_printed_exactly(tmp_path: Path) -> None:
    result = match(write(tmp_path, DOCKERCONFIGJSON), "ghcr.io/org/app")
    assert (result.exit_code, result.stdout) == (0, "[]\n")


def test_bare_dockercfg_map_is_detected(tmp_path: Path) -> None:
    config = write(tmp_path, {"https://quay.io/v1/": entry(), "ghcr.io": entry()}, ".dockercfg")
    result = match(config, "quay.io/team/app")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["https://quay.io/v1/"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ('{"auths": {"quay.io": {"auth": "' + CANARY_AUTH + '"}', "not valid JSON"),
        ({"auths": {"quay.io": {"auth": CANARY + "!"}}}, "auth is not valid base64"),
        ({"auths": {"quay.io": {"password": CANARY, "username": 7}}}, "username is not a string"),
        ({"auths": {f"https://u:{CANARY}@quay.io": {}}}, "user information"),
        ({"auths": {"quay.io": None}}, "is not an object"),
        ("[]", "not a JSON object"),
        ("", "empty"),
    ],
)
def test_malformed_file_exits_2_with_one_line_reason(
    tmp_path: Path, document: Any, reason: str
) -> None:
    config = write(tmp_path, document)
    result = match(config, "quay.io/app")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert reason in result.stderr
    assert str(config) in result.stderr


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("quay.io/Team/app", "must be lower-case"),
        ("quay.io/a//b", "empty path component"),
        ("quay.io/app@sha256:beef", "invalid digest"),
        ("", "empty"),
    ],
)
def test_invalid_image_exits_2_with_one_line_reason(
    tmp_path: Path, image: str, reason: str
) -> None:
    result = match(write(tmp_path, DOCKERCONFIGJSON), image)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert reason in result.stderr
    assert repr(image) in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = match(missing, "quay.io/app")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"ocscan creds match: cannot read {missing}: No such file or directory"
    ]


def test_directory_as_file_exits_2(tmp_path: Path) -> None:
    result = match(tmp_path, "quay.io/app")
    assert result.exit_code == 2
    assert "cannot read" in result.stderr and len(result.stderr.splitlines()) == 1


def test_installed_entry_point(tmp_path: Path) -> None:
    """The console script the package installs, run as a separate process."""
    assert OCSCAN.is_file(), f"{OCSCAN} missing: run `pip install -e .[dev]`"
    config = write(tmp_path, DOCKERCONFIGJSON)
    done = subprocess.run(
        [OCSCAN, "creds", "match", "--docker-config", config, "registry.example.com:5000/team/x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "registry.example.com:5000/team",
        "registry.example.com:5000",
        "*.example.com:5000",
    ]
    assert CANARY not in done.stdout + done.stderr and CANARY_USER not in done.stdout + done.stderr

    broken = write(tmp_path, {"auths": {"quay.io": {"auth": CANARY_AUTH[:-3]}}}, "broken.json")
    done = subprocess.run(
        [OCSCAN, "creds", "match", "--docker-config", broken, "quay.io/app"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and str(broken) in done.stderr
    assert CANARY not in done.stderr and CANARY_USER not in done.stderr
