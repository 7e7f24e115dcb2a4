"""Trivy command lines for one image scan: pure, no I/O.

:func:`build_trivy_command` says what to run; whoever runs it (a local process, a scanner
pod) decides where the secret values come from: literal environment variables locally,
``secretKeyRef`` in a pod. Secrets never reach ``argv``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from pydantic import SecretStr

from ocscan.registry.credential import RegistryCredential
from ocscan.registry.platform import Platform
from ocscan.registry.reference import parse_reference

DEFAULT_TIMEOUT = 300.0
"""Seconds a scan may take, unless the caller says otherwise."""

USERNAME_ENV = "TRIVY_USERNAME"
PASSWORD_ENV = "TRIVY_PASSWORD"
TOKEN_ENV = "TRIVY_TOKEN"

_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = frozenset({"docker.io"})  # references are normalised to it

# Nothing is ever downloaded besides the image: no DB, Java DB, checks bundle, VEX
# repository or version notice (explicit credentials would be offered to those registries
# too), and no dependency look-ups. No config or ignore file is read from the working
# directory. The image is always pulled from its registry, never from a local daemon.
_FIXED_FLAGS = (
    "--scanners", "vuln",
    "--format", "json",
    "--image-src", "remote",
    "--skip-db-update",
    "--skip-java-db-update",
    "--skip-check-update",
    "--skip-vex-repo-update",
    "--skip-version-check",
    "--offline-scan",
    "--disable-telemetry",
    "--no-progress",
    "--cache-backend", "memory",
    "--list-all-pkgs=false",
    "--config", "",
    "--ignorefile", "",
)  # fmt: skip


@dataclass(frozen=True)
class Standalone:
    """Trivy uses the vulnerability DB prepared in ``cache_dir`` (``db/trivy.db``)."""

    cache_dir: PurePath


@dataclass(frozen=True)
class ClientServer:
    """Trivy pulls and analyses the image, then asks a Trivy server to match findings."""

    server_url: str
    token: SecretStr | None = None


ScanMode = Standalone | ClientServer


@dataclass(frozen=True)
class TrivyCommand:
    """What to run for one scan.

    ``secret_env`` maps environment variable names to secret values; ``docker_config`` is
    the content of a ``config.json`` to place in the folder ``DOCKER_CONFIG`` points at.
    Both redact themselves in ``repr``.
    """

    argv: tuple[str, ...]
    secret_env: Mapping[str, SecretStr] = field(default_factory=dict)
    docker_config: SecretStr | None = None
    redact: tuple[SecretStr, ...] = ()
    """Every secret the command carries, in each form it takes, to scrub from output."""

    @property
    def needs_secret(self) -> bool:
        """Whether a scanner pod needs a Secret of its own for this command."""
        return bool(self.secret_env) or self.docker_config is not None

    def secret_values(self) -> tuple[str, ...]:
        """The clear text of :attr:`redact`: only for scrubbing text shown to a user."""
        return tuple(v for s in self.redact if (v := s.get_secret_value()))


def build_trivy_command(
    image: str,
    mode: ScanMode,
    *,
    credential: RegistryCredential | None = None,
    ca_file: PurePath | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    trivy: str = "trivy",
    platform: Platform | None = None,
) -> TrivyCommand:
    """The command that scans ``image`` for vulnerabilities.

    ``credential`` must belong to the registry of ``image``: it is the only one the command
    carries. ``timeout`` (seconds) is handed to Trivy; callers enforce their own, longer one.
    ``platform`` picks the entry of a multi-platform image (an index) to scan; without it
    Trivy picks ``linux/amd64``. A single-platform image is scanned whatever it says.
    """
    if timeout <= 0:
        raise ValueError(f"scan timeout must be positive, got {timeout}")
    argv = [trivy, "image", *_FIXED_FLAGS, "--timeout", f"{max(1, round(timeout * 1000))}ms"]
    secret_env: dict[str, SecretStr] = {}
    match mode:
        case Standalone(cache_dir=cache_dir):
            argv += ["--cache-dir", str(cache_dir)]
        case ClientServer(server_url=server_url, token=token):
            argv += ["--server", server_url]
            if token is not None:
                secret_env[TOKEN_ENV] = token
    if ca_file is not None:
        argv += ["--cacert", str(ca_file)]
    if platform is not None:
        argv += ["--platform", str(platform)]
    argv += ["--", image]

    docker_config = None
    redact = list(secret_env.values())
    if credential is not None:
        username, password = credential.reveal()
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        redact += [credential.username, credential.password, SecretStr(auth)]
        if _travels_in_env(username) and _travels_in_env(password):
            secret_env[USERNAME_ENV] = credential.username
            secret_env[PASSWORD_ENV] = credential.password
        else:
            # Only this registry's entry: Trivy reads nothing else from this file.
            config = {"auths": {registry_key(image): {"auth": auth}}}
            docker_config = SecretStr(json.dumps(config))
    return TrivyCommand(
        argv=tuple(argv),
        secret_env=secret_env,
        docker_config=docker_config,
        redact=tuple(redact),
    )


def registry_key(image: str) -> str:
    """The key Trivy looks up in a docker ``config.json`` for the registry of ``image``."""
    registry = parse_reference(image).registry
    return _DOCKER_HUB_KEY if registry in _DOCKER_HUB_NAMES else registry


def _travels_in_env(value: str) -> bool:
    # Trivy splits TRIVY_USERNAME/TRIVY_PASSWORD on commas and trims each part.
    return "," not in value and value == value.strip()
