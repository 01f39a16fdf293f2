"""`dcf runtime list`."""

from __future__ import annotations

import click

from ..definition.runtimes import RUNTIMES
from ._common import AliasedGroup


@click.group(cls=AliasedGroup, aliases={"ls": "list"})
def runtime() -> None:
    """Function runtimes."""


@runtime.command(name="list")
def list_() -> None:
    """List the runtimes `dcf function init --runtime` accepts."""
    click.echo("Supported Runtimes are:")
    for name, description in RUNTIMES.items():
        click.echo(f"- {name:16s} {description}")
