"""``ocscan scan-image`` end to end: real registries, real Trivy, real Trivy server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ocscan.cli import app
from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.samples import SampleImage
from ocscan.sandbox.trivy import TrivyServer
from ocscan.sandbox.trivydb import SAMPLE_ADVISORIES

pytestmark = pytest.mark.integration

FINDING_FIELDS = {
    "vulnerability_id",
    "package_name",
    "installed_version",
    "fixed_version",
    "severity",
    "title",
    "description",
    "primary_url",
    "references",
    "cvss",
    "layer_digest",
}


def scan(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["scan-image", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def pairs(output: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["package_name"], f["vulnerability_id"]) for f in output["findings"]}


def creds(credential: RegistryCredential | None) -> tuple[str, str]:
    assert credential is not None
    return credential.reveal()


@pytest.fixture
def cache(trivy_cache: Path) -> list[str]:
    return ["--cache-dir", str(trivy_cache)]


@pytest.fixture
def both_registries(
    docker_config_file: Any,
    registry_a: RegistryServer,
    registry_b: RegistryServer,
    alice_credential: RegistryCredential,
    bob_credential: RegistryCredential,
) -> Path:
    """One docker config with alice's key for registry A and bob's for registry B."""
    path: Path = docker_config_file(
        {
            registry_b.address: bob_credential.reveal(),
            f"http://{registry_a.address}/v2/": alice_credential.reveal(),
        }
    )
    return path


def test_json_output_of_a_private_image(
    sample_image: SampleImage, both_registries: Path, cache: list[str]
) -> None:
    code, stdout, _ = scan(
        "--docker-config", str(both_registries), *cache, "--format", "json", sample_image.reference
    )

    assert code == 0
    output = json.loads(stdout)
    assert output["image"]["reference"] == sample_image.reference
    assert output["image"]["digest"] == sample_image.digest
    assert output["image"]["os"] == {"family": "alpine", "name": "3.19.1"}
    assert pairs(output) == sample_image.expected_findings
    for found in output["findings"]:
        assert set(found) == FINDING_FIELDS
        assert found["layer_digest"].startswith("sha256:")
        assert found["references"] == [
            f"https://nvd.nist.gov/vuln/detail/{found['vulnerability_id']}"
        ]


def test_table_output_is_sorted_by_severity_with_a_count_line(
    sample_image: SampleImage, both_registries: Path, cache: list[str]
) -> None:
    code, stdout, _ = scan("--docker-config", str(both_registries), *cache, sample_image.reference)

    assert code == 0
    severity = {a.id: a.severity for a in SAMPLE_ADVISORIES}
    expected: list[str] = [severity[v] for _, v in sample_image.expected_findings]
    order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
    shown = [word for line in stdout.splitlines() for word in line.split() if word in order]
    assert shown == sorted(expected, key=order.index)
    counts = ", ".join(f"{s}: {expected.count(s)}" for s in order)
    assert stdout.splitlines()[-1] == f"Total: {len(expected)} ({counts})"


def test_the_image_registry_never_sees_another_registry_username(
    sample_image: SampleImage,
    sample_image_b: SampleImage,
    registry_a: RegistryServer,
    registry_b: RegistryServer,
    both_registries: Path,
    cache: list[str],
) -> None:
    # The registries are shared with other tests (some send wrong users on purpose):
    # look only at what this test makes them log.
    start_a, start_b = len(registry_a.log_text()), len(registry_b.log_text())
    # First show that registry A's log names the users of failed logins at all.
    httpx.get(f"{registry_a.url}/v2/", auth=("probe-user", "probe-password"))
    assert "probe-user" in registry_a.failed_login_users()
    missing_tag = registry_a.reference(sample_image.repository, "no-such-tag")

    for image, expected in ((sample_image.reference, 0), (missing_tag, 3)):
        code, stdout, stderr = scan("--docker-config", str(both_registries), *cache, image)
        assert code == expected, (stdout, stderr)
    code, stdout, stderr = scan(
        "--docker-config", str(both_registries), *cache, sample_image_b.reference
    )
    assert code == 0, (stdout, stderr)

    # The 404 of the missing tag logged the user who asked: alice, and only alice.
    log_a, log_b = registry_a.log_text()[start_a:], registry_b.log_text()[start_b:]
    assert "auth.user.name=alice" in log_a
    assert "bob" not in log_a
    assert "alice" not in log_b


def test_username_and_password_from_stdin(
    odd_image: SampleImage, odd_credentials: dict[str, RegistryCredential], cache: list[str]
) -> None:
    username, password = odd_credentials["space-user"].reveal()  # leading whitespace

    code, stdout, _ = scan(
        "--username", username, "--password-stdin", *cache, "--format", "json",
        odd_image.reference, stdin=f"{password}\n",
    )  # fmt: skip

    assert code == 0
    assert pairs(json.loads(stdout)) == odd_image.expected_findings


def test_client_server_mode_gives_the_same_output(
    sample_image: SampleImage,
    both_registries: Path,
    cache: list[str],
    trivy_server: TrivyServer,
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text(trivy_server.token + "\n")
    common = ("--docker-config", str(both_registries), "--format", "json")

    standalone = scan(*common, *cache, sample_image.reference)
    served = scan(
        *common,
        "--trivy-server",
        trivy_server.url,
        "--trivy-token-file",
        str(token),
        sample_image.reference,
    )

    assert standalone[0] == served[0] == 0
    assert json.loads(served[1]) == json.loads(standalone[1])


@pytest.mark.parametrize(
    ("how", "kind", "words"),
    [
        ("anonymous", "auth", "UNAUTHORIZED: authentication required"),
        ("wrong-password", "auth", "UNAUTHORIZED: authentication required"),
        ("missing-tag", "not_found", "MANIFEST_UNKNOWN: manifest unknown"),
    ],
)
def test_an_unscannable_image_exits_3_with_kind_and_registry_words(
    sample_image: SampleImage,
    cache: list[str],
    docker_config_file: Any,
    how: str,
    kind: str,
    words: str,
) -> None:
    image = sample_image.reference
    args: list[str] = []
    if how == "wrong-password":
        bad = docker_config_file({sample_image.registry.address: ("alice", "wrong")})
        args = ["--docker-config", str(bad)]
    elif how == "missing-tag":
        image = sample_image.registry.reference(sample_image.repository, "no-such-tag")
        good = docker_config_file({sample_image.registry.address: creds(sample_image.credential)})
        args = ["--docker-config", str(good)]

    code, stdout, _ = scan(*args, *cache, "--format", "json", image)

    assert code == 3
    error = json.loads(stdout)["error"]
    assert error["kind"] == kind
    assert words in error["message"]


def test_a_docker_config_without_a_matching_key_scans_anonymously(
    sample_image: SampleImage, cache: list[str], docker_config_file: Any
) -> None:
    other = docker_config_file({"other.example": ("alice", "pw")})

    code, stdout, stderr = scan(
        "--docker-config", str(other), *cache, "--format", "json", sample_image.reference
    )

    assert code == 3
    assert json.loads(stdout)["error"]["kind"] == "auth"
    assert f"no credentials in {other} apply to {sample_image.registry.address}" in stderr


def test_tls_registry_with_and_without_ca_file(
    tls_sample_image: SampleImage, cache: list[str], docker_config_file: Any
) -> None:
    config = docker_config_file(
        {tls_sample_image.registry.address: creds(tls_sample_image.credential)}
    )
    common = ["--docker-config", str(config), *cache, "--format", "json"]

    code, stdout, _ = scan(*common, tls_sample_image.reference)
    assert code == 3
    assert json.loads(stdout)["error"]["kind"] == "tls"

    code, stdout, _ = scan(
        *common, "--ca-file", str(tls_sample_image.ca_file), tls_sample_image.reference
    )
    assert code == 0
    assert pairs(json.loads(stdout)) == tls_sample_image.expected_findings


def test_tiny_timeout(sample_image: SampleImage, both_registries: Path, cache: list[str]) -> None:
    code, stdout, _ = scan(
        "--docker-config", str(both_registries), *cache, "--timeout", "0.001",
        "--format", "json", sample_image.reference,
    )  # fmt: skip

    assert code == 3
    assert json.loads(stdout)["error"]["kind"] == "timeout"


def test_the_canary_password_is_never_shown(
    odd_image: SampleImage,
    odd_registry: RegistryServer,
    odd_credentials: dict[str, RegistryCredential],
    canary: str,
    cache: list[str],
    trivy_server: TrivyServer,
    docker_config_file: Any,
    recording_trivy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", f"{recording_trivy.path.parent}{os.pathsep}{os.environ['PATH']}")
    address = odd_registry.address
    missing_tag = odd_registry.reference(odd_image.repository, "no-such-tag")
    token = recording_trivy.path.parent.parent / "token"
    token.write_text(trivy_server.token)
    server = ["--trivy-server", trivy_server.url, "--trivy-token-file", str(token)]
    outputs: list[tuple[int, str, str]] = []
    for user in ("canary-user", "comma-user", "space-user"):
        config = docker_config_file({address: odd_credentials[user].reveal()})
        for image in (odd_image.reference, missing_tag):
            for mode in (cache, server):
                outputs.append(scan("--docker-config", str(config), *mode, image))
                outputs.append(
                    scan("--docker-config", str(config), *mode, "--format", "json", image)
                )
        username, password = odd_credentials[user].reveal()
        login = ("--username", username, "--password-stdin")
        outputs.append(scan(*login, *cache, odd_image.reference, stdin=password))
    wrong = docker_config_file({address: ("canary-user", f"{canary}-wrong")})
    outputs.append(scan("--docker-config", str(wrong), *cache, odd_image.reference))

    assert sorted({code for code, _, _ in outputs}) == [0, 3]  # both paths were exercised
    for _, stdout, stderr in outputs:
        assert canary not in stdout
        assert canary not in stderr
    assert canary not in odd_registry.log_text()
    runs = recording_trivy.runs()
    assert len(runs) == len(outputs)  # every scan ran Trivy, through the recorder
    for run in runs:
        assert not any(canary in arg for arg in run["argv"])
        assert not Path(run["workdir"]).exists()
