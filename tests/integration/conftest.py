"""The real local stack for integration tests: registries, sample images, Trivy DB and server.

Everything is session-scoped (one stack per pytest worker) and every process is stopped by
its PID when the session ends, also after failures. Fixtures:

- ``trivy_binary``: Path of the real ``trivy``.
- ``trivy_cache``: a ``--cache-dir`` holding a DB built from ``SAMPLE_ADVISORIES``.
- ``trivy_server``: a :class:`TrivyServer` on that DB (``.url``, ``.token``).
- ``registry_a`` (user alice), ``registry_b`` (user bob), ``tls_registry`` (user carol, own CA
  in ``.ca_file``): :class:`RegistryServer` objects; ``alice_credential``,
  ``bob_credential``, ``carol_credential``: their :class:`RegistryCredential`.
- ``sample_image`` (SAMPLE_APP on registry_a), ``sample_image_b`` (SAMPLE_MINIMAL on
  registry_b), ``clean_image`` (SAMPLE_CLEAN on registry_a), ``tls_sample_image``
  (SAMPLE_APP on tls_registry): :class:`SampleImage` objects (``.reference``, ``.digest``,
  ``.credential``, ``.expected_ids``, ``.expected_findings``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.errors import TrivyNotFoundError
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.samples import SampleImage, push_sample
from ocscan.sandbox.trivy import TrivyServer, find_trivy
from ocscan.sandbox.trivydb import (
    SAMPLE_ADVISORIES,
    SAMPLE_APP,
    SAMPLE_CLEAN,
    SAMPLE_MINIMAL,
    build_trivy_db,
)
from prerequisites import missing_prerequisite, require_binary

# Distinct, shell-hostile passwords (no comma or whitespace: they must fit TRIVY_PASSWORD).
ALICE_PASSWORD = "alice-Pa$$w0rd#1"
BOB_PASSWORD = "bob-S3cr3t;'\"2"
CAROL_PASSWORD = "carol-T1s&pw!3"
TRIVY_SERVER_TOKEN = "sandbox-server-token"


@pytest.fixture(scope="session")
def registry_binaries() -> None:
    for name in ("docker-registry", "htpasswd", "openssl"):
        require_binary(name)


@pytest.fixture(scope="session")
def trivy_binary() -> Path:
    try:
        return find_trivy()
    except TrivyNotFoundError as error:
        missing_prerequisite(str(error))
        raise AssertionError("unreachable") from error


@pytest.fixture(scope="session")
def trivy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("trivy-cache")
    build_trivy_db(cache, SAMPLE_ADVISORIES)
    return cache


@pytest.fixture(scope="session")
def trivy_server(
    trivy_binary: Path, trivy_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrivyServer]:
    server = TrivyServer.start(
        trivy_cache, tmp_path_factory.mktemp("trivy-server"), TRIVY_SERVER_TOKEN, trivy=trivy_binary
    )
    try:
        yield server
    finally:
        server.stop()


def _registry(
    tmp_path_factory: pytest.TempPathFactory, name: str, users: dict[str, str], *, tls: bool
) -> Iterator[RegistryServer]:
    server = RegistryServer.start(tmp_path_factory.mktemp(name), users, tls=tls)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def alice_credential() -> RegistryCredential:
    return RegistryCredential.of("alice", ALICE_PASSWORD)


@pytest.fixture(scope="session")
def bob_credential() -> RegistryCredential:
    return RegistryCredential.of("bob", BOB_PASSWORD)


@pytest.fixture(scope="session")
def carol_credential() -> RegistryCredential:
    return RegistryCredential.of("carol", CAROL_PASSWORD)


@pytest.fixture(scope="session")
def registry_a(
    registry_binaries: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    yield from _registry(tmp_path_factory, "registry-a", {"alice": ALICE_PASSWORD}, tls=False)


@pytest.fixture(scope="session")
def registry_b(
    registry_binaries: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    yield from _registry(tmp_path_factory, "registry-b", {"bob": BOB_PASSWORD}, tls=False)


@pytest.fixture(scope="session")
def tls_registry(
    registry_binaries: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    yield from _registry(tmp_path_factory, "registry-tls", {"carol": CAROL_PASSWORD}, tls=True)


@pytest.fixture(scope="session")
def sample_image(registry_a: RegistryServer, alice_credential: RegistryCredential) -> SampleImage:
    return push_sample(registry_a, SAMPLE_APP, alice_credential)


@pytest.fixture(scope="session")
def clean_image(registry_a: RegistryServer, alice_credential: RegistryCredential) -> SampleImage:
    return push_sample(registry_a, SAMPLE_CLEAN, alice_credential)


@pytest.fixture(scope="session")
def sample_image_b(registry_b: RegistryServer, bob_credential: RegistryCredential) -> SampleImage:
    return push_sample(registry_b, SAMPLE_MINIMAL, bob_credential)


@pytest.fixture(scope="session")
def tls_sample_image(
    tls_registry: RegistryServer, carol_credential: RegistryCredential
) -> SampleImage:
    return push_sample(tls_registry, SAMPLE_APP, carol_credential)
