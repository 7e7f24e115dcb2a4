"""The Trivy runner against a real registry, real Trivy and a real Trivy server."""

from __future__ import annotations

import base64
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.processes import free_port
from ocscan.sandbox.samples import SampleImage
from ocscan.sandbox.trivy import TrivyServer
from ocscan.scan import (
    ClientServer,
    FailureKind,
    ScanFailed,
    ScanResult,
    Standalone,
    scan_image,
)
from ocscan.scan import runner as runner_module

pytestmark = pytest.mark.integration


def findings(result: ScanResult) -> set[tuple[str, str]]:
    return {(f.package_name, f.vulnerability_id) for f in result.findings}


async def failure_of(image: str, mode: Standalone | ClientServer, **kwargs: Any) -> ScanFailed:
    with pytest.raises(ScanFailed) as caught:
        await scan_image(image, mode, **kwargs)
    return caught.value


@pytest.fixture
def standalone(trivy_cache: Path) -> Standalone:
    return Standalone(cache_dir=trivy_cache)


@pytest.fixture
def client(trivy_server: TrivyServer) -> ClientServer:
    return ClientServer(server_url=trivy_server.url, token=SecretStr(trivy_server.token))


def gone(path: Path) -> bool:
    return not path.exists()


def alive(pid: int, wait: float = 2.0) -> bool:
    """Whether ``pid`` still runs after ``wait`` seconds (a zombie does not count)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


# The seed reproduction and the modes.


async def test_private_image_with_good_credentials_gives_exactly_the_expected_findings(
    sample_image: SampleImage, standalone: Standalone
) -> None:
    result = await scan_image(
        sample_image.reference, standalone, credential=sample_image.credential
    )

    assert findings(result) == sample_image.expected_findings
    assert result.image.reference == sample_image.reference
    assert result.image.digest == sample_image.digest
    assert result.image.os is not None
    assert result.image.os.family == "alpine"
    severities = [f.severity.rank for f in result.findings]
    assert severities == sorted(severities)


async def test_standalone_and_client_server_give_the_same_result(
    sample_image: SampleImage, standalone: Standalone, client: ClientServer
) -> None:
    alone = await scan_image(sample_image.reference, standalone, credential=sample_image.credential)
    served = await scan_image(sample_image.reference, client, credential=sample_image.credential)

    assert findings(served) == sample_image.expected_findings
    assert served == alone


async def test_scan_by_digest(sample_image: SampleImage, client: ClientServer) -> None:
    result = await scan_image(
        sample_image.digest_reference, client, credential=sample_image.credential
    )

    assert result.image.digest == sample_image.digest
    assert findings(result) == sample_image.expected_findings


async def test_clean_image_completes_with_no_findings(
    clean_image: SampleImage, standalone: Standalone
) -> None:
    result = await scan_image(clean_image.reference, standalone, credential=clean_image.credential)

    assert result.findings == ()
    assert result.image.digest == clean_image.digest


async def test_a_wrong_server_token_is_a_scanner_error(
    sample_image: SampleImage, trivy_server: TrivyServer
) -> None:
    mode = ClientServer(server_url=trivy_server.url, token=SecretStr("not-the-token"))

    failed = await failure_of(sample_image.reference, mode, credential=sample_image.credential)

    assert failed.failure.kind is FailureKind.SCANNER_ERROR
    assert "invalid token" in failed.failure.message
    assert "not-the-token" not in str(failed)


# Failures, each with the registry's own words.


@pytest.mark.parametrize("mode_name", ["standalone", "client"])
async def test_no_credentials_is_auth(
    sample_image: SampleImage, mode_name: str, request: pytest.FixtureRequest
) -> None:
    failed = await failure_of(sample_image.reference, request.getfixturevalue(mode_name))

    assert failed.failure.kind is FailureKind.AUTH
    assert "UNAUTHORIZED: authentication required" in failed.failure.message


async def test_wrong_credentials_are_auth(
    sample_image: SampleImage, standalone: Standalone, canary: str
) -> None:
    wrong = RegistryCredential.of("alice", f"{canary}-wrong")

    failed = await failure_of(sample_image.reference, standalone, credential=wrong)

    assert failed.failure.kind is FailureKind.AUTH
    assert "UNAUTHORIZED: authentication required" in failed.failure.message
    assert canary not in str(failed)
    assert canary not in sample_image.registry.log_text()


async def test_missing_tag_is_not_found(sample_image: SampleImage, standalone: Standalone) -> None:
    image = sample_image.registry.reference(sample_image.repository, "no-such-tag")

    failed = await failure_of(image, standalone, credential=sample_image.credential)

    assert failed.failure.kind is FailureKind.NOT_FOUND
    assert "MANIFEST_UNKNOWN: manifest unknown" in failed.failure.message


async def test_closed_port_is_unreachable(standalone: Standalone) -> None:
    image = f"127.0.0.1:{free_port()}/team/app:1.0"

    failed = await failure_of(
        image, standalone, credential=RegistryCredential.of("nobody", "no-password")
    )

    assert failed.failure.kind is FailureKind.UNREACHABLE
    assert "connection refused" in failed.failure.message


async def test_tls_registry_needs_its_ca(
    tls_sample_image: SampleImage, client: ClientServer
) -> None:
    failed = await failure_of(
        tls_sample_image.reference, client, credential=tls_sample_image.credential
    )
    assert failed.failure.kind is FailureKind.TLS
    assert "certificate signed by unknown authority" in failed.failure.message

    result = await scan_image(
        tls_sample_image.reference,
        client,
        credential=tls_sample_image.credential,
        ca_file=tls_sample_image.ca_file,
    )
    assert findings(result) == tls_sample_image.expected_findings


async def test_tiny_timeout_is_timeout(sample_image: SampleImage, standalone: Standalone) -> None:
    failed = await failure_of(
        sample_image.reference, standalone, credential=sample_image.credential, timeout=0.001
    )

    assert failed.failure.kind is FailureKind.TIMEOUT
    assert failed.failure.message.startswith("the scan did not finish within its time limit")


async def test_a_hung_scanner_is_killed_with_its_children(
    tmp_path: Path, standalone: Standalone, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real Trivy honours its own --timeout; this stand-in ignores it, and starts a child.
    child_pid = tmp_path / "child.pid"
    hung = tmp_path / "hung-trivy"
    hung.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {child_pid}\nwait\n")
    hung.chmod(stat.S_IRWXU)
    monkeypatch.setattr(runner_module, "GRACE_SECONDS", 0.5)

    failed = await failure_of("127.0.0.1:1/team/app:1.0", standalone, timeout=0.5, trivy=str(hung))

    assert failed.failure.kind is FailureKind.TIMEOUT
    assert "did not finish within 0.5s" in failed.failure.message
    assert not alive(int(child_pid.read_text()))


async def test_missing_database_is_reported_before_running(tmp_path: Path) -> None:
    failed = await failure_of("127.0.0.1:1/team/app:1.0", Standalone(cache_dir=tmp_path))

    assert failed.failure.kind is FailureKind.SCANNER_ERROR
    assert f"no vulnerability DB at {tmp_path}/db/trivy.db" in failed.failure.message


# Passwords that cannot travel in TRIVY_PASSWORD.


@pytest.mark.parametrize("user", ["comma-user", "space-user"])
@pytest.mark.parametrize("mode_name", ["standalone", "client"])
async def test_passwords_trivy_would_split_or_trim_work(
    odd_image: SampleImage,
    odd_credentials: dict[str, RegistryCredential],
    user: str,
    mode_name: str,
    request: pytest.FixtureRequest,
) -> None:
    result = await scan_image(
        odd_image.reference, request.getfixturevalue(mode_name), credential=odd_credentials[user]
    )

    assert findings(result) == odd_image.expected_findings
    assert user not in odd_image.registry.failed_login_users()


# Isolation from the invoking user's credentials and settings.


async def test_stray_credentials_of_the_invoking_user_are_never_used(
    sample_image: SampleImage,
    alice_credential: RegistryCredential,
    standalone: Standalone,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = alice_credential.reveal()
    stray = tmp_path / "stray-home"
    (stray / ".docker").mkdir(parents=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = f'{{"auths": {{"{sample_image.registry.address}": {{"auth": "{auth}"}}}}}}'
    (stray / ".docker" / "config.json").write_text(config)
    (stray / "auth.json").write_text(config)
    monkeypatch.setenv("HOME", str(stray))
    monkeypatch.setenv("DOCKER_CONFIG", str(stray / ".docker"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(stray / "auth.json"))
    monkeypatch.setenv("TRIVY_USERNAME", user)
    monkeypatch.setenv("TRIVY_PASSWORD", password)

    failed = await failure_of(sample_image.reference, standalone)

    assert failed.failure.kind is FailureKind.AUTH


async def test_trivy_runs_in_a_private_folder_that_is_removed(
    sample_image: SampleImage,
    standalone: Standalone,
    recording_trivy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIVY_SEVERITY", "CRITICAL")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent.pem")

    result = await scan_image(
        sample_image.reference,
        standalone,
        credential=sample_image.credential,
        trivy=str(recording_trivy.path),
    )

    assert findings(result) == sample_image.expected_findings  # TRIVY_SEVERITY was dropped
    (run,) = recording_trivy.runs()
    env = run["env"]
    workdir = Path(run["workdir"])
    assert run["workdir_mode"] == 0o700
    assert run["cwd"] == str(workdir)
    assert gone(workdir)
    for name in ("HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "TMPDIR"):
        assert Path(env[name]).is_relative_to(workdir), name
    assert sorted(n for n in env if n.startswith("TRIVY_")) == ["TRIVY_PASSWORD", "TRIVY_USERNAME"]
    for name in ("HTTPS_PROXY", "SSL_CERT_FILE", "REGISTRY_AUTH_FILE"):
        assert name not in env
    assert run["docker_config"] == []


async def test_docker_config_fallback_holds_only_that_registry_and_is_removed(
    odd_image: SampleImage,
    odd_credentials: dict[str, RegistryCredential],
    standalone: Standalone,
    recording_trivy: Any,
) -> None:
    await scan_image(
        odd_image.reference,
        standalone,
        credential=odd_credentials["comma-user"],
        trivy=str(recording_trivy.path),
    )

    (run,) = recording_trivy.runs()
    assert run["docker_config"] == ["config.json"]
    assert not [n for n in run["env"] if n in ("TRIVY_USERNAME", "TRIVY_PASSWORD")]
    assert gone(Path(run["env"]["DOCKER_CONFIG"]))
