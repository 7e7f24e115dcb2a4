"""The ``ocscan`` command. Each command group lives in its own module and registers itself."""

from __future__ import annotations

import typer

from ocscan import __version__
from ocscan.cli import agent, creds, sandbox, scan, scan_image

app = typer.Typer(
    name="ocscan",
    help="Operational container scanning for Kubernetes, private registries included.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ocscan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Operational container scanning for Kubernetes, private registries included."""


for _module in (creds, scan, scan_image, agent, sandbox):
    _module.register(app)


def main() -> None:
    app()
