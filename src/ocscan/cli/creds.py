"""``ocscan creds``: see which registry credentials apply to an image.

``ocscan creds match --docker-config FILE IMAGE`` prints, as a JSON array on stdout, the
keys of FILE (dockerconfigjson or bare dockercfg) whose credentials apply to IMAGE, exactly
as written and in the order the kubelet would try them; ``[]`` when none apply. A
malformed or unreadable FILE or an invalid IMAGE exits 2 with a one-line reason on stderr.
Usernames and passwords are never printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ocscan.errors import OcscanError
from ocscan.registry.dockerconfig import parse_docker_config
from ocscan.registry.keyring import Keyring
from ocscan.registry.reference import parse_reference

USAGE_ERROR = 2

creds_app = typer.Typer(
    name="creds",
    help="See which registry credentials apply to an image.",
    no_args_is_help=True,
)


@creds_app.command("match")
def match(
    image: Annotated[
        str,
        typer.Argument(metavar="IMAGE", help="Image reference, e.g. registry.example.com/app:1"),
    ],
    docker_config: Annotated[
        Path,
        typer.Option(
            "--docker-config",
            metavar="FILE",
            help="A dockerconfigjson document or a bare dockercfg map.",
        ),
    ],
) -> None:
    """Print the keys of FILE whose credentials apply to IMAGE, in the order tried."""
    source = str(docker_config)
    try:
        data = docker_config.read_bytes()
    except OSError as exc:
        failure = f"cannot read {source}: {exc.strerror or type(exc).__name__}"
    else:
        try:
            reference = parse_reference(image)
            entries = parse_docker_config(data, source=source)
        except OcscanError as exc:
            failure = str(exc)
        else:
            keys = [found.key for found in Keyring([(source, entries)]).lookup(reference)]
            typer.echo(json.dumps(keys))
            return
    _fail(failure)


def _fail(reason: str) -> NoReturn:
    typer.echo(f"ocscan creds match: {' '.join(reason.splitlines())}", err=True)
    raise typer.Exit(USAGE_ERROR)


def register(app: typer.Typer) -> None:
    """Add the ``creds`` command group to ``app``."""
    app.add_typer(creds_app)
