"""``ocscan scan-image IMAGE``: scan one image with Trivy, private registries included.

Credentials come from a docker config FILE (the most specific key that applies to IMAGE, as
the kubelet would pick it) or from ``--username`` with the password on stdin. Trivy sees
only the credentials of IMAGE's registry and never downloads anything but the image.

Exit status: 0 when the scan completed (whatever it found), 2 for bad usage (unreadable or
malformed FILE, invalid IMAGE, conflicting options), 3 when the image could not be scanned;
with ``--format json`` the reason is then printed as ``{"error": {"kind", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import SecretStr
from rich.console import Console

from ocscan.errors import OcscanError
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.dockerconfig import parse_docker_config
from ocscan.registry.keyring import Keyring
from ocscan.registry.reference import ImageReference, parse_reference
from ocscan.report.table import print_findings
from ocscan.scan import (
    DEFAULT_TIMEOUT,
    ClientServer,
    ScanFailed,
    ScanMode,
    Standalone,
    scan_image,
)

USAGE_ERROR = 2
SCAN_FAILED = 3


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def scan_image_command(
    image: Annotated[str, typer.Argument(help="Image reference, e.g. registry.example.com/app:1")],
    docker_config: Annotated[
        Path | None,
        typer.Option(
            "--docker-config",
            metavar="FILE",
            help="Docker config (dockerconfigjson or dockercfg) to take IMAGE's credentials from.",
        ),
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", metavar="U", help="Registry username.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the registry password from stdin.")
    ] = False,
    trivy_server: Annotated[
        str | None,
        typer.Option("--trivy-server", metavar="URL", help="Scan as a client of this server."),
    ] = None,
    trivy_token_file: Annotated[
        Path | None,
        typer.Option("--trivy-token-file", metavar="F", help="File holding the server token."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            metavar="DIR",
            help="Trivy cache holding a vulnerability DB (default: Trivy's own cache folder).",
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", metavar="F", help="CA certificate(s) to trust (PEM)."),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="Seconds the scan may take.")
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Scan IMAGE for known vulnerabilities."""
    reference = _reference(image)
    credential = _credential(reference, docker_config, username, password_stdin)
    mode = _mode(trivy_server, trivy_token_file, cache_dir)
    if ca_file is not None and not ca_file.is_file():
        _usage_error(f"--ca-file {ca_file}: no such file")
    if not timeout > 0:
        _usage_error(f"--timeout must be positive, got {timeout:g}")

    try:
        result = asyncio.run(
            scan_image(image, mode, credential=credential, ca_file=ca_file, timeout=timeout)
        )
    except ScanFailed as failed:
        if output_format is OutputFormat.json:
            typer.echo(json.dumps({"error": failed.failure.model_dump(mode="json")}, indent=2))
        else:
            typer.echo(f"ocscan scan-image: {failed}", err=True)
        raise typer.Exit(SCAN_FAILED) from None
    if output_format is OutputFormat.json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        print_findings(result, Console())


def _reference(image: str) -> ImageReference:
    try:
        return parse_reference(image)
    except OcscanError as exc:
        _usage_error(str(exc))


def _credential(
    reference: ImageReference,
    docker_config: Path | None,
    username: str | None,
    password_stdin: bool,
) -> RegistryCredential | None:
    if docker_config is not None and (username is not None or password_stdin):
        _usage_error("--docker-config and --username/--password-stdin exclude each other")
    if docker_config is not None:
        return _from_docker_config(reference, docker_config)
    if username is None and not password_stdin:
        return None
    if username is None or not password_stdin:
        _usage_error("--username and --password-stdin go together")
    if not username:
        _usage_error("--username is empty")
    # Like `docker login --password-stdin`: only the line break ends the password.
    password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not password:
        _usage_error("--password-stdin: no password on stdin")
    return RegistryCredential(username=SecretStr(username), password=SecretStr(password))


def _from_docker_config(reference: ImageReference, path: Path) -> RegistryCredential | None:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        _usage_error(f"cannot read {source}: {exc.strerror or type(exc).__name__}")
    try:
        entries = parse_docker_config(data, source=source)
        matches = Keyring([(source, entries)]).lookup(reference)
    except OcscanError as exc:
        _usage_error(str(exc))
    if not matches:
        typer.echo(
            f"ocscan scan-image: no credentials in {source} apply to {reference.registry}; "
            "scanning anonymously",
            err=True,
        )
        return None
    credential = matches[0].credential
    return None if credential.is_anonymous else credential


def _mode(server: str | None, token_file: Path | None, cache_dir: Path | None) -> ScanMode:
    if server is None:
        if token_file is not None:
            _usage_error("--trivy-token-file needs --trivy-server")
        return Standalone(cache_dir=cache_dir or _default_cache_dir())
    if cache_dir is not None:
        _usage_error("--cache-dir applies to standalone scans, not to --trivy-server")
    if not server.startswith(("http://", "https://")):
        _usage_error(f"--trivy-server {server!r}: expected an http:// or https:// URL")
    token = None
    if token_file is not None:
        try:
            text = token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            _usage_error(f"cannot read --trivy-token-file {token_file}: {reason}")
        if not text:
            _usage_error(f"--trivy-token-file {token_file} is empty")
        token = SecretStr(text)
    return ClientServer(server_url=server, token=token)


def _default_cache_dir() -> Path:
    """Trivy's own default: the user cache folder (``$XDG_CACHE_HOME``) + ``trivy``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trivy"


def _usage_error(reason: str) -> NoReturn:
    typer.echo(f"ocscan scan-image: {' '.join(reason.splitlines())}", err=True)
    raise typer.Exit(USAGE_ERROR)


def register(app: typer.Typer) -> None:
    """Add the ``scan-image`` command to ``app``."""
    app.command("scan-image")(scan_image_command)
